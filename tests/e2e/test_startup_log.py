"""What ``banditd serve`` says about itself: one start-up summary per command, and the access
log the ``access_log`` setting turns on. Real processes; their output is read back."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests import pg
from tests.e2e.conftest import HOST, Process, free_port, until_healthy
from tests.e2e.test_supervisor import RESTART_TIMEOUT, children, role_of, serving_edges

pytestmark = pytest.mark.slow

ADMIN_KEY = "admin-key-never-logged"
SUMMARY = "banditd serving "
ACCESS = re.compile(r"banditd\.access (\w+) (\S+) (\d{3}) (\d+) (\d+\.\d)ms$")


def summaries(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if SUMMARY in line]


def access_lines(log: Path) -> list[tuple[str, str, int, int]]:
    """(method, path, status, bytes) of every access-log line."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        match = ACCESS.search(line)
        if match:
            method, path, status, sent, _ = match.groups()
            found.append((method, path, int(status), int(sent)))
    return found


def wire_size(response: aiohttp.ClientResponse, body: bytes) -> int:
    """The bytes the server sent for ``response``: status line, headers and body."""
    head = f"HTTP/1.1 {response.status} {response.reason}\r\n".encode()
    head += b"".join(name + b": " + value + b"\r\n" for name, value in response.raw_headers)
    return len(head) + 2 + len(body)


def serve(tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> Process:
    config = tmp_path / "banditd.toml"
    config.write_text("learn_interval = 0.05\nlease_ttl = 2.0\n")
    process = Process("banditd", ["serve", *args, "--config", str(config)], tmp_path / "out.log")
    process.env = env or {}
    process.start()
    return process


async def healthy(process: Process, url: str) -> None:
    assert process.proc is not None
    async with aiohttp.ClientSession() as http:
        await until_healthy(http, url, process.proc, process.tail)


async def test_supervised_serve_logs_one_summary_however_many_edges_and_restarts(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://{HOST}:{port}"
    db = tmp_path / "s.db"
    process = serve(
        tmp_path, ["--db", str(db), "--host", HOST, "--port", str(port), "--workers", "2"]
    )
    try:
        await healthy(process, url)
        assert process.proc is not None
        edges = [k for k in children(process.proc.pid) if role_of(k) == "edge"]
        assert len(edges) == 2, process.tail()
        deadline = time.monotonic() + 30
        while (answered := await serving_edges(url, 20)) != set(edges):
            assert time.monotonic() < deadline, (answered, edges)
        lines = summaries(process.log)
        assert len(lines) == 1, process.tail()
        assert lines[0].endswith(
            f"banditd serving {url}: store sqlite {db}; policy default (--cb_explore_adf "
            "--epsilon 0.2 --cb_type mtr -q ::); rewardWaitTime PT10M, modelExportFrequency "
            "PT5M; learningMode Online; API keys off; access log off"
        ), lines
        # The edge that logged it dies and is restarted: the summary is not repeated.
        first = next(
            k for k in edges if b"--no-summary" not in Path(f"/proc/{k}/cmdline").read_bytes()
        )
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + RESTART_TIMEOUT
        while True:
            now = {k for k in children(process.proc.pid) if role_of(k) == "edge"}
            restarted = now - set(edges)
            if len(now) == 2 and restarted and restarted <= await serving_edges(url, 20):
                break
            assert time.monotonic() < deadline, process.tail()
            await asyncio.sleep(0.2)
        assert b"--no-summary" in Path(f"/proc/{restarted.pop()}/cmdline").read_bytes()
        assert len(summaries(process.log)) == 1, process.tail()
        assert access_lines(process.log) == []  # off by default
        assert process.terminate() == 0
    finally:
        process.kill()


async def test_access_log_setting_logs_each_request_and_the_summary_hides_keys(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://{HOST}:{port}"
    args = ["--role", "all", "--db", str(tmp_path / "a.db"), "--host", HOST, "--port", str(port)]
    env = {"BANDITD_ACCESS_LOG": "true", "BANDITD_ADMIN_KEY": ADMIN_KEY}
    process = serve(tmp_path, args, env)
    try:
        await healthy(process, url)
        headers = {"Ocp-Apim-Subscription-Key": ADMIN_KEY}
        rank = {"actions": [{"id": "a"}, {"id": "b"}], "eventId": "e1"}
        calls = [
            ("POST", "/v1/rank", {"json": rank}, 201),
            ("POST", "/v1/events/e1/reward?api-version=x", {"json": {"value": 1}}, 204),
            ("GET", "/v1/nowhere", {}, 404),
        ]
        sent = []
        async with aiohttp.ClientSession() as http:
            for method, path, kwargs, status in calls:
                async with http.request(method, url + path, headers=headers, **kwargs) as response:
                    assert response.status == status
                    sent.append(wire_size(response, await response.read()))
        deadline = time.monotonic() + 10
        while len(logged := [a for a in access_lines(process.log) if a[1] != "/healthz"]) < 3:
            assert time.monotonic() < deadline, process.tail()
            await asyncio.sleep(0.1)
        assert logged == [
            ("POST", "/v1/rank", 201, sent[0]),
            ("POST", "/v1/events/e1/reward", 204, sent[1]),  # the path without its query
            ("GET", "/v1/nowhere", 404, sent[2]),
        ], process.tail()
        lines = summaries(process.log)
        assert len(lines) == 1 and "API keys on (admin); access log on" in lines[0], lines
        assert ADMIN_KEY not in process.log.read_text()
        assert process.terminate() == 0
    finally:
        process.kill()


async def test_the_summary_masks_a_store_password(tmp_path: Path) -> None:
    with pg.fresh_schema("summary") as schema:
        user, rest = pg.URL.split("://", 1)[1].split("@", 1)
        url_with_password = f"postgresql://{user}:pw-never-logged@{rest}"
        store = pg.schema_url(schema, url_with_password)
        port = free_port()
        url = f"http://{HOST}:{port}"
        process = serve(
            tmp_path, ["--role", "all", "--store", store, "--host", HOST, "--port", str(port)]
        )
        try:
            await healthy(process, url)
            lines = summaries(process.log)
            assert len(lines) == 1, process.tail()
            assert f"store postgresql postgresql://{user}:***@{rest}" in lines[0], lines
            assert "pw-never-logged" not in process.log.read_text()
            assert process.terminate() == 0
        finally:
            process.kill()
