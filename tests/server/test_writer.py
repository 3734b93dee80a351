"""The group-commit writer on a real SQLite store: writes that arrive together share one
transaction (at most ``max_batch`` items), a write's future resolves only once its batch is
synced, a failed commit or sync reaches every waiter of the batch, and stop flushes the queue.

Each ordering claim is checked by holding the store at a known point (a lock another connection
holds, or a sync the test releases), never by timing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bandit.errors import ServiceUnavailable
from bandit.events import (
    Activation,
    ActivationOutcome,
    Decision,
    Reward,
    RewardOutcome,
    WriteBatch,
    WriteResult,
)
from server.serving.writer import GroupCommitWriter
from stores.sqlite.store import SQLiteStore
from tests.conftest import decision

T0 = 1_000.0
WAIT = 600.0
BOUND = 10.0
"""Seconds any wait in these tests may take before it fails (none should come near it)."""


class Commits:
    """The writer's commit observer: the size of each batch and whether it committed."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.failed: list[int] = []

    def __call__(self, batch: WriteBatch, result: WriteResult | None, _seconds: float) -> None:
        size = len(batch.decisions) + len(batch.rewards) + len(batch.activations)
        (self.sizes if result is not None else self.failed).append(size)


class HeldSync(SQLiteStore):
    """A SQLite store whose sync waits until the test releases it, so a test can look at the
    writer while a batch is committed but not yet durable."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.syncing = threading.Event()
        self.release = threading.Event()

    def sync(self) -> None:
        self.syncing.set()
        assert self.release.wait(BOUND), "the test never released the sync"
        super().sync()


class FailingSync(SQLiteStore):
    """A SQLite store whose WAL cannot be made durable (as when fsync fails on a full disk)."""

    def sync(self) -> None:
        raise OSError(28, "No space left on device")


def logged(event_id: str, *, defer: bool = False) -> Decision:
    """A decision at ``T0`` over two actions, its window open for ``WAIT`` s once active."""
    return decision(event_id, at=T0, wait=WAIT, k=2, defer=defer)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "writer.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(path)
    yield opened
    opened.close()


@pytest.fixture
def commits() -> Commits:
    return Commits()


@pytest.fixture
async def writer(store: SQLiteStore, commits: Commits) -> AsyncIterator[GroupCommitWriter]:
    started = GroupCommitWriter(store, observer=commits)
    await started.start()
    yield started
    await started.stop()


async def within_bound(predicate: Callable[[], bool]) -> None:
    """Let the event loop run until ``predicate()`` holds (at most :data:`BOUND` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not predicate():
        assert loop.time() < deadline, "the writer did not get there"
        await asyncio.sleep(0.01)


# -- batching ----------------------------------------------------------------------------------


async def test_writes_that_arrive_together_share_one_transaction(
    writer: GroupCommitWriter, commits: Commits, store: SQLiteStore
) -> None:
    stored = await asyncio.gather(*(writer.write_decision(logged(f"e{i}")) for i in range(50)))
    assert [d.event_id for d in stored] == [f"e{i}" for i in range(50)]
    assert commits.sizes == [50]
    assert store.counts(T0).decisions == 50


async def test_a_batch_holds_at_most_max_batch_items(store: SQLiteStore, commits: Commits) -> None:
    writer = GroupCommitWriter(store, max_batch=8, observer=commits)
    await writer.start()
    try:
        await asyncio.gather(*(writer.write_decision(logged(f"e{i}")) for i in range(20)))
    finally:
        await writer.stop()
    assert commits.sizes == [8, 8, 4]
    assert store.counts(T0).decisions == 20


async def test_decisions_rewards_and_activations_commit_together_with_their_outcomes(
    writer: GroupCommitWriter, commits: Commits, store: SQLiteStore
) -> None:
    await asyncio.gather(
        writer.write_decision(logged("e1")), writer.write_decision(logged("d1", defer=True))
    )
    again, reward, unknown, activation = await asyncio.gather(
        writer.write_decision(logged("e1")),
        writer.write_reward(Reward(event_id="e1", value=0.5, received_at=T0 + 1)),
        writer.write_reward(Reward(event_id="nobody", value=0.5, received_at=T0 + 1)),
        writer.write_activation(Activation(event_id="d1", at=T0 + 1, wait=WAIT)),
    )
    assert commits.sizes == [2, 4]
    assert again == store.get_decision("e1")  # a repeated id returns the stored decision
    assert reward is RewardOutcome.STORED
    assert unknown is RewardOutcome.UNKNOWN_EVENT
    assert activation is ActivationOutcome.ACTIVATED
    assert store.counts(T0).rewards == 1


# -- durability before the answer ----------------------------------------------------------


async def test_a_write_is_answered_only_after_its_batch_is_synced(path: Path) -> None:
    store = HeldSync(path)
    commits = Commits()
    writer = GroupCommitWriter(store, observer=commits)
    await writer.start()
    try:
        first = asyncio.create_task(writer.write_decision(logged("e1")))
        assert await asyncio.to_thread(store.syncing.wait, BOUND)
        # Committed (another reader sees it) but not durable: the request still waits.
        assert store.get_decision("e1") is not None
        assert not first.done()
        # The next batch commits while the first one's sync is in flight, and waits for its own.
        second = asyncio.create_task(writer.write_decision(logged("e2")))
        await within_bound(lambda: commits.sizes == [1, 1])
        assert not first.done() and not second.done()
        store.release.set()
        assert (await asyncio.wait_for(first, BOUND)).event_id == "e1"
        assert (await asyncio.wait_for(second, BOUND)).event_id == "e2"
    finally:
        store.release.set()
        await writer.stop()
        store.close()


# -- errors reach every waiter ---------------------------------------------------------------


async def test_a_failed_commit_fails_every_waiter_of_the_batch_and_the_next_one_commits(
    path: Path,
) -> None:
    store = SQLiteStore(path, lock_timeout=0.2)
    commits = Commits()
    writer = GroupCommitWriter(store, observer=commits)
    await writer.start()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        results = await asyncio.gather(
            *(writer.write_decision(logged(f"e{i}")) for i in range(5)),
            writer.write_reward(Reward(event_id="e0", value=1.0, received_at=T0 + 1)),
            writer.write_activation(Activation(event_id="e0", at=T0 + 1, wait=WAIT)),
            return_exceptions=True,
        )
        assert commits.failed == [7] and commits.sizes == []
        assert all(isinstance(r, ServiceUnavailable) for r in results), results
        assert all("could not commit" in str(r) for r in results), results
        other.execute("ROLLBACK")
        assert store.counts(T0).decisions == 0
        assert (await writer.write_decision(logged("after"))).event_id == "after"
        assert commits.sizes == [1]
    finally:
        other.close()
        await writer.stop()
        store.close()


async def test_a_failed_sync_fails_every_waiter_of_the_batches_it_covered(path: Path) -> None:
    store = FailingSync(path)
    writer = GroupCommitWriter(store)
    await writer.start()
    try:
        results = await asyncio.gather(
            *(writer.write_decision(logged(f"e{i}")) for i in range(3)), return_exceptions=True
        )
    finally:
        await writer.stop()
        store.close()
    assert all(isinstance(r, ServiceUnavailable) for r in results), results
    assert all("could not make the write durable" in str(r) for r in results), results


# -- stop ------------------------------------------------------------------------------------


async def test_stop_commits_and_syncs_what_is_queued_then_refuses_writes(
    path: Path, store: SQLiteStore
) -> None:
    writer = GroupCommitWriter(store)
    await writer.start()
    queued = [asyncio.create_task(writer.write_decision(logged(f"e{i}"))) for i in range(10)]
    await asyncio.sleep(0)  # every task has queued its write
    assert not any(task.done() for task in queued)
    await writer.stop()
    assert all(task.done() for task in queued)
    assert [task.result().event_id for task in queued] == [f"e{i}" for i in range(10)]
    with pytest.raises(ServiceUnavailable, match="shutting down"):
        await writer.write_decision(logged("late"))
    reopened = SQLiteStore(path)
    try:
        assert reopened.counts(T0).decisions == 10
    finally:
        reopened.close()
