"""The durable store write alone: a rank's decision and a reward, with no HTTP and no event loop.

Batches go through :meth:`server.sqlite_store.SQLiteStore.try_write` and then
:meth:`~server.sqlite_store.SQLiteStore.sync` (the fsync that makes them durable), which is what
the group-commit writer does for each transaction. The file is opened as ``banditd serve`` opens
it (``synchronous=FULL``, WAL checkpoints on the store's own thread) after ``--events`` open
decisions were seeded into it (:mod:`bench.backlog`). Decisions are the workload's bodies decided
by the real loop before the clock starts; rewards go to the seeded decisions in the order the HTTP
bench rewards them. CPU is the whole process's user and kernel time (the checkpoint thread
included) per item: what the write costs a request before anything else banditd does for it.

``--batch`` is the items per transaction; the bench passes what banditd's writer gathered during
its runs at 32 connections (``banditd_writer_batch_size``), so the per-transaction cost is shared
as it was there.

Run: ``python -m bench.store_writes --seconds 2`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bandit.events import Reward, WriteBatch
from bandit.loop import decide
from bench.backlog import configuration, rank_requests, seed
from bench.workload import Workload, reward_value
from policies.baseline import BaselinePolicy
from server.sqlite_store import SQLiteStore

DEFAULT_BATCH = 17
"""Items per transaction when the bench has no figure of its own (what banditd's writer
gathered at 32 connections on a 2-core machine)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreWriteResult:
    """CPU µs per item of durable writes of ``batch`` items per transaction, (user, kernel)."""

    events: int
    decision_batch: float
    reward_batch: float
    decisions: int
    rewards: int
    decision_user_us: float
    decision_kernel_us: float
    reward_user_us: float
    reward_kernel_us: float

    @property
    def decision_us(self) -> float:
        """CPU µs per durably written decision."""
        return self.decision_user_us + self.decision_kernel_us

    @property
    def reward_us(self) -> float:
        """CPU µs per durably written reward."""
        return self.reward_user_us + self.reward_kernel_us


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _timed(
    store: SQLiteStore, batches: Sequence[WriteBatch], seconds: float
) -> tuple[int, float, float]:
    """Write and sync ``batches`` in order until they run out or ``seconds`` pass; returns the
    items written and the user and kernel CPU µs per item."""
    items = 0
    user, kernel = _cpu()
    deadline = time.monotonic() + seconds
    for batch in batches:
        if store.try_write(batch) is None:
            # The lock was held (the checkpoint thread restarting the WAL): the writer then
            # hands the batch to its thread, which waits for the lock.
            store.write(batch)
        store.sync()
        items += len(batch.decisions) + len(batch.rewards)
        if time.monotonic() >= deadline:
            break
    user_after, kernel_after = _cpu()
    if not items:
        raise RuntimeError("nothing was written")
    return items, 1e6 * (user_after - user) / items, 1e6 * (kernel_after - kernel) / items


def _chunks(items: Sequence[object], size: float) -> list[slice]:
    """Slices of ``items`` that average ``size`` items each (a fractional mean alternates)."""
    out = []
    start = 0
    n = 0
    while start < len(items):
        n += 1
        end = min(len(items), max(start + 1, round(n * size)))
        out.append(slice(start, end))
        start = end
    return out


def measure(
    path: Path,
    *,
    events: int,
    decision_batch: float,
    reward_batch: float,
    seconds: float,
    workload: Workload | None = None,
) -> StoreWriteResult:
    """Seed ``events`` open decisions into a new file at ``path``, then time durable writes of
    new decisions and of rewards to the seeded ones, each for up to ``seconds``."""
    workload = workload or Workload()
    now = time.time()
    seed(str(path), shape="open", events=events, prefix="s-", workload=workload, now=now)
    config = configuration("open")
    policy = BaselinePolicy()
    requests = rank_requests(workload, "w-", events)
    decisions = [
        decide(request, policy, config=config, seed=7, model_version=1, now=now)
        for request in requests
    ]
    rewards = [
        Reward(event_id=f"s-{n}", value=reward_value(n), received_at=now) for n in range(events)
    ]
    decision_batches = [
        WriteBatch(decisions=tuple(decisions[part])) for part in _chunks(decisions, decision_batch)
    ]
    reward_batches = [
        WriteBatch(rewards=tuple(rewards[part])) for part in _chunks(rewards, reward_batch)
    ]
    store = SQLiteStore(path, synchronous="FULL", background_checkpoint=1.0)
    try:
        warm = max(1, len(decision_batches) // 50)
        _timed(store, decision_batches[:warm], seconds)
        written, decision_user, decision_kernel = _timed(store, decision_batches[warm:], seconds)
        warm = max(1, len(reward_batches) // 50)
        _timed(store, reward_batches[:warm], seconds)
        rewarded, reward_user, reward_kernel = _timed(store, reward_batches[warm:], seconds)
    finally:
        store.close()
    return StoreWriteResult(
        events=events,
        decision_batch=decision_batch,
        reward_batch=reward_batch,
        decisions=written,
        rewards=rewarded,
        decision_user_us=decision_user,
        decision_kernel_us=decision_kernel,
        reward_user_us=reward_user,
        reward_kernel_us=reward_kernel,
    )


def main(argv: list[str] | None = None) -> int:
    """Measure in a temporary directory and print the result as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m bench.store_writes")
    parser.add_argument("--seconds", type=float, default=2.0, help="longest timed part, each")
    parser.add_argument("--events", type=int, default=60_000, help="decisions seeded first")
    parser.add_argument("--decision-batch", type=float, default=DEFAULT_BATCH)
    parser.add_argument("--reward-batch", type=float, default=DEFAULT_BATCH)
    args = parser.parse_args(argv)
    if args.decision_batch < 1 or args.reward_batch < 1 or args.events < 2:
        parser.error("batches must hold at least one item, and --events at least 2")
    with tempfile.TemporaryDirectory(prefix="banditd-store-") as work:
        result = measure(
            Path(work) / "store.db",
            events=args.events,
            decision_batch=args.decision_batch,
            reward_batch=args.reward_batch,
            seconds=args.seconds,
        )
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
