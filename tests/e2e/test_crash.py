"""Crash safety of the loop (issue 2, "Judged by").

A ``banditd serve`` subprocess takes concurrent rank→reward traffic and is killed with SIGKILL
at seeded random moments, then restarted on the same SQLite file and port, several times. The
client keeps a ledger of every request the server acknowledged (201 for a rank, 204 for a
reward); a request that died with the connection is no acknowledgement and is not recorded.

Checked after every kill and at the end:

* every acknowledged decision is stored with the action, probability and context that were
  served, and every acknowledged reward is stored with its value;

and once traffic stopped and the learner caught up:

* no joined example was learned twice or skipped, by the learner's own counters (``/healthz``
  ``learnedCount`` equals the number of joined rows, ``cursor`` the highest seq, and so does the
  checkpoint), and by re-learning the joined sequence offline from a fresh model and comparing
  its predictions with the checkpointed model's. The comparison is shown to have power: the
  same sequence with one event learned twice, or one skipped, predicts differently.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from policies import DEFAULT_ARGUMENTS
from server.client import AsyncClient, ClientError, RetryPolicy
from stores.sqlite.store import SQLiteStore
from tests.e2e.conftest import (
    PREDICTION_TOL,
    SERVICE_CONFIG,
    SOFTMAX_ARGUMENTS,
    BanditServer,
    World,
    get_json,
    learn,
    max_difference,
    predictions,
    probe_requests,
    put_service_config,
    round_rng,
    seed_store,
)

pytestmark = pytest.mark.slow

SEED = 4242
WORKERS = 16
KILLS = 4
TRAFFIC_BEFORE_KILL = (0.8, 2.5)
"""Seconds of traffic before each kill, drawn uniformly (seeded)."""
DOWN_TIME = (0.0, 0.5)
"""Seconds the server stays dead before the restart, drawn uniformly (seeded)."""
TRAFFIC_AFTER_LAST_RESTART = 1.5
MAX_ROUNDS_PER_WORKER = 5000
TRAFFIC_TIME_LIMIT = 45.0
"""Wall-clock bound on the traffic phase, kills and restarts included."""
SETTLE_TIMEOUT = 25.0
"""Seconds for every window to close (1 s wait + 2 s join grace) and the learner to catch up."""
LEARN_BATCH = 8
"""Joined events learned between checkpoints (the default is 512). Small batches keep the
learner cycling through join → learn → checkpoint under this traffic, so kills often land
between a join and the checkpoint that covers it: the case exactly-once is about."""
RETRY_PAUSE = 0.1
"""A worker's pause after a request died with the server."""

WORLD = World()


@dataclass(frozen=True)
class AckedRank:
    user: int
    action: str
    probability: float


@dataclass
class Ledger:
    """What the server acknowledged, and what else happened, from the client's side."""

    ranks: dict[str, AckedRank] = field(default_factory=dict)
    rewards: dict[str, float] = field(default_factory=dict)
    no_ack: int = 0
    anomalies: list[str] = field(default_factory=list)


def reward_value(rng: random.Random, user: int, action: str) -> float:
    """A distinct-looking reward in [−1, 1]: high for the best action, low otherwise."""
    if action == WORLD.best_action(user):
        return round(rng.uniform(0.5, 1.0), 4)
    return round(rng.uniform(-0.5, 0.2), 4)


async def worker(
    client: AsyncClient,
    w: int,
    ledger: Ledger,
    stop: asyncio.Event,
    deadline: float,
) -> None:
    """Rank, then reward the same event; record only what got a 2xx (the client tries each
    request once: no answer is no acknowledgement, any other answer an anomaly)."""
    for i in range(MAX_ROUNDS_PER_WORKER):
        if stop.is_set() or time.monotonic() > deadline:
            return
        rng = round_rng(SEED, w * MAX_ROUNDS_PER_WORKER + i)
        user = rng.randrange(WORLD.users)
        event_id = f"crash-w{w}-{i}"
        try:
            ranked = await client.rank(WORLD.rank_request(event_id, user))
        except ClientError as error:
            if error.status is not None:
                ledger.anomalies.append(f"rank {event_id}: {error}")
                continue
            ledger.no_ack += 1
            await asyncio.sleep(RETRY_PAUSE)
            continue
        action = ranked.reward_action_id
        ledger.ranks[event_id] = AckedRank(user, action, ranked.ranking[0].probability)
        value = reward_value(rng, user, action)
        try:
            await client.reward(event_id, value)
        except ClientError as error:
            if error.status is not None:
                ledger.anomalies.append(f"reward {event_id}: {error}")
                continue
            ledger.no_ack += 1
            await asyncio.sleep(RETRY_PAUSE)
            continue
        ledger.rewards[event_id] = value


