"""Edges and trainers as processes that meet only in the store (issue 18, "Judged by").

Two edges (``banditd serve --role edge`` on two ports) and two trainers (``banditd train``: one
holds the lease, one waits as a standby) on one SQLite file, with rank and reward traffic spread
over both edges. Checked:

* a configuration change made through edge A is in force on edge B within one refresh period;
* after each publication both edges serve the new version within one period;
* SIGKILL of the active trainer: the standby takes the lease and continues from the checkpoint;
* SIGKILL of one edge: the other keeps serving;
* at the end every acknowledged decision and reward is stored, every decision was joined once,
  and the learner learned each joined event exactly once (its cursor and learned count are the
  number of joined events);
* SIGTERM stops what is left with status 0.

Periods are bounded with a margin for a loaded machine (``SLACK``); a miss fails naming what
was late.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from bandit.config import from_wire
from server.client import AsyncClient, ClientError, RetryPolicy
from stores.sqlite.store import SQLiteStore
from tests.e2e.conftest import (
    HOST,
    LEARN_INTERVAL,
    SERVICE_CONFIG,
    Process,
    World,
    free_port,
    round_rng,
    until_healthy,
)

pytestmark = pytest.mark.slow

REFRESH = 0.25
"""The edges' refresh period (``refresh_interval``)."""
LEASE_TTL = 2.0
SLACK = 2.0
"""Seconds beyond a period a loaded machine may take before a check counts as late."""
ROUNDS = 900
RATE = 60.0
"""Rounds started per second at most: the traffic lasts about 15 s, so models publish (every
second) while both edges serve, and after the trainer's takeover."""
CONCURRENCY = 8
TRAINER_KILL_AT = ROUNDS // 3
EDGE_KILL_AT = 2 * ROUNDS // 3
SEED = 18
CONFIG = from_wire({**SERVICE_CONFIG, "explorationPercentage": 0.3})
"""The short loop, with exploration off its default so the change shows on edge B."""
ONCE = RetryPolicy(attempts=1)
"""A request that fails is not acknowledged, and not tried again: the test counts what each
edge acknowledged the first time."""
SETTLE_TIMEOUT = 60.0
"""Seconds the trainer may take to join and learn the last events after the traffic."""


@dataclass
class Traffic:
    """What the clients were told: acknowledged decisions (with the chosen action) and rewards."""

    ranked: dict[str, str] = field(default_factory=dict)
    rewarded: dict[str, float] = field(default_factory=dict)
    by_edge: dict[str, int] = field(default_factory=dict)


@dataclass
class Sighting:
    """The model version an edge served at a moment."""

    at: float
    edge: str
    version: int


def settings_file(path: Path) -> Path:
    path.write_text(
        f"learn_interval = {LEARN_INTERVAL}\n"
        'synchronous = "NORMAL"\n'
        f"refresh_interval = {REFRESH}\n"
        f"report_interval = {REFRESH}\n"
        "command_poll = 0.05\n"
        f"lease_ttl = {LEASE_TTL}\n"
        "trainer_nice = 0\n"
    )
    return path


async def watch_versions(
    clients: dict[str, AsyncClient], seen: list[Sighting], stop: asyncio.Event
) -> None:
    """Record each edge's serving model version every 50 ms (bounded by the test's own run)."""
    deadline = time.monotonic() + 300
    while not stop.is_set() and time.monotonic() < deadline:
        for name, client in clients.items():
            with contextlib.suppress(ClientError):
                health = await client.health()
                if health.ok:
                    seen.append(Sighting(time.time(), name, health.model_version))
        await asyncio.sleep(0.05)


async def one_round(
    client: AsyncClient, world: World, index: int, edge: str, traffic: Traffic
) -> None:
    rng = round_rng(SEED, index)
    user = rng.randrange(world.users)
    event_id = f"r-{index}"
    try:
        chosen = (await client.rank(world.rank_request(event_id, user))).reward_action_id
    except ClientError:
        return
    traffic.ranked[event_id] = chosen
    traffic.by_edge[edge] = traffic.by_edge.get(edge, 0) + 1
    value = world.reward(rng, user, chosen)
    with contextlib.suppress(ClientError):
        await client.reward(event_id, value)
        traffic.rewarded[event_id] = value


