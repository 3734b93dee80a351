"""The running service: configuration, serving model, group-commit writer and learner thread.

Handlers call :class:`Service`; it runs the pure loop pieces from :mod:`bandit.loop` against the
store. Ranking never waits for learning: the learner runs on its own thread with its own
workspace and hands each published model to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bandit.config import ServiceConfiguration
from bandit.errors import EventNotFound, ServiceUnavailable
from bandit.events import (
    Activation,
    ActivationOutcome,
    Decision,
    ModelRecord,
    PolicySettings,
    RankRequest,
    Reward,
    RewardOutcome,
)
from bandit.loop import Learner, Schedule, check_reward, decide, resolve_replay
from bandit.policy import Policy, PolicyFactory
from bandit.store import Store
from policies import DEFAULT_ARGUMENTS, make_factory
from server.entry.settings import Settings
from server.serving.metrics import Metrics
from server.serving.writer import GroupCommitWriter

log = logging.getLogger(__name__)

SEED_KEY = "loop_seed"
HEALTH_PROBE_KEY = "health_probe_at"
"""Meta key ``/healthz`` writes to find out whether failing store writes succeed again."""


@dataclass(frozen=True, slots=True)
class Serving:
    """The model that serves ranks, swapped as a whole when a new version is published."""

    policy: Policy
    version: int
    created_at: float


class Service:
    """State and operations of one banditd process."""

    def __init__(
        self, settings: Settings, store: Store, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.metrics = Metrics()
        now = clock()
        config = store.load_config()
        if config is None:
            config = ServiceConfiguration()
            store.save_config(config)
        policy = store.load_policy()
        if policy is None:
            policy = PolicySettings(name="default", arguments=DEFAULT_ARGUMENTS)
            store.save_policy(policy)
        seed_text = store.get_meta(SEED_KEY)
        if seed_text is None:
            seed_text = str(secrets.randbits(62))
            store.set_meta(SEED_KEY, seed_text)
        self.seed = int(seed_text)
        self.config = config
        self.policy_settings = policy
        self.factory: PolicyFactory = make_factory(
            policy.arguments, epsilon=config.exploration_percentage
        )
        self.learner = Learner(
            store, self.factory, now=now, checkpoint_interval=settings.checkpoint_interval
        )
        latest = store.latest_model() or self.learner.publish(now, settings.keep_models)
        self.serving = Serving(self.factory(latest.data), latest.version, latest.created_at)
        self.writer = GroupCommitWriter(
            store, observer=self.metrics.observe_batch, sync_observer=self.metrics.observe_sync
        )
        self.learner_thread: LearnerThread | None = None
        self.requests = 0
        """Rank, reward and activate calls served; background work reads it to yield under load."""
        self._load = (0, time.monotonic(), False)  # (requests seen, when, under load)
        # While set, ranks are decided by this policy in place of the model: the guardrail's
        # baseline fallback (server.trainer.observer). Decisions still log the serving model's
        # version.
        self.fallback: Policy | None = None

    async def start(self) -> None:
        """Start the writer and the learner thread."""
        await self.writer.start()
        self.learner_thread = LearnerThread(self, asyncio.get_running_loop())
        self.learner_thread.start()

    async def stop(self) -> None:
        """Stop learning, commit what is queued, close the store."""
        if self.learner_thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.learner_thread.stop)
        await self.writer.stop()
        self.store.close()

    async def rank(self, request: RankRequest) -> Decision:
        """Decide, commit, and return the decision (or the stored one on a replay).

        A replayed event id is found by the store's insert, which keeps the first decision and
        hands it back: looking it up first would cost every fresh rank a read on the event loop.
        """
        self.requests += 1
        serving = self.serving
        decision = decide(
            request,
            serving.policy if self.fallback is None else self.fallback,
            config=self.config,
            seed=self.seed,
            model_version=serving.version,
            now=self.clock(),
        )
        stored = await self.writer.write_decision(decision)
        if stored is not decision:
            self.metrics.rank_replays.inc()
            return resolve_replay(request, stored)
        self.metrics.ranks_by(decision.learning_mode.value).inc()
        return decision

    async def reward(self, event_id: str, value: object, request_key: str | None) -> RewardOutcome:
        """Validate and commit a reward; raises :class:`EventNotFound` for unknown events."""
        self.requests += 1
        reward = Reward(
            event_id=event_id,
            value=check_reward(value, self.config),
            received_at=self.clock(),
            request_key=request_key,
        )
        outcome = await self.writer.write_reward(reward)
        if outcome is RewardOutcome.UNKNOWN_EVENT:
            raise EventNotFound(event_id)
        self.metrics.rewards_by(outcome.value).inc()
        return outcome

    async def activate(self, event_id: str) -> ActivationOutcome:
        """Commit an activation; raises :class:`EventNotFound` for unknown events."""
        self.requests += 1
        activation = Activation(
            event_id=event_id, at=self.clock(), wait=self.config.reward_wait_time
        )
        outcome = await self.writer.write_activation(activation)
        if outcome is ActivationOutcome.UNKNOWN_EVENT:
            raise EventNotFound(event_id)
        self.metrics.activations_by(outcome.value).inc()
        return outcome

    async def failing_writes(self) -> str | None:
        """Why store writes are failing, or None.

        While the store reports failing writes, one small write (:data:`HEALTH_PROBE_KEY`)
        checks again, so the answer turns back to None once the store takes writes, even if
        no client has written since.
        """
        if self.store.failing_writes() is None:
            return None
        with contextlib.suppress(ServiceUnavailable):
            await asyncio.to_thread(self.store.set_meta, HEALTH_PROBE_KEY, repr(self.clock()))
        return self.store.failing_writes()

    def under_load(self) -> bool:
        """Whether requests arrive at ``busy_requests_per_second`` or more (over ~0.2 s).

        Read by the learner and the watcher threads; a stale answer only shifts when they yield.
        """
        seen, at, loaded = self._load
        now = time.monotonic()
        if now - at >= 0.2:
            count = self.requests
            loaded = (count - seen) / (now - at) >= self.settings.busy_requests_per_second
            self._load = (count, now, loaded)
        return loaded

    def yield_time(self, worked: float, part: float = 1.0) -> float:
        """Seconds background work should pause after ``worked`` seconds, under load.

        ``part`` is the fraction of ``learn_share_under_load`` this worker may use; the learner
        and the watcher split it (2/3 and 1/3), so together they stay within the share.
        """
        share = self.settings.learn_share_under_load * part
        return worked * (1.0 - share) / share

    def update_config(self, new: ServiceConfiguration) -> ServiceConfiguration:
        """Validate a change against the current configuration, store and apply it."""
        old = self.config
        old.check_change(new)
        self.store.save_config(new)
        self.config = new
        if new.exploration_percentage != old.exploration_percentage:
            self.factory = make_factory(
                self.policy_settings.arguments, epsilon=new.exploration_percentage
            )
            record = self.store.get_model(self.serving.version)
            if record is not None:
                self.install(record, self.factory(record.data))
        return new

    def install(self, record: ModelRecord, policy: Policy) -> None:
        """Serve ``policy`` (built from ``record``) from now on. Event-loop thread only."""
        self.serving = Serving(policy, record.version, record.created_at)

    def refresh_metrics(self) -> None:
        """Bring the store-derived gauges up to date."""
        now = self.clock()
        self.metrics.refresh(
            self.store.counts(now),
            now=now,
            cursor=self.learner.cursor,
            exploration_cap=self.config.exploration_percentage,
            model_version=self.serving.version,
            model_created_at=self.serving.created_at,
        )


LOADED_BATCH = 16
"""Events per learner round under request load. A round holds the GIL for its whole length
(~100 µs an event), and ranks queue behind it: with 64, rank p99 at 32 connections under a
learner backlog measured 1.6-2.7x the run without backlog; with 16, 0.8-1.0x."""


class LearnerThread(threading.Thread):
    """Joins, learns and publishes in the background until stopped.

    Works in batches of ``settings.learn_batch``; sleeps ``learn_interval`` when idle. Publishes
    when ``modelExportFrequency`` has passed and something new was learned.
    """

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
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
