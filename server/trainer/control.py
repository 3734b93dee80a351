"""Loop control: changes to configuration, policy and model that touch the learner, and the
background work they start (retraining from the logs, log retention, apprentice counters).

Graduation: with ``apprenticeAutoGraduate`` on, a periodic job switches Apprentice to Online,
through the same path as a client's PUT, once the learned policy is confidently better than the
baseline (:mod:`bandit.graduation`). Replacing the learner's model with a fresh one (reset,
policy or settings change, import) restarts that valuation: the evidence was about another model.

Every change to the learner runs on the learner's own thread between two of its steps
(:meth:`server.trainer.learner.LearnerThread.call`), so the learner's model, cursor and
checkpoint change in one piece without stopping the thread, and changes are serialised by one
lock. Replaying logs runs on a thread of its own, never on the event loop.

Retraining (after a change of reward settings, exploration or policy): the model is reset at
once and serves from a fresh start; meanwhile a fresh policy learns the retained joined events
of the last ``modelRetrainDays`` (rewards recomputed under the new settings) up to the
learner's cursor at the reset. It then catches up on what the live learner learned since, takes
the live learner's place and is published. A newer change abandons an older retrain.

A retrain survives a crash: the reset's checkpoint carries a
:class:`bandit.events.PendingRetrain` (generation, cursor, time range, settings) written in the
same transaction, the adoption's checkpoint clears it, and a start that finds one resumes the
retrain from the logs. Either way every joined event up to the cursor is learned exactly once
by the model that serves in the end. ``retrain_events_per_second`` paces the replay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bandit import join as rules
from bandit.config import DAY, LearningMode, ServiceConfiguration
from bandit.errors import InvalidModelImportFormat, InvalidPolicyConfiguration, ServiceUnavailable
from bandit.events import ModelRecord, PendingRetrain, PolicySettings
from bandit.graduation import ApprenticeValue
from bandit.policy import Policy, PolicyFactory
from policies import DEFAULT_POLICY, make_factory, validate_arguments
from server.serving import model_archive
from server.trainer.records import CONFIG_EDITED_KEY, MODEL_CREATED_KEY
from server.trainer.runtime import Trainer

log = logging.getLogger(__name__)

T = TypeVar("T")

_PAGE = 512
RETRY_PAUSE = 1.0
"""Seconds a retrain waits before trying again when the store cannot take it (full, locked)."""


class LoopControl:
    """Configuration, policy and model operations of the trainer, and their background jobs."""

    def __init__(self, service: Trainer) -> None:
        self.service = service
        store = service.store
        self.apprentice = service.apprentice
        self.signing_key = model_archive.signing_key(store, service.settings.model_signing_key)
        store.set_time_if_absent(MODEL_CREATED_KEY, service.serving.created_at)
        if service.config.learning_mode is LearningMode.APPRENTICE and not self.apprentice.metrics:
            self.apprentice.start(service.clock())
        self._lock = asyncio.Lock()
        self._generation = 0
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="banditd-model")
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the periodic jobs (retention, apprentice counters, graduation), and resume a
        retrain that a crash interrupted."""
        self._spawn(self._every(self.service.settings.retention_interval, self.enforce_retention))
        self._spawn(self._every(1.0, self._flush_apprentice))
        self._spawn(self._every(1.0, self.graduate_if_ready))
        pending = self.service.learner.retrain
        if pending is not None:
            self._generation = max(self._generation, pending.generation)
            settings = self._settings_text()
            if pending.settings != settings:
                log.warning(
                    "the interrupted retrain was for %s; retraining for the stored %s",
                    pending.settings,
                    settings,
                )
            log.info(
                "resuming the retrain from the logs up to seq %d interrupted by a restart",
                pending.cursor,
            )
            service = self.service
            self._spawn(self._retrain(pending, service.config, service.factory), retrain=True)

    async def close(self) -> None:
        """Stop periodic jobs, abandon retrains, wait for running work."""
        self._closing = True
        self._generation += 1
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        await asyncio.to_thread(self.apprentice.flush)

    async def idle(self) -> None:
        """Wait until no retrain is pending (tests and orderly hand-offs)."""
        while any(getattr(t, "retrain", False) for t in self._tasks):
            await asyncio.sleep(0.01)

    def _spawn(self, coro: Any, *, retrain: bool = False) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        task.retrain = retrain  # type: ignore[attr-defined]
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background job failed", exc_info=task.exception())

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            try:
                await job()
            except Exception:
                log.exception("periodic job %s failed", getattr(job, "__name__", job))
            await asyncio.sleep(seconds)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _on_learner(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the learner's thread between two of its steps (at once on the
        executor when no learner thread runs), so the model, cursor and checkpoint change in
        one piece without stopping the thread."""
        thread = self.service.learner_thread
        if thread is None or not thread.is_alive():
            return await self._run(fn, *args)
        return await asyncio.wrap_future(thread.call(fn, *args))

    # -- configuration and policy ------------------------------------------------------------

    async def update_config(self, new: ServiceConfiguration) -> ServiceConfiguration:
        """Apply a validated configuration; reward or exploration changes retrain the model."""
        async with self._lock:
            await self._apply_config(new)
        return new

    async def _apply_config(self, new: ServiceConfiguration) -> None:
        """:meth:`update_config` with the lock held."""
        service = self.service
        old = service.config
        service.update_config(new)
        now = service.clock()
        service.store.set_time(CONFIG_EDITED_KEY, now)
        if new.learning_mode != old.learning_mode and new.learning_mode is LearningMode.APPRENTICE:
            self.apprentice.start(now)
            await asyncio.to_thread(self.apprentice.flush)  # edges show it from the store
        changed = new.reward_settings() != old.reward_settings()
        if changed or new.exploration_percentage != old.exploration_percentage:
            await self._reset_and_retrain()

    async def graduate_if_ready(self) -> bool:
        """Switch Apprentice to Online if ``apprenticeAutoGraduate`` is on and the learned
        policy's improvement over the baseline has a lower confidence bound above zero over at
        least ``apprenticeGraduationMinEvents`` evaluated events; returns whether it switched.

        The switch is the configuration a client would PUT (learning mode Online, all else
        kept): stored, edit date recorded, the model kept.
        """
        if self._graduation(self.service.config) is None:
            return False
        async with self._lock:
            config = self.service.config  # again: a PUT may have changed it meanwhile
            value = self._graduation(config)
            if value is None:
                return False
            await self._apply_config(config.replace(learning_mode=LearningMode.ONLINE))
        self.service.metrics.apprentice_graduations.inc()
        log.info(
            "graduated from Apprentice to Online: learned policy %.4f vs baseline %.4f, "
            "improvement lower bound %.4f > 0 over %d events",
            value.policy.estimate,
            value.baseline.estimate,
            value.improvement.ci_low,
            value.evaluated_events,
        )
        return True

    def _graduation(self, config: ServiceConfiguration) -> ApprenticeValue | None:
        if config.learning_mode is not LearningMode.APPRENTICE or not (
            config.apprentice_auto_graduate
        ):
            return None
        return self.apprentice.graduation(config.apprentice_graduation_min_events)

    async def set_policy(self, policy: PolicySettings) -> PolicySettings:
        """Make ``policy`` the learning policy: validated by building it, then retrain."""
        validate_arguments(policy.arguments)
        service = self.service
        factory = make_factory(policy.arguments, epsilon=service.config.exploration_percentage)
        async with self._lock:
            service.store.save_policy(policy)
            service.policy_settings = policy
            service.factory = factory
            await self._reset_and_retrain()
        return policy

    async def reset_policy(self) -> PolicySettings:
        """Back to the default learning policy."""
        return await self.set_policy(DEFAULT_POLICY)

    # -- model -------------------------------------------------------------------------------

    async def reset_model(self) -> None:
        """Serve and learn from a fresh model; no retrain."""
        async with self._lock:
            self._generation += 1
            record, serving, _ = await self._on_learner(self._reset_now)
            self.service.install(record, serving)

    async def import_model(self, data: bytes) -> None:
        """Verify a signed archive and serve and learn from its model (and its policy)."""
        service = self.service
        limit = service.settings.max_model_bytes
        model, metadata = model_archive.verify(data, self.signing_key, max_bytes=limit)
        try:
            validate_arguments(metadata.arguments)
            factory = make_factory(
                metadata.arguments, epsilon=service.config.exploration_percentage
            )
            policy = await self._run(factory, model)
        except (InvalidPolicyConfiguration, RuntimeError, ValueError) as exc:
            raise InvalidModelImportFormat(f"the archived model cannot be loaded: {exc}") from exc
        settings = PolicySettings(name=metadata.name, arguments=metadata.arguments)
        async with self._lock:
            self._generation += 1
            record, serving = await self._on_learner(self._import_now, settings, factory, policy)
            service.install(record, serving)

    async def activate_model(
        self, record: ModelRecord, restore: Callable[[ModelRecord], tuple[ModelRecord, Policy]]
    ) -> ModelRecord:
        """Roll back to ``record``: ``restore`` (the watcher's, run on the learner's thread)
        continues learning from it and publishes it as a new version; any retrain in flight is
        abandoned. Returns the new version's record."""
        async with self._lock:
            self._generation += 1
            new, serving = await self._on_learner(restore, record)
            self.service.install(new, serving)
        return new

    # -- logs --------------------------------------------------------------------------------

    async def delete_logs(self) -> int:
        """Delete every logged event the learner has learned."""
        store, cursor = self.service.store, self.service.learner.cursor
        return await asyncio.to_thread(lambda: store.delete_logs(before=None, through_seq=cursor))

    async def enforce_retention(self) -> int:
        """Delete learned events older than ``logRetentionDays`` (none when it is -1)."""
        service = self.service
        days = service.config.log_retention_days
        if days < 0:
            return 0
        before = service.clock() - days * DAY
        cursor = service.learner.cursor
        store = service.store
        return await asyncio.to_thread(lambda: store.delete_logs(before=before, through_seq=cursor))

    async def _flush_apprentice(self) -> None:
        await asyncio.to_thread(self.apprentice.flush)

    # -- reset and retrain -------------------------------------------------------------------

    def _settings_text(self) -> str:
        """What a retrain retrains for, as recorded in its :class:`PendingRetrain`."""
        config = self.service.config
        wait, default, aggregation = config.reward_settings()
        return (
            f"policy {self.service.policy_settings.arguments!r}, exploration "
            f"{config.exploration_percentage:g}, rewardWaitTime {wait:g} s, defaultReward "
            f"{default:g}, rewardAggregation {aggregation.value}"
        )

    def _reset_now(
        self, generation: int | None = None
    ) -> tuple[ModelRecord, Policy, PendingRetrain | None]:
        """Fresh learner model, published (learner thread, between two steps); with
        ``generation`` the model is owed a retrain up to the cursor, saved with the reset.

        Returns the published record, its policy, and the retrain owed (None when there is
        nothing to replay: no events yet, or ``modelRetrainDays`` 0).
        """
        service = self.service
        now = service.clock()
        config, cursor = service.config, service.learner.cursor
        retrain = None
        if generation is not None and config.model_retrain_days > 0 and cursor > 0:
            retrain = PendingRetrain(
                generation=generation,
                cursor=cursor,
                since=now - config.model_retrain_days * DAY,
                settings=self._settings_text(),
            )
        service.learner.reset(now, service.factory, retrain)
        self.apprentice.restart_evaluation()
        record = service.learner.publish(now, service.settings.keep_models)
        service.store.set_time(MODEL_CREATED_KEY, now)
        return record, service.factory(record.data), retrain

    def _adopt_now(self, policy: Policy, learned: int, fresh: bool) -> tuple[ModelRecord, Policy]:
        """The learner continues from ``policy``, published (learner thread)."""
        service = self.service
        now = service.clock()
        if fresh:
            service.learner.reset(now, service.factory)
            self.apprentice.restart_evaluation()
            service.store.set_time(MODEL_CREATED_KEY, now)
        service.learner.adopt(policy, learned, now, retrained=True)
        record = service.learner.publish(now, service.settings.keep_models)
        return record, service.factory(record.data)

    def _import_now(
        self, settings: PolicySettings, factory: PolicyFactory, policy: Policy
    ) -> tuple[ModelRecord, Policy]:
        """The learner continues from an imported model and its policy (learner thread)."""
        service = self.service
        service.store.save_policy(settings)
        service.policy_settings = settings
        service.factory = factory
        return self._adopt_now(policy, 0, True)

    def _finish_retrain(
        self, policy: Policy, learned: int, cursor: int
    ) -> tuple[ModelRecord, Policy, int]:
        """Catch the retrained policy up with the live learner and adopt it (learner thread)."""
        learned = self._catch_up(policy, learned, cursor)
        record, serving = self._adopt_now(policy, learned, False)
        return record, serving, learned

    async def _reset_and_retrain(self) -> None:
        """Reset now; retrain from the retained logs in the background (caller holds the lock)."""
        self._generation += 1
        generation = self._generation
        record, serving, pending = await self._on_learner(self._reset_now, generation)
        self.service.install(record, serving)
        if pending is not None:
            service = self.service
            self._spawn(self._retrain(pending, service.config, service.factory), retrain=True)

    def _stale(self, generation: int) -> bool:
        return self._closing or generation != self._generation

    async def _retrain(
        self, pending: PendingRetrain, config: ServiceConfiguration, factory: PolicyFactory
    ) -> None:
        """Replay, catch up and adopt; tried again while the store is unavailable (the
        pending record stays until the adoption, so a crash meanwhile loses nothing)."""
        while not self._stale(pending.generation):
            try:
                await self._retrain_once(pending, config, factory)
                return
            except ServiceUnavailable as exc:
                log.warning("retrain could not use the store: %s; retrying", exc.message)
                await asyncio.sleep(RETRY_PAUSE)

    async def _retrain_once(
        self, pending: PendingRetrain, config: ServiceConfiguration, factory: PolicyFactory
    ) -> None:
        generation, cursor = pending.generation, pending.cursor
        replayed = await self._run(self._replay, generation, config, factory, cursor, pending.since)
        if replayed is None:
            return
        async with self._lock:
            if self._stale(generation):
                return
            policy, learned = replayed
            record, serving, learned = await self._on_learner(
                self._finish_retrain, policy, learned, cursor
            )
            self.service.install(record, serving)
        log.info("retrained model v%d from %d logged events", record.version, learned)

    def _replay(
        self,
        generation: int,
        config: ServiceConfiguration,
        factory: PolicyFactory,
        cursor: int,
        since: float,
    ) -> tuple[Policy, int] | None:
        """A fresh policy that learned the retained events up to ``cursor`` (executor thread)."""
        store = self.service.store
        policy = factory(None)
        learned = after = 0
        learn = config.learning_mode is not LearningMode.LOGGING_ONLY
        rate = self.service.settings.retrain_events_per_second
        started = time.monotonic()
        while learn:
            if self._stale(generation):
                return None
            if rate > 0:  # paced: each page waits until its share of time has come
                time.sleep(max(0.0, started + learned / rate - time.monotonic()))
                if self._stale(generation):
                    return None
            batch = [e for e in store.joined_between(since, float("inf"), after, _PAGE)]
            batch = [e for e in batch if e.seq <= cursor]
            if not batch:
                break
            rewards = store.counted_rewards([e.decision.event_id for e in batch if not e.defaulted])
            for event in batch:
                policy.learn_one(
                    rules.rejoin(
                        event,
                        rewards.get(event.decision.event_id, ()),
                        aggregation=config.reward_aggregation,
                        default_reward=config.default_reward,
                    )
                )
            learned += len(batch)
            after = batch[-1].seq
        return policy, learned

    def _catch_up(self, policy: Policy, learned: int, cursor: int) -> int:
        """Learn what the live learner learned after ``cursor`` (learner thread)."""
        service = self.service
        target = service.learner.cursor
        learn = service.config.learning_mode is not LearningMode.LOGGING_ONLY
        while cursor < target:
            batch = [e for e in service.store.joined_after(cursor, _PAGE) if e.seq <= target]
            if not batch:
                break
            for event in batch:
                if learn:
                    policy.learn_one(event)
                    learned += 1
            cursor = batch[-1].seq
        return learned