@contextmanager
def read_only(db: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the store's file (safe beside a running server: WAL)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        yield conn


def check_acknowledged(db: Path, ranks: dict[str, AckedRank], rewards: dict[str, float]) -> None:
    """Every acknowledged decision and reward is in the store, as acknowledged."""
    store = SQLiteStore(db)
    try:
        missing, wrong = [], []
        for event_id, acked in ranks.items():
            decision = store.get_decision(event_id)
            if decision is None:
                missing.append(event_id)
                continue
            user = decision.request.context_features[0]["user"]["type"]
            if (
                decision.chosen_action_id != acked.action
                or not math.isclose(decision.propensity, acked.probability, abs_tol=1e-9)
                or user != f"u{acked.user}"
            ):
                wrong.append((event_id, acked, decision.chosen_action_id, decision.propensity))
        assert not missing, f"{len(missing)} acknowledged decisions lost, e.g. {missing[:5]}"
        assert not wrong, f"{len(wrong)} decisions stored differently, e.g. {wrong[:3]}"
    finally:
        store.close()
    with read_only(db) as conn:
        stored: dict[str, list[float]] = {}
        for event_id, value in conn.execute("SELECT event_id, value FROM rewards"):
            stored.setdefault(event_id, []).append(value)
    lost = [
        (event_id, value)
        for event_id, value in rewards.items()
        if not any(math.isclose(value, v, abs_tol=1e-12) for v in stored.get(event_id, []))
    ]
    assert not lost, f"{len(lost)} acknowledged rewards lost, e.g. {lost[:5]}"


@dataclass(frozen=True)
class StoreProgress:
    decisions: int
    unjoined: int
    joined: int
    last_seq: int
    checkpoint_cursor: int
    checkpoint_learned: int


def progress(db: Path) -> StoreProgress:
    with read_only(db) as conn:

        def one(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])

        cursor, learned = conn.execute(
            "SELECT cursor, learned_count FROM checkpoint WHERE id = 1"
        ).fetchone()
        return StoreProgress(
            decisions=one("SELECT COUNT(*) FROM decisions"),
            unjoined=one(
                "SELECT COUNT(*) FROM decisions d "
                "WHERE NOT EXISTS (SELECT 1 FROM joined j WHERE j.event_id = d.event_id)"
            ),
            joined=one("SELECT COUNT(*) FROM joined"),
            last_seq=one("SELECT COALESCE(MAX(seq), 0) FROM joined"),
            checkpoint_cursor=int(cursor),
            checkpoint_learned=int(learned),
        )