async def test_two_edges_and_a_standby_trainer_share_nothing_but_the_store(tmp_path: Path) -> None:
    db = tmp_path / "roles.db"
    config = settings_file(tmp_path / "banditd.toml")
    common = ["--db", str(db), "--config", str(config)]
    ports = {"A": free_port(), "B": free_port()}
    urls = {name: f"http://{HOST}:{port}" for name, port in ports.items()}
    trainers = [
        Process(f"trainer {i}", ["train", *common], tmp_path / f"trainer-{i}.log") for i in (1, 2)
    ]
    edges = {
        name: Process(
            f"edge {name}",
            ["serve", "--role", "edge", *common, "--host", HOST, "--port", str(port)],
            tmp_path / f"edge-{name}.log",
        )
        for name, port in ports.items()
    }
    everyone = [*trainers, *edges.values()]
    world = World()
    traffic = Traffic()
    seen: list[Sighting] = []
    try:
        trainers[0].start()
        for edge in edges.values():
            edge.start()
        timeout = aiohttp.ClientTimeout(total=30)
        clients = {name: AsyncClient(url, timeout=30, retry=ONCE) for name, url in urls.items()}
        async with aiohttp.ClientSession(timeout=timeout) as http, clients["A"], clients["B"]:
            for name, edge in edges.items():
                assert edge.proc is not None
                await until_healthy(http, urls[name], edge.proc, edge.tail, edge.name)
            trainers[1].start()  # the standby: the lease is held
            await asyncio.sleep(0.5)
            active = (await clients["A"].health()).raw["learner"]["trainer"]
            assert active.endswith(f":{trainers[0].proc.pid}"), active  # type: ignore[union-attr]

            # A configuration change through A is in force on B within one period.
            assert await clients["A"].put_configuration(CONFIG) == CONFIG
            changed_at = time.monotonic()
            while True:
                on_b = await clients["B"].get_configuration()
                if on_b == CONFIG:
                    break
                assert time.monotonic() - changed_at < REFRESH + SLACK, (
                    f"edge B still serves {on_b} {REFRESH + SLACK} s after the change through A"
                )
                await asyncio.sleep(0.02)

            stop_watching = asyncio.Event()
            watch_started = time.time()
            watcher = asyncio.create_task(watch_versions(clients, seen, stop_watching))
            both_edges_until = 0.0
            pending: set[asyncio.Task[None]] = set()
            for index in range(ROUNDS):
                if index == TRAINER_KILL_AT:
                    trainers[0].kill()
                if index == EDGE_KILL_AT:
                    both_edges_until = time.time()
                    edges["B"].kill()
                name = "AB"[index % 2] if edges["B"].alive() else "A"
                task = asyncio.create_task(one_round(clients[name], world, index, name, traffic))
                pending.add(task)
                task.add_done_callback(pending.discard)
                while len(pending) >= CONCURRENCY:
                    await asyncio.sleep(0.001)
                await asyncio.sleep(1 / RATE)
            await asyncio.gather(*pending)

            # The standby took over and learns everything that came due.
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while True:
                health = await clients["A"].health()
                store = SQLiteStore(db)
                try:
                    joined, due_left = store.last_seq(), store.counts(time.time()).pending_join
                finally:
                    store.close()
                learner = health.raw["learner"]
                if (
                    learner["cursor"] == joined
                    and due_left == 0
                    and joined >= len(traffic.ranked) - 5
                ):
                    break
                assert time.monotonic() < deadline, (
                    f"not learned in {SETTLE_TIMEOUT} s: {learner}, joined {joined}, "
                    f"{due_left} still to join\n{trainers[1].tail()}"
                )
                await asyncio.sleep(0.2)
            assert learner["trainer"].endswith(f":{trainers[1].proc.pid}"), learner  # type: ignore[union-attr]
            stop_watching.set()
            await watcher
        assert traffic.by_edge.get("A", 0) > 100 and traffic.by_edge.get("B", 0) > 100, (
            traffic.by_edge
        )

        for process in (edges["A"], trainers[1]):
            assert process.terminate() == 0, process.tail()
    finally:
        for process in everyone:
            process.kill()

    store = SQLiteStore(db)
    try:
        events = store.joined_after(0, 100_000)
        checkpoint = store.load_checkpoint()
        models = store.list_models()
    finally:
        store.close()
    # Every acknowledged decision and reward is stored; each decision joined exactly once.
    by_id = {e.decision.event_id: e for e in events}
    assert len(by_id) == len(events), "an event was joined twice"
    missing = sorted(set(traffic.ranked) - set(by_id))
    if missing:
        store = SQLiteStore(db)
        try:
            found = {i: store.get_decision(i) for i in missing[:5]}
        finally:
            store.close()
        pytest.fail(f"{len(missing)} acknowledged decisions not joined: {found}")
    for event_id, action in traffic.ranked.items():
        decision = by_id[event_id].decision
        assert decision.request.actions[decision.chosen_index].id == action, event_id
    wrong = [i for i, v in traffic.rewarded.items() if by_id[i].reward != v or by_id[i].defaulted]
    assert not wrong, f"acknowledged rewards not stored as sent: {wrong[:5]}"
    # The learner learned each joined event exactly once, across the takeover.
    assert checkpoint is not None
    assert checkpoint.cursor == len(events) == checkpoint.learned_count, (
        checkpoint.cursor,
        checkpoint.learned_count,
        len(events),
    )
    # After each publication (while both edges ran), both served it within one period.
    published = [
        m
        for m in models
        if watch_started < m.created_at and m.created_at + REFRESH + SLACK < both_edges_until
    ]
    assert len(published) >= 3, [m.version for m in models]
    for model in published:
        for side in ("A", "B"):
            first = next(
                (s.at for s in seen if s.edge == side and s.version >= model.version), None
            )
            assert first is not None and first - model.created_at <= REFRESH + SLACK, (
                f"edge {side} served v{model.version} "
                f"{None if first is None else round(first - model.created_at, 2)} s after "
                "its publication"
            )
