"""Store faults against a real ``banditd serve`` (issue 17): a crash during a retrain, a full
disk, a database locked by another process.

Each test runs the server on 127.0.0.1 on a SQLite file of its own, drives it until the fault
bites, checks the status codes while it lasts (2xx or 503 with ``Retry-After`` and
Personalizer's error body; never a 500, never a hang), removes the fault, checks that the
server recovers by itself, that every acknowledged write is stored, and that
``PRAGMA integrity_check`` is ok. The figures of each run are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import (
    NO_ACK,
    SERVICE_CONFIG,
    BanditServer,
    World,
    get_json,
    put_service_config,
)

pytestmark = pytest.mark.slow

WORLD = World()
CLIENT_TIMEOUT = 10.0
"""Seconds a request may take before the test counts it as hung (far above any wait allowed)."""


def integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def stored_ids(db: Path, table: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute(f"SELECT event_id FROM {table}")}


async def check_unavailable(response: aiohttp.ClientResponse) -> None:
    """A 503 as Personalizer sends it: ``Retry-After``, error body, ``x-ms-error-code``."""
    assert response.status == 503, (response.status, await response.text())
    assert response.headers.get("Retry-After"), dict(response.headers)
    body = await response.json()
    assert body["error"]["code"] == "ServiceUnavailable", body
    assert body["error"]["innerError"]["code"] == response.headers["x-ms-error-code"]


async def wait_learned(
    http: aiohttp.ClientSession, server: BanditServer, count: int, timeout: float
) -> dict[str, Any]:
    """Poll ``/healthz`` until ``learnedCount`` reaches ``count``; fail on a count above the
    cursor (an event learned twice) or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = await get_json(http, f"{server.url}/healthz")
        learner = health["learner"]
        assert learner["learnedCount"] <= learner["cursor"], ("learned twice", health)
        if learner["learnedCount"] == count:
            return health
        await asyncio.sleep(0.1)
    pytest.fail(f"learnedCount did not reach {count} in {timeout} s: {health}\n{server.log_tail()}")


async def rank_many(
    http: aiohttp.ClientSession, server: BanditServer, prefix: str, count: int, workers: int = 8
) -> list[str]:
    """Rank ``count`` events (every answer must be a 201); returns their ids."""
    ids = [f"{prefix}-{i}" for i in range(count)]

    async def work(part: list[str]) -> None:
        for event_id in part:
            body = WORLD.rank_body(event_id, hash(event_id) % WORLD.users)
            async with http.post(f"{server.url}/v1/rank", json=body) as response:
                assert response.status == 201, await response.text()

    await asyncio.gather(*(work(ids[w::workers]) for w in range(workers)))
    return ids


# -- SIGKILL during a retrain ----------------------------------------------------------------

RETRAIN_EVENTS = 3000
RETRAIN_RATE = 1000.0
"""Events per second the retrain replays (``retrain_events_per_second``): the replay of
:data:`RETRAIN_EVENTS` takes about 3 s, so a kill 0.3 s after the change lands inside it."""


async def test_sigkill_during_a_retrain_loses_no_learning(
    banditd: BanditServer, tmp_path: Path
) -> None:
    """Issue 17, defect 3: a change of ``explorationPercentage`` resets the model and retrains
    from the logs in the background; a SIGKILL during the retrain left ``learnedCount`` 0
    against the cursor for good. Now the restart resumes the retrain: every joined event is
    learned, exactly once."""
    banditd.configure(retrain_events_per_second=RETRAIN_RATE, learn_batch=512)
    banditd.start()
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await banditd.wait_healthy(http)
        await put_service_config(banditd)
        await rank_many(http, banditd, "r", RETRAIN_EVENTS)
        before = await wait_learned(http, banditd, RETRAIN_EVENTS, timeout=60)
        cursor = before["learner"]["cursor"]
        assert cursor == RETRAIN_EVENTS

        change = {**SERVICE_CONFIG, "explorationPercentage": 0.3}
        async with http.put(f"{banditd.url}/v1/configurations/service", json=change) as response:
            assert response.status == 200, await response.text()
        await asyncio.sleep(0.3)
        banditd.kill()

        with contextlib.closing(sqlite3.connect(banditd.db)) as conn:
            (at_kill,) = conn.execute("SELECT learned_count FROM checkpoint").fetchone()
        assert at_kill < RETRAIN_EVENTS, "the kill missed the retrain: nothing to test"

        banditd.start()
        restarted = time.monotonic()
        await banditd.wait_healthy(http)
        after = await wait_learned(http, banditd, RETRAIN_EVENTS, timeout=60)
        recovery = time.monotonic() - restarted
        assert after["learner"]["cursor"] == cursor
        # Settled: it stays there (nothing is learned a second time later).
        await asyncio.sleep(1.0)
        settled = await get_json(http, f"{banditd.url}/healthz")
        assert settled["learner"]["learnedCount"] == RETRAIN_EVENTS, settled
        assert banditd.terminate() == 0

    with contextlib.closing(sqlite3.connect(banditd.db)) as conn:
        row = conn.execute(
            "SELECT learned_count, cursor, retrain_generation FROM checkpoint"
        ).fetchone()
    assert row == (RETRAIN_EVENTS, cursor, None), row
    assert integrity(banditd.db) == "ok"
    print(
        f"\nretrain crash: learned before {before['learner']['learnedCount']}, cursor {cursor}, "
        f"checkpoint at kill {at_kill}, learnedCount after recovery "
        f"{settled['learner']['learnedCount']}, recovered {recovery:.1f} s after the restart"
    )


