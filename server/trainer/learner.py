"""The learner thread: joins, learns and publishes in the background.

It runs the pure loop pieces of :class:`bandit.loop.Learner` against the store on a thread of its
own, so ranking never waits for learning, and hands each published model to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from bandit.config import ServiceConfiguration
from bandit.errors import ServiceUnavailable
from bandit.events import ModelRecord
from bandit.loop import Learner, Schedule
from bandit.policy import Policy, PolicyFactory
from server.entry.settings import Settings
from server.trainer.metrics import TrainerMetrics

log = logging.getLogger(__name__)


class Published(Protocol):
    """The newest published model as the host knows it."""

    @property
    def created_at(self) -> float: ...


class LearnerHost(Protocol):
    """What the learner thread reads and calls: :class:`server.trainer.runtime.Trainer`."""

    settings: Settings
    learner: Learner
    config: ServiceConfiguration
    factory: PolicyFactory
    metrics: TrainerMetrics
    clock: Callable[[], float]

    @property
    def serving(self) -> Published: ...

    def under_load(self) -> bool: ...

    def holds_lease(self) -> bool: ...

    def yield_time(self, worked: float, part: float = 1.0) -> float: ...

    def install(self, record: ModelRecord, policy: Policy) -> None: ...


LOADED_BATCH = 16
"""Events per learner round under request load. A round holds the GIL for its whole length
(~100 µs an event), and ranks queue behind it: with 64, rank p99 at 32 connections under a
learner backlog measured 1.6-2.7x the run without backlog; with 16, 0.8-1.0x."""


class LearnerThread(threading.Thread):
    """Joins, learns and publishes in the background until stopped.

    Works in batches of ``settings.learn_batch``; sleeps ``learn_interval`` when idle. Publishes
    when ``modelExportFrequency`` has passed and something new was learned.
    """

    def __init__(self, service: LearnerHost, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="banditd-learner", daemon=True)
        self._service = service
        self._loop = loop
        self._stopping = threading.Event()
        self._publications = Schedule(
            at=service.serving.created_at, progress=service.learner.learned_count
        )
        self.failures = 0
        self.backlogged = False
        """Whether the last round found more work waiting (the watcher defers to a backlog)."""

    def stop(self) -> None:
        """Ask the thread to finish its batch and exit; waits for it."""
        self._stopping.set()
        self.join()

    def run(self) -> None:
        service = self._service
        settings = service.settings
        while not self._stopping.is_set():
            if not service.holds_lease():
                log.error("the trainer lease may have passed to another trainer; not learning")
                return  # and no final checkpoint: the new holder's must stand
            started = time.monotonic()
            loaded = service.under_load()
            limit = min(settings.learn_batch, LOADED_BATCH) if loaded else settings.learn_batch
            try:
                busy = self.tick(limit)
            except ServiceUnavailable as exc:
                # A full disk or a locked database: nothing was lost (the cursor and the
                # checkpoint move together); wait and try the same step again.
                self.failures += 1
                service.metrics.store_errors.labels("learn").inc()
                log.warning("learner step could not write: %s; retrying", exc.message)
                busy = False
            except Exception:
                self.failures += 1
                service.metrics.store_errors.labels("learn").inc()
                log.exception("learner step failed; retrying")
                busy = False
            self.backlogged = busy
            if not busy:
                self._stopping.wait(settings.learn_interval)
            elif loaded:
                # Under request load, hold the learner to its share of the (GIL-bound) process
                # so ranking keeps its throughput; it catches up at full speed when load drops.
                self._stopping.wait(service.yield_time(time.monotonic() - started, 2 / 3))
        if not service.holds_lease():
            return
        try:
            service.learner.checkpoint(service.clock())
        except Exception:
            log.exception("final learner checkpoint failed; the next start re-learns from the last")

    def tick(self, limit: int | None = None) -> bool:
        """One join/learn/publish round of up to ``limit`` events; whether more may be due."""
        service = self._service
        learner = service.learner
        config = service.config
        now = service.clock()
        limit = limit or service.settings.learn_batch
        step = learner.step(config, now, limit)
        service.metrics.joined.inc(step.joined)
        service.metrics.learned.inc(step.learned)
        if self._publications.due(now, learner.learned_count, every=config.model_export_frequency):
            self.publish(now)
        return step.joined >= limit or step.learned > 0

    def publish(self, now: float) -> ModelRecord:
        """Publish the learner's model and hand it to the event loop."""
        service = self._service
        record = service.learner.publish(now, service.settings.keep_models)
        policy = service.factory(record.data)
        self._publications.done(now, record.learned_count)
        service.metrics.published.inc()
        self._loop.call_soon_threadsafe(service.install, record, policy)
        return record
