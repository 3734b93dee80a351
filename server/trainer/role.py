"""The trainer role: its parts started and stopped together, its lease, and its report.

:class:`TrainerRole` holds the trainer (:class:`server.trainer.runtime.Trainer`), loop control,
the watcher, the job runner and the command runner. :func:`run_trainer` is the ``banditd train``
process: a standby until it holds the store's trainer lease, then the one trainer, renewing the
lease every third of its time to live; a trainer that finds its lease taken (it stalled past the
expiry and a standby took over) stops at once, so two never learn together, and so does one
whose learner stopped because it could not renew the lease within its time to live (the store
was unreachable or stalled): both exit 1, to be started again as a standby that resumes from
the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from bandit.store import Store
from server.entry.settings import Settings, SettingsError
from server.trainer import job_records
from server.trainer.commands import CommandRunner
from server.trainer.control import LoopControl
from server.trainer.job_work import evaluation_work, importance_work
from server.trainer.jobs import Builder, JobRunner
from server.trainer.loop_status import estimate_body, status_body
from server.trainer.observer import LoopObserver
from server.trainer.records import TrainerReport, save_report
from server.trainer.runtime import Trainer, never_loaded
from server.trainer.timeline import Timeline
from server.trainer.watch_settings import to_wire as watch_to_wire

log = logging.getLogger(__name__)

JOB_SCAN = 1.0
"""Seconds between looks for job records to run."""

BUILDERS: dict[str, Builder] = {
    job_records.KIND: evaluation_work,
    job_records.IMPORTANCE_KIND: importance_work,
}


def holder_name() -> str:
    """How this process names itself in the lease: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseLost(Exception):
    """Another trainer holds the lease this one held: this one must stop at once."""


class TrainerRole:
    """Every part of the trainer, started and stopped together."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        holder: str,
        clock: Callable[[], float] = time.time,
        under_load: Callable[[], bool] = never_loaded,
    ) -> None:
        self.settings = settings
        self.store = store
        self.holder = holder
        self.trainer = Trainer(settings, store, clock=clock, under_load=under_load)
        self.control = LoopControl(self.trainer)
        self.jobs = JobRunner(store)
        try:
            self.observer = LoopObserver(self.trainer, settings.watch)
        except ValueError as exc:
            raise SettingsError(f"[watch] in the settings: {exc}.") from exc
        self.commands = CommandRunner(
            self.control, self.observer, poll=settings.command_poll, report=self.write_report
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.timeline = Timeline()

    async def start(self) -> None:
        """Start learning, watching, commands, jobs and reports; fail the commands a trainer
        before this one claimed and did not finish (their edges get the failure)."""
        abandoned = await asyncio.to_thread(
            lambda: self.store.fail_claimed(
                now=self.trainer.clock(),
                error_code="ServiceUnavailable",
                error_message="the trainer that took this change stopped before finishing it; "
                "check the state it left and make the change again if it is not there.",
            )
        )
        if abandoned:
            log.warning("failed %d commands a stopped trainer had not finished", abandoned)
        await self.trainer.start()
        self.control.start()
        self.observer.start()
        self.commands.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(self.settings.report_interval, self.write_report)),
            loop.create_task(self._every(JOB_SCAN, lambda: self.jobs.scan(BUILDERS))),
        ]
        await asyncio.to_thread(self.write_report)

    async def run_jobs(self) -> None:
        """Start the work of the stored job records now and wait until none is running (tests
        and orderly hand-offs; the trainer otherwise looks every ``JOB_SCAN`` seconds)."""
        await asyncio.to_thread(self.jobs.scan, BUILDERS)
        await self.jobs.idle()

    async def stop(self) -> None:
        """Stop everything; the learner checkpoints, and a last report says it stopped."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.commands.close()
        await self.jobs.close()
        await self.control.close()
        await self.observer.close()
        await self.trainer.stop()
        if self.trainer.holds_lease():  # a trainer that lost it leaves the new one's report
            await asyncio.to_thread(self.write_report)

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            try:
                await asyncio.to_thread(job)
            except Exception:
                log.exception("trainer task %s failed; retrying", getattr(job, "__name__", job))
            await asyncio.sleep(seconds)

    def write_report(self) -> None:
        """Store the trainer's report (worker thread)."""
        trainer = self.trainer
        now = trainer.clock()
        counts = self.store.counts(now)
        thread = trainer.learner_thread
        report = self.observer.report
        served = {
            str(version): {
                "events": score.policy.n,
                "policy": estimate_body(score.policy),
                "baseline": estimate_body(score.baseline),
                "improvement": estimate_body(score.improvement),
            }
            for version, score in report.versions.items()
        }
        save_report(
            self.store,
            TrainerReport(
                at=now,
                holder=self.holder,
                running=bool(thread and thread.is_alive()),
                cursor=trainer.learner.cursor,
                learned_count=trainer.learner.learned_count,
                failures=thread.failures if thread else 0,
                status=status_body(self.observer, counts, now, self.timeline),
                versions=served,
                watch=watch_to_wire(self.observer.settings),
                metrics=trainer.metrics.render().decode(),
            ),
        )