async def settle(
    http: aiohttp.ClientSession, server: BanditServer
) -> tuple[dict[str, Any], StoreProgress]:
    """Wait until every decision is joined and the learner (and its checkpoint) has learned
    every joined event; returns the final ``/healthz`` and store progress."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        health = await get_json(http, f"{server.url}/healthz")
        state = progress(server.db)
        learner = health["learner"]
        if (
            state.unjoined == 0
            and learner["cursor"] == state.last_seq
            and state.checkpoint_cursor == state.last_seq
        ):
            return health, state
        if time.monotonic() > deadline:
            pytest.fail(f"the loop did not settle in {SETTLE_TIMEOUT} s: {health} {state}")
        await asyncio.sleep(0.2)


async def test_acknowledged_writes_survive_sigkill_and_nothing_is_learned_twice(
    banditd: BanditServer,
) -> None:
    seed_store(banditd.db, SEED)
    banditd.configure(learn_batch=LEARN_BATCH)
    rng = random.Random(SEED)
    ledger = Ledger()
    stop = asyncio.Event()
    started = time.monotonic()
    deadline = started + TRAFFIC_TIME_LIMIT
    checks_after_kill: list[tuple[int, int]] = []
    unlearned_at_kill: list[int] = []

    banditd.start()
    timeout = aiohttp.ClientTimeout(total=10)
    traffic = AsyncClient(
        banditd.url, timeout=10, connections=WORKERS, retry=RetryPolicy(attempts=1)
    )
    admin = aiohttp.ClientSession(timeout=timeout)
    workers: list[asyncio.Task[None]] = []
    try:
        await banditd.wait_healthy(admin)
        await put_service_config(banditd)
        workers = [
            asyncio.create_task(worker(traffic, w, ledger, stop, deadline)) for w in range(WORKERS)
        ]
        for kill in range(KILLS):
            await asyncio.sleep(rng.uniform(*TRAFFIC_BEFORE_KILL))
            before = checks_after_kill[-1][0] if checks_after_kill else 0
            assert len(ledger.ranks) > before, f"no rank acknowledged before kill {kill + 1}"
            banditd.kill()
            # The process is gone: nothing acknowledged from here on can be missing. Copy the
            # ledger without yielding to the workers, then check the file while it is down.
            ranks, rewards = dict(ledger.ranks), dict(ledger.rewards)
            check_acknowledged(banditd.db, ranks, rewards)
            checks_after_kill.append((len(ranks), len(rewards)))
            at_kill = progress(banditd.db)
            unlearned_at_kill.append(at_kill.last_seq - at_kill.checkpoint_cursor)
            await asyncio.sleep(rng.uniform(*DOWN_TIME))
            banditd.start()
            await banditd.wait_healthy(admin)
        await asyncio.sleep(TRAFFIC_AFTER_LAST_RESTART)
        assert len(ledger.ranks) > checks_after_kill[-1][0], "no rank acknowledged after restart"
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), timeout=15)
        traffic_seconds = time.monotonic() - started

        health, state = await settle(admin, banditd)
        config = await get_json(admin, f"{banditd.url}/v1/configurations/service")
    finally:
        stop.set()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await traffic.close()
        await admin.close()
    assert banditd.terminate() == 0, banditd.log_tail()
    assert config["rewardWaitTime"] == SERVICE_CONFIG["rewardWaitTime"], config

    print(
        f"\ncrash e2e: {KILLS} SIGKILLs in {traffic_seconds:.1f} s of traffic; acknowledged "
        f"{len(ledger.ranks)} ranks and {len(ledger.rewards)} rewards ({ledger.no_ack} requests "
        f"died unacknowledged); ledger sizes checked after each kill: {checks_after_kill}; "
        f"joined events not yet checkpointed at each kill: {unlearned_at_kill}; "
        f"{state.decisions} decisions stored, {state.joined} joined, learnedCount "
        f"{health['learner']['learnedCount']}, cursor {health['learner']['cursor']}"
    )
    assert not ledger.anomalies, ledger.anomalies[:10]
    assert len(checks_after_kill) == KILLS

    # (a) Acknowledged writes are durable.
    check_acknowledged(banditd.db, ledger.ranks, ledger.rewards)

    # (b) Exactly once, by the learner's counters and its checkpoint.
    learner = health["learner"]
    assert learner["running"] and learner["failures"] == 0, health
    assert state.unjoined == 0 and state.joined == state.decisions, state
    assert learner["learnedCount"] == state.joined, (health, state)
    assert learner["cursor"] == state.last_seq, (health, state)
    assert state.checkpoint_learned == state.joined, state

    store = SQLiteStore(banditd.db)
    try:
        assert store.last_seq() == state.last_seq
        events = store.joined_after(0, 10 * state.joined + 10)
        checkpoint = store.load_checkpoint()
    finally:
        store.close()
    assert checkpoint is not None
    assert checkpoint.cursor == state.last_seq and checkpoint.learned_count == len(events)
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)) and seqs[-1] == state.last_seq
    joined_ids = [e.decision.event_id for e in events]
    assert len(set(joined_ids)) == len(joined_ids), "an event was joined twice"
    assert set(ledger.ranks) <= set(joined_ids), "an acknowledged decision was never joined"
    # Each joined example carries the reward stored in its window (one per event here), or the
    # default reward when none was: rewards committed before a crash are not dropped by a join
    # made after the restart.
    with read_only(banditd.db) as conn:
        in_window = dict(conn.execute("SELECT event_id, value FROM rewards WHERE late = 0"))
    default = (float(SERVICE_CONFIG["defaultReward"]), True)

    def label(event_id: str) -> tuple[float, bool]:
        return (in_window[event_id], False) if event_id in in_window else default

    mislabelled = [
        (e.decision.event_id, (e.reward, e.defaulted), label(e.decision.event_id))
        for e in events
        if (e.reward, e.defaulted) != label(e.decision.event_id)
    ]
    assert not mislabelled, f"{len(mislabelled)} joined with the wrong reward: {mislabelled[:5]}"

    # (b) Exactly once, by re-learning the joined sequence offline.
    arguments = checkpoint.arguments
    assert arguments == DEFAULT_ARGUMENTS
    probes = probe_requests()
    offline = learn(arguments, events)
    for args in (arguments, SOFTMAX_ARGUMENTS):
        served = predictions(args, checkpoint.model, probes)
        replayed = predictions(args, offline, probes)
        assert max_difference(served, replayed) <= PREDICTION_TOL, (args, served, replayed)

    # The comparison has power: one event learned twice, or skipped, changes the predictions.
    # The last event: what is learned after an event washes its effect out, and in the middle of
    # a run one event's can fall below the tolerance (seen once: 9.5e-7 against 1e-6).
    last = len(events) - 1
    replayed = predictions(SOFTMAX_ARGUMENTS, offline, probes)
    twice = learn(arguments, [*events, events[last]])
    skipped = learn(arguments, events[:last])
    for variant in (twice, skipped):
        assert max_difference(predictions(SOFTMAX_ARGUMENTS, variant, probes), replayed) > (
            PREDICTION_TOL
        )
