"""Seed a banditd store with decisions before a server opens it (a separate process).

Two shapes, both written through the real store (:class:`stores.sqlite.store.SQLiteStore`, or
:class:`stores.postgres.store.PostgresStore` for a ``postgresql://`` URL whose schema is
migrated) with decisions made by the real loop (:func:`bandit.loop.decide`):

* ``due``: a learner backlog. Decisions an hour old with a 1 s reward window, a reward for the
  workload's share of them, every window closed. A banditd started on the file joins and learns
  them all from its first learner step, as after an outage or a burst.
* ``open``: decisions made now with an hour-long window, no rewards: ids a reward benchmark can
  reward, each once, without ranking them over HTTP first.

Decisions are drawn from the baseline policy with the service's caps (a greedy action and an ε
spread), which is cheaper than VW's predict and learns at the same cost. A SQLite file is written
with ``synchronous=OFF`` — seeding is set-up, not a measurement — then fsynced once, and the
server reopens it with its own (durable) setting. PostgreSQL commits each chunk durably.

Run: ``python -m bench.backlog --db PATH --shape due --events 50000`` (or ``--db
postgresql://…``) prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Literal

from bandit.config import ServiceConfiguration
from bandit.events import Action, Reward, WriteBatch
from bandit.events import RankRequest as CoreRankRequest
from bandit.loop import decide
from bandit.store import Store
from bench.workload import Workload, is_rewarded, rank_bodies, reward_value
from policies.baseline import BaselinePolicy
from stores.sqlite.store import SQLiteStore

Shape = Literal["due", "open"]
CHUNK = 2000
"""Decisions per write transaction while seeding."""

DUE_CONFIG = {
    "rewardWaitTime": "PT1S",
    "defaultReward": 0,
    "rewardAggregation": "earliest",
    "explorationPercentage": 0.2,
    "modelExportFrequency": "PT5S",
    "logRetentionDays": 7,
}
"""The service configuration of a backlog store (also what a live run PUTs for a short loop)."""
POSTGRES = "postgresql://"


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedResult:
    """What was written: events, how many got a reward, and the seconds it took."""

    events: int
    rewarded: int
    seconds: float


def _configuration(shape: Shape) -> ServiceConfiguration:
    if shape == "due":
        return ServiceConfiguration(
            reward_wait_time=1.0, model_export_frequency=5.0, log_retention_days=7
        )
    return ServiceConfiguration(reward_wait_time=3600.0)


def _requests(workload: Workload, prefix: str, count: int) -> list[CoreRankRequest]:
    bodies = rank_bodies(workload)
    templates = [
        [Action(id=a["id"], features=tuple(a["features"])) for a in body["actions"]]
        for body in bodies
    ]
    contexts = [tuple(body["contextFeatures"]) for body in bodies]
    return [
        CoreRankRequest(
            event_id=f"{prefix}{n}",
            context_features=contexts[n % len(bodies)],
            actions=tuple(templates[n % len(bodies)]),
        )
        for n in range(count)
    ]


def seed(
    path: str, *, shape: Shape, events: int, prefix: str, workload: Workload, now: float
) -> SeedResult:
    """Write ``events`` decisions ``{prefix}0 …`` (and, for ``due``, their rewards) to ``path``
    (a SQLite file, or a PostgreSQL URL)."""
    started = time.monotonic()
    config = _configuration(shape)
    store = _open(path)
    try:
        store.save_config(config)
        policy = BaselinePolicy()
        first = now - 3600.0 if shape == "due" else now
        spacing = 1e-3 if shape == "due" else 0.0
        requests = _requests(workload, prefix, events)
        rewarded = 0
        for start in range(0, events, CHUNK):
            decisions = []
            rewards = []
            for n in range(start, min(start + CHUNK, events)):
                at = first + n * spacing
                decisions.append(
                    decide(requests[n], policy, config=config, seed=7, model_version=1, now=at)
                )
                if shape == "due" and is_rewarded(n, workload.reward_share):
                    rewards.append(
                        Reward(event_id=f"{prefix}{n}", value=reward_value(n), received_at=at + 0.5)
                    )
            store.write(WriteBatch(decisions=tuple(decisions), rewards=tuple(rewards)))
            rewarded += len(rewards)
    finally:
        store.close()
    if not path.startswith(POSTGRES):
        _flush(path)
    return SeedResult(events=events, rewarded=rewarded, seconds=time.monotonic() - started)


def _open(path: str) -> Store:
    if path.startswith(POSTGRES):
        from stores.postgres.store import PostgresStore  # psycopg is an optional extra

        return PostgresStore(path)
    return SQLiteStore(path, synchronous="OFF")


def _flush(path: str) -> None:
    # Written without fsyncs, the file's pages would still be on their way to disk when the
    # server's first commits fsync, and those would wait for them: flush the set-up first.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    """Seed a file from the command line and print what was written as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.backlog")
    parser.add_argument("--db", required=True, help="SQLite file or postgresql:// URL")
    parser.add_argument("--shape", choices=("due", "open"), required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--prefix", default="s-")
    parser.add_argument("--seed", type=int, default=Workload().seed)
    args = parser.parse_args(argv)
    result = seed(
        args.db,
        shape=args.shape,
        events=args.events,
        prefix=args.prefix,
        workload=Workload(seed=args.seed),
        now=time.time(),
    )
    print(
        json.dumps(
            {"events": result.events, "rewarded": result.rewarded, "seconds": result.seconds}
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
