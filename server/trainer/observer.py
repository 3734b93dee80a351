"""Runs the loop watcher in the trainer and applies what it finds.

A background task hands each round of :class:`server.trainer.watcher.Watcher` to one worker
thread (``run_in_executor``), then, on the event loop: updates the metrics, logs and stores
guardrail changes. Edges read the stored state and switch serving between the learned policy
and the baseline fallback. Learning is never touched: the learner keeps learning while the
fallback serves, which is how the policy earns its way back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bandit.events import GuardrailRecord, ModelRecord, WatchSettingsRecord
from bandit.guardrail import Guardrail, GuardrailSettings, GuardrailState, Transition
from bandit.policy import Policy
from bandit.watch import WatchSnapshot
from server.trainer.runtime import Trainer
from server.trainer.watch_metrics import WatchMetrics
from server.trainer.watch_settings import WatcherSettings, from_mapping, to_mapping
from server.trainer.watcher import Report, Round, Watcher

log = logging.getLogger(__name__)

T = TypeVar("T")

_REPLAY_TTL = 5.0


def restore_guardrail(saved: GuardrailRecord | None, settings: GuardrailSettings) -> Guardrail:
    """The guardrail as persisted (a tripped guardrail stays tripped across restarts); one
    that never tripped when none is stored."""
    guardrail = Guardrail(settings)
    if saved is not None:
        guardrail.state = saved.state
        guardrail.since = saved.since
        guardrail.reason = saved.reason
        guardrail.trips = saved.trips
        guardrail.recoveries = saved.recoveries
    return guardrail


class LoopObserver:
    """The watcher's runtime: its thread, its task, and what it changes in the service."""

    def __init__(self, service: Trainer, file_settings: dict[str, Any]) -> None:
        self.service = service
        store = service.store
        settings = from_mapping(file_settings, wire=False)
        stored = store.load_watch_settings()
        if stored is not None:
            try:
                settings = from_mapping(dataclasses.asdict(stored), wire=False, base=settings)
            except ValueError:
                log.warning("ignoring invalid stored watch settings: %r", stored)
        self.metrics = WatchMetrics(service.metrics.registry)
        guardrail = restore_guardrail(store.load_guardrail(), settings.guardrail)
        self.watcher = Watcher(service, settings, guardrail)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="banditd-watch")
        self._task: asyncio.Task[None] | None = None
        self._replay: tuple[float, int, dict[int, WatchSnapshot]] = (0.0, -1, {})
        self._serve(guardrail.tripped)

    @property
    def settings(self) -> WatcherSettings:
        """The settings in force."""
        return self.watcher.settings

    @property
    def report(self) -> Report:
        """The latest round's report (immutable; safe to read on the event loop)."""
        return self.watcher.report

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the watcher's thread (every use of the watcher goes through here)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background rounds."""
        self._task = asyncio.get_running_loop().create_task(self._rounds())

    async def close(self) -> None:
        """Stop the rounds and the thread (before the store closes)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    async def _rounds(self) -> None:
        while True:
            busy = False
            started = time.monotonic()
            try:
                # Under load, short rounds: a round holds the interpreter while it scores.
                limit = min(self.settings.batch, 64) if self.service.under_load() else None
                result = await self.run(self.watcher.step, self.service.clock(), limit)
                await self._apply(result)
                busy = result.scored >= (limit or self.settings.batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.errors.inc()
                log.exception("watcher round failed; retrying")
            if not busy:
                await asyncio.sleep(self.settings.interval)
            elif self.service.under_load() or self._learner_backlogged():
                # Scoring shares the interpreter with ranking and with a learner catching up on
                # a backlog (learning matters more than watching): keep to a small share.
                await asyncio.sleep(self.service.yield_time(time.monotonic() - started, 1 / 3))
            else:
                await asyncio.sleep(0)

    def _learner_backlogged(self) -> bool:
        thread = self.service.learner_thread
        return thread is not None and thread.backlogged

    # -- applying a round --------------------------------------------------------------------

    async def _apply(self, result: Round) -> None:
        report = self.report
        m = self.metrics
        m.watched.inc(result.scored)
        m.lag.set(report.lag)
        m.observe_snapshot(report.snapshot)
        m.drift_statistic.labels("up").set(report.drift_up)
        m.drift_statistic.labels("down").set(report.drift_down)
        for alarm in result.alarms:
            m.drift_alarms.labels(alarm.direction.value).inc()
            m.drift_last_alarm.set(alarm.at)
            log.warning(
                "drift: reward mean moved %s from %.3f to %.3f (range-scaled), detected after "
                "%d events, at joined event %d",
                alarm.direction.value,
                alarm.mean_before,
                alarm.mean_after,
                alarm.detected_after,
                alarm.seq,
            )
        if result.transitions:
            await self._changed(result.transitions)

    async def _changed(self, transitions: tuple[Transition, ...]) -> None:
        for transition in transitions:
            if transition.state is GuardrailState.TRIPPED:
                self.metrics.trips.inc()
                log.warning("guardrail tripped, serving the baseline: %s", transition.reason)
            else:
                if transition.improvement is not None:
                    self.metrics.recoveries.inc()
                log.warning("guardrail released, serving the policy: %s", transition.reason)
        try:
            # Stored before serving changes: after a crash, a restart must not take decisions
            # the baseline served for the policy's (Watcher reads the stored trips).
            await self.run(self._persist_guardrail)
        finally:
            self._serve(self.watcher.guardrail.tripped)

    def _serve(self, tripped: bool) -> None:
        """Record what edges serve now: they read the guardrail state the trainer stored."""
        self.metrics.tripped.set(1.0 if tripped else 0.0)

    def _persist_guardrail(self) -> None:
        g = self.watcher.guardrail
        record = GuardrailRecord(
            state=g.state, since=g.since, reason=g.reason, trips=g.trips, recoveries=g.recoveries
        )
        self.service.store.save_guardrail(record)

    # -- operations --------------------------------------------------------------------------

    async def configure(self, changes: dict[str, Any]) -> WatcherSettings:
        """Apply and store settings changed through the API (camelCase names).

        Raises:
            ValueError: a name is unknown or a value invalid (the message names it).
        """
        new = from_mapping(changes, wire=True, base=self.settings)
        transition = await self.run(self.watcher.configure, new, self.service.clock())
        stored = WatchSettingsRecord(**to_mapping(new, wire=False))
        await self.run(self.service.store.save_watch_settings, stored)
        if transition is not None:
            await self._changed((transition,))
        return new

    async def replay(self, records: list[ModelRecord]) -> dict[int, WatchSnapshot]:
        """Counterfactual scores of ``records`` on the recent events, cached a few seconds."""
        now = self.service.clock()
        at, cursor, scores = self._replay
        wanted = {r.version for r in records}
        fresh = cursor == self.watcher.cursor or now - at < _REPLAY_TTL
        if fresh and wanted <= set(scores):
            return scores
        scores = await self.run(self.watcher.replay, records)
        self._replay = (now, self.watcher.cursor, scores)
        return scores

    def restore(self, record: ModelRecord) -> tuple[ModelRecord, Policy]:
        """Continue learning from ``record`` and publish it as a new version (on the learner's
        thread, between two steps). Returns the new record and a serving instance of it."""
        service = self.service
        now = service.clock()
        service.learner.adopt(service.factory(record.data), record.learned_count, now)
        new = service.learner.publish(now, service.settings.keep_models)
        service.store.mark_restored(new.version, record.version)
        return new, service.factory(new.data)

    async def activated(self, record: ModelRecord, new: ModelRecord) -> None:
        """After a manual activation: count it, and give the restored model a fresh hearing."""
        self.metrics.activations.inc()
        reason = f"model v{record.version} was activated by hand (serving as v{new.version})"
        log.warning("%s", reason)
        transition = await self.run(self.watcher.release, self.service.clock(), reason)
        if transition is not None:
            await self._changed((transition,))