# -- disk full -------------------------------------------------------------------------------

DISK_BYTES = 12 << 20
"""Size of the tmpfs the database lives on."""


@contextlib.contextmanager
def small_disk(where: Path) -> Iterator[Path]:
    """A tmpfs of :data:`DISK_BYTES` mounted at ``where`` for the block, unmounted after."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(
            "the disk-full test needs to mount a tmpfs (run as root, or in a container with "
            f"CAP_SYS_ADMIN): {mounted.stderr.strip()}"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk is full; returns it."""
    filler = disk / "filler"
    chunk = b"\0" * (64 << 10)
    with filler.open("wb", buffering=0) as out:
        for _ in range(DISK_BYTES // len(chunk) + 16):
            try:
                out.write(chunk)
            except OSError:
                break
        with contextlib.suppress(OSError):
            for _ in range(64):
                out.write(b"\0" * 512)
    return filler


async def test_disk_full_answers_503_and_recovers(banditd: BanditServer, tmp_path: Path) -> None:
    """Issue 17, defect 5: on a full disk admin writes answered 500 and ``/healthz`` 200.
    Now every write answers 503 with ``Retry-After``, ``/healthz`` 503 saying why, and once
    space is freed everything succeeds again with no acknowledged write lost."""
    with small_disk(tmp_path / "disk") as disk:
        server = BanditServer(disk / "banditd.db", banditd.port, tmp_path)
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
        try:
            server.start()
            async with aiohttp.ClientSession(timeout=timeout) as http:
                await _disk_full(server, http, disk)
            assert server.terminate() == 0
        finally:
            server.kill()
        assert integrity(server.db) == "ok"


async def _disk_full(server: BanditServer, http: aiohttp.ClientSession, disk: Path) -> None:
    url = server.url
    await server.wait_healthy(http)
    await put_service_config(server)
    acked = set(await rank_many(http, server, "before", 50))
    async with http.get(f"{url}/v1/model", params={"signed": "true"}) as response:
        assert response.status == 200
        archive = await response.read()

    filler = fill(disk)
    statuses: dict[str, list[int]] = {"rank": [], "reward": [], "admin": []}
    rewarded: set[str] = set()
    # Ranks until the store's WAL can grow no more (bounded in count).
    for i in range(2000):
        body = WORLD.rank_body(f"full-{i}", i % WORLD.users)
        async with http.post(f"{url}/v1/rank", json=body) as response:
            statuses["rank"].append(response.status)
            if response.status == 201:
                acked.add(f"full-{i}")
                continue
            await check_unavailable(response)
            break
    assert statuses["rank"][-1] == 503, "the disk never filled up"
    for event_id in sorted(acked)[:5]:
        async with http.post(f"{url}/v1/events/{event_id}/reward", json={"value": 1}) as r:
            statuses["reward"].append(r.status)
            if r.status == 204:
                rewarded.add(event_id)
            else:
                await check_unavailable(r)
    assert 503 in statuses["reward"]

    octets = {"Content-Type": "application/octet-stream"}
    policy = {"name": "p2", "arguments": "--cb_explore_adf --epsilon 0.2 -l 0.01"}
    admin_writes: list[tuple[str, str, dict[str, Any]]] = [
        (
            "PUT",
            "/v1/configurations/service",
            {"json": {**SERVICE_CONFIG, "explorationPercentage": 0.4}},
        ),
        ("PUT", "/v1/configurations/policy", {"json": policy}),
        ("DELETE", "/v1/configurations/policy", {}),
        ("DELETE", "/v1/model", {}),
        ("PUT", "/v1/model", {"data": archive, "headers": octets}),
        ("DELETE", "/v1/logs", {}),
    ]
    for method, path, kwargs in admin_writes:
        async with http.request(method, f"{url}{path}", **kwargs) as response:
            statuses["admin"].append(response.status)
            assert response.status != 500, (method, path, await response.text())
            if path == "/v1/logs" and response.status == 204:
                continue  # nothing learned is old enough to delete: no write was needed
            await check_unavailable(response)
    async with http.get(f"{url}/healthz") as response:
        assert response.status == 503, await response.text()
        assert "disk is full" in (await response.json())["reason"]
        assert response.headers.get("Retry-After")

    filler.unlink()
    deadline = time.monotonic() + 20
    while True:
        async with http.get(f"{url}/healthz") as response:
            if response.status == 200:
                break
        assert time.monotonic() < deadline, "healthz did not recover after space was freed"
        await asyncio.sleep(0.2)
    acked |= set(await rank_many(http, server, "after", 20))
    for event_id in sorted(acked)[:5]:
        async with http.post(f"{url}/v1/events/{event_id}/reward", json={"value": 1}) as r:
            assert r.status == 204, await r.text()
            rewarded.add(event_id)
    change = {**SERVICE_CONFIG, "explorationPercentage": 0.4}
    async with http.put(f"{url}/v1/configurations/service", json=change) as response:
        assert response.status == 200, await response.text()
    async with http.delete(f"{url}/v1/model") as response:
        assert response.status == 204, await response.text()
    assert acked <= stored_ids(server.db, "decisions")
    assert rewarded <= stored_ids(server.db, "rewards")
    print(
        f"\ndisk full: rank statuses {_counts(statuses['rank'])}, reward "
        f"{_counts(statuses['reward'])}, admin writes {_counts(statuses['admin'])}; "
        f"{len(acked)} acknowledged ranks and {len(rewarded)} rewards all stored"
    )


def _counts(statuses: list[int]) -> dict[int, int]:
    return {status: statuses.count(status) for status in sorted(set(statuses))}


# -- a database locked by another process ----------------------------------------------------

LOCK_TIMEOUT = 0.5
LOCK_HELD = 3.0
LOCK_WORKERS = 8


async def test_locked_database_answers_503_within_the_wait(banditd: BanditServer) -> None:
    """Issue 17, defect 6: while another process held the database's lock, requests waited for
    as long as it was held. Now each answers within ``lock_timeout`` (plus the batch it
    queued behind): a 2xx, or a 503 with ``Retry-After``; all succeed again after release."""
    banditd.configure(lock_timeout=LOCK_TIMEOUT)
    banditd.start()
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    statuses: list[int] = []
    latencies: list[float] = []
    acked: set[str] = set()
    rewarded: set[str] = set()
    locked = asyncio.Event()
    released = asyncio.Event()

    async def worker(http: aiohttp.ClientSession, w: int) -> None:
        i = 0
        while not released.is_set() and i < 5000:
            event_id = f"w{w}-{i}"
            i += 1
            for path, kwargs in (
                ("/v1/rank", {"json": WORLD.rank_body(event_id, i % WORLD.users)}),
                (f"/v1/events/{event_id}/reward", {"json": {"value": 1}}),
            ):
                started = time.monotonic()
                try:
                    async with http.post(f"{banditd.url}{path}", **kwargs) as response:
                        statuses.append(response.status)
                        latencies.append(time.monotonic() - started)
                        if response.status == 201:
                            acked.add(event_id)
                        elif response.status == 204:
                            rewarded.add(event_id)
                        elif response.status == 404 and event_id not in acked:
                            pass  # its rank got a 503: no event to reward
                        else:
                            await check_unavailable(response)
                except NO_ACK as exc:
                    pytest.fail(f"{path} hung or failed while the database was locked: {exc!r}")
            await asyncio.sleep(0)

    async with aiohttp.ClientSession(timeout=timeout) as http:
        await banditd.wait_healthy(http)
        await put_service_config(banditd)
        workers = [asyncio.create_task(worker(http, w)) for w in range(LOCK_WORKERS)]
        try:
            await asyncio.sleep(0.5)
            holder = sqlite3.connect(banditd.db, isolation_level=None, timeout=5)
            try:
                holder.execute("BEGIN EXCLUSIVE")
                locked.set()
                during_start = len(statuses)
                await asyncio.sleep(LOCK_HELD)
                async with http.get(f"{banditd.url}/healthz") as response:
                    health_during = response.status
                during = statuses[during_start:]
                holder.execute("ROLLBACK")
            finally:
                holder.close()
            after_start = len(statuses)
            await asyncio.sleep(1.5)
        finally:
            released.set()
            await asyncio.gather(*workers)
        after = statuses[after_start:]
        # Recovered by itself: the last requests all succeed.
        tail = after[len(after) // 2 :]
        assert tail and all(s in (201, 204) for s in tail), _counts(after)
        assert 503 in during, f"the lock never made a request wait: {_counts(during)}"
        assert health_during == 503
        async with http.get(f"{banditd.url}/healthz") as response:
            assert response.status == 200
        assert banditd.terminate() == 0
    assert 500 not in statuses
    assert acked <= stored_ids(banditd.db, "decisions")
    assert rewarded <= stored_ids(banditd.db, "rewards")
    assert integrity(banditd.db) == "ok"
    print(
        f"\nlocked database ({LOCK_HELD:g} s, lock_timeout {LOCK_TIMEOUT:g} s): statuses "
        f"{_counts(statuses)} (while locked {_counts(during)}), max latency "
        f"{max(latencies):.2f} s, {len(acked)} ranks and {len(rewarded)} rewards all stored"
    )


@pytest.fixture(autouse=True)
def _no_stray_mounts(tmp_path: Path) -> Iterator[None]:
    yield
    disk = tmp_path / "disk"
    if disk.exists():
        assert not os.path.ismount(disk), "the tmpfs was left mounted"
