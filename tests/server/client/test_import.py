"""Bulk import (``POST /v1/logs/import``) through both clients.

The wire tests use the scripted server: the body is streamed chunked as NDJSON, the client
holds little of it at once. The live tests need the endpoint in the server; they export a
live loop's lines and import them back under new event ids.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bandit.config import LearningMode
from server.client import AsyncClient, Client, ClientError, ImportResult
from tests.server.client.conftest import ADMIN_KEY, CLIENT_KEY, Live, Script, rank_request

Serve = Callable[[Script], str]
IMPORTED = (200, b'{"imported":3,"skipped":1}', {"Content-Type": "application/json"})
LINE = json.dumps({"EventId": "x" * 16, "c": {"_multi": [{"a": 1}] * 8}, "p": [1.0] * 8})


def many_lines(n: int) -> Iterator[str]:
    """``n`` lines made one at a time (a list of them would weigh about n × 150 bytes)."""
    for i in range(n):
        yield LINE.replace("x" * 16, f"{i:016d}")


def test_sync_import_streams_ndjson_chunked_and_reads_the_counts(scripted: Serve) -> None:
    script = Script(answers=[IMPORTED])
    with Client(scripted(script), key=ADMIN_KEY) as client:
        result = client.import_logs(["{}", "{}\n", b"{}"], mode=LearningMode.APPRENTICE)
    assert result == ImportResult(imported=3, skipped=1)
    (seen,) = script.seen
    assert seen.path == "/v1/logs/import?mode=Apprentice"
    assert seen.headers["Content-Type"] == "application/x-ndjson"
    assert script.counted == [("chunked", 9, 3)]


def test_sync_import_of_100k_lines_holds_a_few_chunks_at_most(scripted: Serve) -> None:
    script = Script(answers=[IMPORTED])
    with Client(scripted(script), key=ADMIN_KEY) as client:
        tracemalloc.start()
        try:
            client.import_logs(many_lines(100_000))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    (_, size, lines) = script.counted[0]
    assert lines == 100_000 and size > 10_000_000
    # The scripted server counts bytes as they come (its reads are traced too): a client that
    # gathered the body first would peak above its size.
    assert peak < 2_000_000, peak


async def test_async_import_streams_a_file(scripted: Serve, tmp_path: Path) -> None:
    path = tmp_path / "logs.json"
    path.write_text("".join(line + "\n" for line in many_lines(5000)))
    script = Script(answers=[IMPORTED])
    async with AsyncClient(scripted(script), key=ADMIN_KEY) as client:
        assert await client.import_logs(path) == ImportResult(imported=3, skipped=1)
    assert script.seen[0].path == "/v1/logs/import?mode=Online"
    assert script.counted == [("chunked", path.stat().st_size, 5000)]


def test_an_import_refused_is_not_sent_again(scripted: Serve) -> None:
    script = Script(answers=[(503, b"{}", {"Retry-After": "0"}), IMPORTED])
    with (
        Client(scripted(script), key=ADMIN_KEY) as client,
        pytest.raises(ClientError) as failed,
    ):
        client.import_logs(["{}"])
    assert failed.value.status == 503 and len(script.seen) == 1


# -- live ----------------------------------------------------------------------------------------


def exported_lines(live: Live, prefix: str, n: int) -> list[str]:
    """Rank and reward ``n`` events, wait for them to be joined, return their exported lines."""
    with Client(live.url, key=CLIENT_KEY) as client:
        for i in range(n):
            client.rank(rank_request(f"{prefix}{i}", user=i % 3))
            client.reward(f"{prefix}{i}", 1.0)
    with Client(live.url, key=ADMIN_KEY) as admin:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            lines = [
                line
                for line in admin.export_logs()
                if json.loads(line)["EventId"].startswith(prefix)
            ]
            if len(lines) == n:
                return lines
            time.sleep(0.2)
    pytest.fail(f"the {n} events of {prefix!r} were not joined in 30 s")


def renamed(lines: list[str], prefix: str) -> list[str]:
    out = []
    for line in lines:
        event = json.loads(line)
        event["EventId"] = prefix + event["EventId"]
        out.append(json.dumps(event))
    return out


def test_live_import_is_idempotent_and_refuses_a_bad_line_whole(live: Live) -> None:
    lines = renamed(exported_lines(live, "imp-sync-", 6), "history-")
    with Client(live.url, key=ADMIN_KEY) as admin:
        with pytest.raises(ClientError) as bad:
            admin.import_logs([*lines, "this is not DSJSON"])
        assert (bad.value.status, bad.value.code) == (400, "BadRequest")
        assert bad.value.message
        assert admin.import_logs(lines) == ImportResult(imported=6, skipped=0)
        assert admin.import_logs(lines) == ImportResult(imported=0, skipped=6)
    with Client(live.url, key=CLIENT_KEY) as client, pytest.raises(ClientError) as forbidden:
        client.import_logs(lines)
    assert forbidden.value.status == 403


async def test_live_async_import(live: Live) -> None:
    lines = renamed(exported_lines(live, "imp-async-", 4), "history-")
    async with AsyncClient(live.url, key=ADMIN_KEY) as admin:
        first = await admin.import_logs([line.encode() for line in lines])
        again = await admin.import_logs(lines, mode="Online")
    assert first == ImportResult(imported=4, skipped=0)
    assert again == ImportResult(imported=0, skipped=4)
