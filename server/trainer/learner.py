"""The learner thread: joins, learns and publishes in the background.

It runs the pure loop pieces of :class:`bandit.loop.Learner` against the store on a thread of its
own, so ranking never waits for learning, and hands each published model to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from bandit.config import ServiceConfiguration
from bandit.errors import LeaseLost, ServiceUnavailable
from bandit.events import ModelRecord
from bandit.loop import Learner, Schedule
from bandit.policy import Policy, PolicyFactory
from server.entry.settings import Settings
from server.trainer.metrics import TrainerMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    when ``modelExportFrequency`` has passed and something new was learned. Changes to the
    learner (a reset, an adopted model, a rollback) are handed to it with :meth:`call` and
    carried out on this thread between two steps, so the thread is never stopped for them.
    """

    def __init__(self, service: LearnerHost, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="banditd-learner", daemon=True)
        self._service = service
        self._loop = loop
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._publications = Schedule(
            at=service.serving.created_at, progress=service.learner.learned_count
        )
        self.failures = 0
        self._lost = False
        self.backlogged = False
        """Whether the last round found more work waiting (the watcher defers to a backlog)."""

    def stop(self) -> None:
        """Ask the thread to finish its batch and exit; waits for it."""
        self._stopping.set()
        self._wake.set()
        self.join()
        self._run_calls()  # handed over while it was stopping: carried out all the same

    def call(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on this thread between two steps; its future holds the outcome.

        A thread that is not running (not started yet, or stopped) runs it at once, on the
        caller's thread: nothing else is learning then.
        """
        future: Future[T] = Future()
        if not self.is_alive():
            self._carry_out(lambda: fn(*args), future)
            return future
        self._calls.put((lambda: fn(*args), future))
        self._wake.set()
        if not self.is_alive():  # stopped meanwhile: whoever comes first carries it out
            self._run_calls()
        return future

    def _run_calls(self) -> None:
        while True:
            try:
                work, future = self._calls.get_nowait()
            except queue.Empty:
                return
            self._carry_out(work, future)

    def _carry_out(self, work: Callable[[], Any], future: Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        if not self._service.holds_lease():
            future.set_exception(ServiceUnavailable("this trainer no longer holds the lease"))
            return
        try:
            result = work()
        except BaseException as exc:
            future.set_exception(exc)
            return
        published = self._service.learner.last_published
        if published is not None:  # the change published: the schedule starts from it
            self._publications.done(published.created_at, published.learned_count)
        future.set_result(result)

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when a call or a stop comes in."""
        if self._wake.wait(seconds):
            self._wake.clear()

    def run(self) -> None:
        try:
            self._learn()
        finally:
            self._run_calls()  # what came in as it stopped (refused if the lease is gone)

    def _learn(self) -> None:
        service = self._service
        settings = service.settings
        while not self._stopping.is_set():
            self._run_calls()
            if not service.holds_lease():
                log.error("the trainer lease may have passed to another trainer; not learning")
                return  # and no final checkpoint: the new holder's must stand
            started = time.monotonic()
            loaded = service.under_load()
            limit = min(settings.learn_batch, LOADED_BATCH) if loaded else settings.learn_batch
            try:
                busy = self.tick(limit)
            except LeaseLost as exc:
                log.error("%s; not learning", exc.message)
                self._lost = True
                return  # and no final checkpoint: the new holder's must stand
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
                self._sleep(settings.learn_interval)
            elif loaded:
                # Under request load, hold the learner to its share of the (GIL-bound) process
                # so ranking keeps its throughput; it catches up at full speed when load drops.
                self._sleep(service.yield_time(time.monotonic() - started, 2 / 3))
        if self._lost or not service.holds_lease():
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
