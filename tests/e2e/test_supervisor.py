"""``banditd serve`` as a supervisor: one trainer and ``--workers`` edges on one port.

Checked with real processes: two edges share the port (``SO_REUSEPORT``) and both answer; an
edge that is killed is restarted and the port keeps answering meanwhile; SIGTERM stops every
child and the supervisor exits 0; a supervisor that is killed takes its children with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stores.sqlite.store import SQLiteStore
from tests.e2e.conftest import (
    HEALTH_TIMEOUT,
    HOST,
    NO_ACK,
    ROOT,
    STOP_TIMEOUT,
    free_port,
    until_healthy,
)

pytestmark = pytest.mark.slow

RESTART_TIMEOUT = 30.0
"""Seconds a killed edge may take to be restarted and answer again."""


def children(pid: int) -> list[int]:
    """The processes ``pid`` started that are still running."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def role_of(pid: int) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return "edge" if b"edge" in args else "trainer" if b"train" in args else "other"


def start(
    tmp_path: Path, port: int, workers: int, *, store: list[str] | None = None, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """The supervisor on ``store`` (its flags; default ``--db tmp_path/s.db``), run in ``cwd``."""
    config = tmp_path / "banditd.toml"
    config.write_text("learn_interval = 0.05\nlease_ttl = 2.0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITD_")}
    store = store or ["--db", str(tmp_path / "s.db")]
    with (tmp_path / "supervisor.log").open("wb") as log:
        return _popen(store, config, port, workers, env, log, cwd)


def _popen(
    store: list[str],
    config: Path,
    port: int,
    workers: int,
    env: dict[str, str],
    log: Any,
    cwd: Path,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.entry.cli",
            "serve",
            *store,
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def serving_edges(url: str, tries: int) -> set[int]:
    """The edge pids that answered ``tries`` fresh connections (each request on its own)."""
    seen: set[int] = set()
    for _ in range(tries):
        with contextlib.suppress(*NO_ACK):
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
                http.get(f"{url}/metrics") as response,
            ):
                text = await response.text()
                for line in text.splitlines():
                    if line.startswith("banditd_process_info{") and 'role="edge"' in line:
                        seen.add(int(line.split('pid="')[1].split('"')[0]))
    return seen


async def wait_answering(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        await until_healthy(
            http, url, proc, lambda: log.read_text(errors="replace")[-3000:], "the supervisor"
        )


async def test_two_edges_share_the_port_a_killed_edge_is_restarted_and_sigterm_stops_all(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://{HOST}:{port}"
    log = tmp_path / "supervisor.log"
    proc = start(tmp_path, port, workers=2)
    try:
        await wait_answering(url, proc, log)
        kids = children(proc.pid)
        roles = sorted(role_of(k) for k in kids)
        assert roles == ["edge", "edge", "trainer"], (roles, log.read_text()[-2000:])
        edges = [k for k in kids if role_of(k) == "edge"]
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while (answered := await serving_edges(url, 20)) != set(edges):
            assert time.monotonic() < deadline, (answered, edges)
        # Kill one edge: the port keeps answering (the other edge), and the edge comes back.
        os.kill(edges[0], signal.SIGKILL)
        assert await serving_edges(url, 10) <= {edges[1]}
        deadline = time.monotonic() + RESTART_TIMEOUT
        while True:
            now_edges = {k for k in children(proc.pid) if role_of(k) == "edge"}
            if len(now_edges) == 2 and edges[0] not in now_edges:
                restarted = (now_edges - {edges[1]}).pop()
                if restarted in await serving_edges(url, 20):
                    break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.2)
        assert "edge 1 exited" in log.read_text() or "edge 2 exited" in log.read_text()
        everyone = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=2 * STOP_TIMEOUT) == 0, log.read_text()[-3000:]
        for pid in everyone:
            assert not Path(f"/proc/{pid}").exists() or role_of(pid) == "other", pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


async def test_a_killed_supervisor_takes_its_children_with_it(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port, workers=1)
    log = tmp_path / "supervisor.log"
    try:
        await wait_answering(f"http://{HOST}:{port}", proc, log)
        kids = children(proc.pid)
        assert len(kids) == 2, kids
        proc.kill()  # the supervisor alone, not its process group
        proc.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(Path(f"/proc/{k}").exists() and role_of(k) != "other" for k in kids):
            assert time.monotonic() < deadline, f"children outlived the supervisor: {kids}"
            await asyncio.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


async def test_the_supervisor_hands_its_store_url_to_every_child(tmp_path: Path) -> None:
    # Run elsewhere than the file: a child that missed the URL would make banditd.db here.
    where, db = tmp_path / "cwd", tmp_path / "store" / "url.db"
    where.mkdir()
    db.parent.mkdir()
    port = free_port()
    proc = start(tmp_path, port, workers=1, store=["--store", f"sqlite:///{db}"], cwd=where)
    log = tmp_path / "supervisor.log"
    try:
        await wait_answering(f"http://{HOST}:{port}", proc, log)
        kids = children(proc.pid)
        assert len(kids) == 2, kids
        for kid in kids:
            argv = Path(f"/proc/{kid}/cmdline").read_bytes().split(b"\0")
            assert argv[argv.index(b"--store") + 1] == f"sqlite:///{db}".encode(), argv
        store = SQLiteStore(db)
        try:
            assert store.latest_model() is not None  # the trainer created the loop there
        finally:
            store.close()
        assert list(where.iterdir()) == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=2 * STOP_TIMEOUT) == 0, log.read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)
