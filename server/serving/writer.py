"""Group commit: many requests, one transaction, a 2xx only after the write is durable.

Requests enqueue their decision, reward or activation and await a future. A commit task drains
the queue: everything that arrived while the previous commit ran goes into the next
transaction. Woken by a first write, it yields to the event loop once before it drains, so the
handlers that the same round of socket reads woke add theirs too. At 32 connections that grew
transactions from about 10 to 17 items, cut fsyncs by a quarter, and took about 11% off the
server CPU per rank and per reward (A/B runs on one core: rank 213 -> 191 µs, reward
108 -> 95 µs).

It commits on the event loop itself when no other writer holds the store's write lock
(:meth:`EventLog.try_write`): a batch's transaction costs less than handing it to a thread and
back (rank and reward throughput at 32 connections on one core rose by about 5%). When the lock
is taken (the learner's append, a WAL restart, another process) the batch goes to a dedicated
thread (:meth:`EventLog.write`), so the event loop never waits for a lock. A sync task then makes
committed batches durable with :meth:`EventLog.sync` (an fsync of SQLite's WAL) on a second
thread, covering every batch committed before it started, and only then resolves their
futures. So batch N+1's transaction runs while batch N's fsync is in flight. Under load batches
grow by themselves; when idle a request commits alone, after that one pass of the event loop.

One window is not covered: a rank replay (same event id) that reads a decision committed but
not yet synced answers 201 from it; the original request is still waiting for that sync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

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
from bandit.store import EventLog

log = logging.getLogger(__name__)

BatchObserver = Callable[[WriteBatch, WriteResult | None, float], None]
"""Called on the event loop after each commit with the batch, its result (None on failure) and
the seconds the commit took."""

SyncObserver = Callable[[int, float, bool], None]
"""Called on the event loop after each sync with the batches it covered, its seconds, success."""


@dataclass(slots=True)
class _Pending:
    decisions: list[tuple[Decision, asyncio.Future[Decision]]] = field(default_factory=list)
    rewards: list[tuple[Reward, asyncio.Future[RewardOutcome]]] = field(default_factory=list)
    activations: list[tuple[Activation, asyncio.Future[ActivationOutcome]]] = field(
        default_factory=list
    )

    def __len__(self) -> int:
        return len(self.decisions) + len(self.rewards) + len(self.activations)

    def futures(self) -> list[asyncio.Future[Any]]:
        return [
            *(f for _, f in self.decisions),
            *(f for _, f in self.rewards),
            *(f for _, f in self.activations),
        ]

    def resolve(self, result: WriteResult) -> None:
        for (_, dfut), stored in zip(self.decisions, result.decisions, strict=True):
            if not dfut.done():
                dfut.set_result(stored)
        for (_, rfut), outcome in zip(self.rewards, result.rewards, strict=True):
            if not rfut.done():
                rfut.set_result(outcome)
        for (_, afut), act in zip(self.activations, result.activations, strict=True):
            if not afut.done():
                afut.set_result(act)

    def fail(self, error: BaseException) -> None:
        for fut in self.futures():
            if not fut.done():
                fut.set_exception(error)


class GroupCommitWriter:
    """Batches store writes from concurrent requests into shared, durable transactions.

    Args:
        store: the store to write to; only this writer's threads call ``write`` and ``sync``.
        max_batch: most items in one transaction.
        observer: optional callback for commit metrics.
        sync_observer: optional callback for sync metrics.
    """

    def __init__(
        self,
        store: EventLog,
        *,
        max_batch: int = 1024,
        observer: BatchObserver | None = None,
        sync_observer: SyncObserver | None = None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._observer = observer
        self._sync_observer = sync_observer
        self._pending = _Pending()
        self._unsynced: list[tuple[_Pending, WriteResult]] = []
        self._wake = asyncio.Event()
        self._sync_wake = asyncio.Event()
        self._commit_thread = ThreadPoolExecutor(1, thread_name_prefix="banditd-writer")
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="banditd-sync")
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._committing = True
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the commit and sync tasks."""
        # Kept: asyncio.get_running_loop() costs a getpid() system call on every call.
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="banditd-writer"),
            asyncio.create_task(self._sync_loop(), name="banditd-sync"),
        ]

    async def stop(self) -> None:
        """Commit and sync what is queued, then stop."""
        self._closing = True
        self._wake.set()
        self._sync_wake.set()
        for task in self._tasks:
            await task
        self._commit_thread.shutdown(wait=True)
        self._sync_thread.shutdown(wait=True)

    def _future(self) -> asyncio.Future[Any]:
        if self._closing:
            raise ServiceUnavailable("the service is shutting down.")
        self._wake.set()
        return (self._loop or asyncio.get_running_loop()).create_future()

    async def write_decision(self, decision: Decision) -> Decision:
        """Commit a decision durably; returns the stored one (an earlier one if the id existed)."""
        future: asyncio.Future[Decision] = self._future()
        self._pending.decisions.append((decision, future))
        return await future

    async def write_reward(self, reward: Reward) -> RewardOutcome:
        """Commit a reward durably; returns what storing it did."""
        future: asyncio.Future[RewardOutcome] = self._future()
        self._pending.rewards.append((reward, future))
        return await future

    async def write_activation(self, activation: Activation) -> ActivationOutcome:
        """Commit an activation durably; returns what storing it did."""
        future: asyncio.Future[ActivationOutcome] = self._future()
        self._pending.activations.append((activation, future))
        return await future

    def _take(self) -> _Pending:
        pending = self._pending
        if len(pending) <= self._max_batch:
            self._pending = _Pending()
            return pending
        taken = _Pending()
        budget = self._max_batch
        for name in ("decisions", "activations", "rewards"):
            items: list[object] = getattr(pending, name)
            setattr(taken, name, items[:budget])
            setattr(pending, name, items[budget:])
            budget -= len(getattr(taken, name))
        return taken

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not len(self._pending):
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                # One pass of the event loop: the handlers already woken reach the queue.
                await asyncio.sleep(0)
                items = self._take()
                batch = WriteBatch(
                    decisions=tuple(d for d, _ in items.decisions),
                    rewards=tuple(r for r, _ in items.rewards),
                    activations=tuple(a for a, _ in items.activations),
                )
                started = loop.time()
                try:
                    result = self._store.try_write(batch)
                    if result is None:
                        result = await loop.run_in_executor(
                            self._commit_thread, self._store.write, batch
                        )
                except Exception as exc:
                    log.exception("store write of %d items failed", len(items))
                    if self._observer:
                        self._observer(batch, None, loop.time() - started)
                    items.fail(ServiceUnavailable(f"the store could not commit the write: {exc}"))
                    continue
                if self._observer:
                    self._observer(batch, result, loop.time() - started)
                self._unsynced.append((items, result))
                self._sync_wake.set()
        finally:
            self._committing = False
            self._sync_wake.set()

    async def _sync_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._unsynced:
                if not self._committing:
                    return
                self._sync_wake.clear()
                await self._sync_wake.wait()
                continue
            batches, self._unsynced = self._unsynced, []
            started = loop.time()
            try:
                await loop.run_in_executor(self._sync_thread, self._store.sync)
            except Exception as exc:
                log.exception("store sync of %d batches failed", len(batches))
                error = ServiceUnavailable(f"the store could not make the write durable: {exc}")
                for items, _ in batches:
                    items.fail(error)
                ok = False
            else:
                for items, result in batches:
                    items.resolve(result)
                ok = True
            if self._sync_observer:
                self._sync_observer(len(batches), loop.time() - started, ok)