async def hold_lease(store: Store, holder: str, settings: Settings, stop: asyncio.Event) -> bool:
    """Wait as a standby until ``holder`` holds the lease (True) or ``stop`` is set (False)."""
    ttl = settings.lease_ttl
    announced = False
    while not stop.is_set():
        if await asyncio.to_thread(store.acquire_lease, holder, time.time(), ttl):
            log.info("holding the trainer lease as %s", holder)
            return True
        if not announced:
            current = await asyncio.to_thread(store.lease, time.time())
            log.info(
                "standby: the trainer lease is held by %s; taking over if it expires",
                current.holder if current else "another trainer",
            )
            announced = True
        # PostgreSQL blocks here until the holder's session ends (then this standby takes over
        # at once); other stores return at once and the standby looks again in a third of ttl.
        if await asyncio.to_thread(store.wait_lease, min(1.0, ttl / 3)):
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ttl / 3)
    return False


async def keep_lease(role: TrainerRole, stop: asyncio.Event) -> bool:
    """Renew ``role``'s lease every third of its time to live until ``stop`` is set (False),
    another trainer holds it, or the learner has stopped (True: lost; the learner is not
    writing).

    The learner stops for good when the lease runs out unrenewed (the store was unreachable
    or stalled for ``lease_ttl``: a standby may have taken over meanwhile). A trainer that
    renewed the lease afterwards would hold it without learning and keep every standby out,
    so it gives up instead; started again, it resumes from the checkpoint."""
    store, ttl, trainer = role.store, role.settings.lease_ttl, role.trainer
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ttl / 3)
        if stop.is_set():
            return False
        asked = time.time()
        try:
            held = await asyncio.to_thread(store.acquire_lease, role.holder, asked, ttl)
        except Exception as exc:  # the store is failing: the lease runs out if it lasts
            log.warning("could not renew the trainer lease: %s; trying again", exc)
            continue
        if not held:
            trainer.lease_until = 0.0
            log.error("the trainer lease was taken by another trainer; stopping at once")
            return True
        trainer.lease_until = asked + ttl
        thread = trainer.learner_thread
        if thread is not None and not thread.is_alive():
            log.error("the learner stopped when the trainer lease lapsed unrenewed; stopping")
            return True
    return False


async def run_trainer(settings: Settings, store: Store, stop: asyncio.Event) -> int:
    """``banditd train`` until ``stop`` is set: standby, then trainer; returns the exit status
    (0 after a stop, 1 when the lease was lost or lapsed)."""
    holder = holder_name()
    if settings.trainer_nice:
        with contextlib.suppress(OSError):
            os.nice(settings.trainer_nice)
    try:
        if not await hold_lease(store, holder, settings, stop):
            return 0
        store.fence(holder)  # from here the store refuses our learner writes if we lose it
        role = TrainerRole(settings, store, holder=holder)
        role.trainer.lease_until = time.time() + settings.lease_ttl
        await role.start()
        print(f"======== Training as {holder} ========", flush=True)
        lost = False
        try:
            lost = await keep_lease(role, stop)
        finally:
            await role.stop()
            if not lost:
                await asyncio.to_thread(store.release_lease, holder)
        return 1 if lost else 0
    finally:
        store.close()
