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
import time
from collections.abc import Callable
from dataclasses import dataclass

from bandit.config import ServiceConfiguration
from bandit.errors import EventNotFound, ServiceUnavailable
from bandit.events import (
    Activation,
    ActivationOutcome,
    Decision,
    LoopTime,
    ModelRecord,
    PolicySettings,
    RankRequest,
    Reward,
    RewardOutcome,
)
from bandit.loop import Learner, check_reward, decide, resolve_replay
from bandit.policy import Policy, PolicyFactory
from bandit.store import Store
from policies import DEFAULT_ARGUMENTS, make_factory
from server.entry.settings import Settings
from server.serving.metrics import Metrics
from server.serving.writer import GroupCommitWriter
from server.trainer.learner import LearnerThread

log = logging.getLogger(__name__)

SEED_KEY = "loop_seed"
HEALTH_PROBE_KEY = LoopTime.HEALTH_PROBE
"""The moment ``/healthz`` writes to find out whether failing store writes succeed again."""


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
        seed_text = store.set_meta_if_absent(SEED_KEY, str(secrets.randbits(62)))
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
            await asyncio.to_thread(self.store.set_time, HEALTH_PROBE_KEY, self.clock())
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
