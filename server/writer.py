"""Group commit: many requests, one transaction, a 2xx only after the commit.

Requests enqueue their decision, reward or activation and await a future. One task drains the
queue: everything that arrived while the previous commit was running goes into the next
:meth:`Store.write` call, run on a dedicated thread so the event loop keeps serving. Under load
batches grow by themselves; when idle a request commits alone, with no added delay.
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
from bandit.store import Store

log = logging.getLogger(__name__)

BatchObserver = Callable[[WriteBatch, WriteResult | None, float], None]
"""Called on the event loop after each commit with the batch, its result (None on failure) and
the seconds the commit took."""


@dataclass(slots=True)
class _Pending:
    decisions: list[tuple[Decision, asyncio.Future[Decision]]] = field(default_factory=list)
    rewards: list[tuple[Reward, asyncio.Future[RewardOutcome]]] = field(default_factory=list)
    activations: list[tuple[Activation, asyncio.Future[ActivationOutcome]]] = field(
        default_factory=list
    )

    def __len__(self) -> int:
        return len(self.decisions) + len(self.rewards) + len(self.activations)


class GroupCommitWriter:
    """Batches store writes from concurrent requests into shared transactions.

    Args:
        store: the store to write to; only this writer's thread calls ``store.write``.
        max_batch: most items in one transaction.
        observer: optional callback for metrics.
    """

    def __init__(
        self, store: Store, *, max_batch: int = 1024, observer: BatchObserver | None = None
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._observer = observer
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="banditd-writer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Start the draining task."""
        self._task = asyncio.create_task(self._run(), name="banditd-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def _submit(self) -> None:
        if self._closing:
            raise ServiceUnavailable("the service is shutting down.")
        self._wake.set()

    async def write_decision(self, decision: Decision) -> Decision:
        """Commit a decision; returns the stored one (an earlier one if the id existed)."""
        self._submit()
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending.decisions.append((decision, future))
        return await future

    async def write_reward(self, reward: Reward) -> RewardOutcome:
        """Commit a reward; returns what storing it did."""
        self._submit()
        future: asyncio.Future[RewardOutcome] = asyncio.get_running_loop().create_future()
        self._pending.rewards.append((reward, future))
        return await future

    async def write_activation(self, activation: Activation) -> ActivationOutcome:
        """Commit an activation; returns what storing it did."""
        self._submit()
        future: asyncio.Future[ActivationOutcome] = asyncio.get_running_loop().create_future()
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

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not len(self._pending):
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch_items = self._take()
            batch = WriteBatch(
                decisions=tuple(d for d, _ in batch_items.decisions),
                rewards=tuple(r for r, _ in batch_items.rewards),
                activations=tuple(a for a, _ in batch_items.activations),
            )
            started = loop.time()
            try:
                result = await loop.run_in_executor(self._executor, self._store.write, batch)
            except Exception as exc:
                log.exception("store write of %d items failed", len(batch_items))
                if self._observer:
                    self._observer(batch, None, loop.time() - started)
                error = ServiceUnavailable(f"the store could not commit the write: {exc}")
                futures: list[asyncio.Future[Any]] = [
                    *(f for _, f in batch_items.decisions),
                    *(f for _, f in batch_items.rewards),
                    *(f for _, f in batch_items.activations),
                ]
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(error)
                continue
            if self._observer:
                self._observer(batch, result, loop.time() - started)
            for (_, dfut), stored in zip(batch_items.decisions, result.decisions, strict=True):
                if not dfut.done():
                    dfut.set_result(stored)
            for (_, rfut), outcome in zip(batch_items.rewards, result.rewards, strict=True):
                if not rfut.done():
                    rfut.set_result(outcome)
            for (_, afut), act in zip(batch_items.activations, result.activations, strict=True):
                if not afut.done():
                    afut.set_result(act)
