"""An edge's service: its caches of store state, and rank, reward and activate against them.

Handlers call :class:`Service`; it runs the pure loop pieces from :mod:`bandit.loop` against the
store through the group-commit writer. It never learns: the trainer, in a process of its own,
joins, learns and publishes, and the edge picks up what the trainer stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from bandit.errors import EventNotFound, ServiceUnavailable
from bandit.events import (
    Activation,
    ActivationOutcome,
    Decision,
    JoinedEvent,
    LoopTime,
    RankRequest,
    Reward,
    RewardOutcome,
)
from bandit.loop import check_reward, decide, resolve_replay
from bandit.policy import Policy, PolicyFactory
from bandit.state import read_loop_state
from bandit.store import Store
from policies import make_factory
from policies.fallback import ExploringBaselinePolicy
from server.entry.settings import Settings
from server.serving.metrics import Metrics
from server.serving.writer import GroupCommitWriter
from server.trainer.records import guardrail_tripped, load_report

log = logging.getLogger(__name__)

HEALTH_PROBE_KEY = LoopTime.HEALTH_PROBE
"""The moment ``/healthz`` writes to find out whether failing store writes succeed again."""


class NotReady(Exception):
    """The store has no loop to serve yet: no trainer has started on it."""


@dataclass(frozen=True, slots=True)
class Serving:
    """The model that serves ranks, swapped as a whole when a new version is published."""

    policy: Policy
    version: int
    created_at: float


class CountingFallback:
    """The fallback policy, counting each decision it makes."""

    def __init__(self, inner: Policy, counter: Counter) -> None:
        self._inner = inner
        self._counter = counter

    @property
    def arguments(self) -> str:
        return self._inner.arguments

    def predict_one(self, request: RankRequest) -> list[float]:
        self._counter.inc()
        return self._inner.predict_one(request)

    def learn_one(self, event: JoinedEvent) -> None:
        self._inner.learn_one(event)

    def to_bytes(self) -> bytes:
        return self._inner.to_bytes()


class Service:
    """An edge: what it serves with (caches of store state) and the operations it serves.

    The cache (configuration, policy, serving model, guardrail state) is read from the store at
    start and again whenever the store's generation changes (:meth:`refresh`, every
    ``settings.refresh_interval`` seconds, after every admin change this edge made, and at once
    when the store announces a change: PostgreSQL's ``NOTIFY``), so a model the trainer
    publishes or a change made through another edge is served here within one period. A new
    model is built off the event loop and swapped in whole: no request fails.
    """

    def __init__(
        self, settings: Settings, store: Store, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.metrics = Metrics()
        state = read_loop_state(store)
        latest = store.latest_model()
        if state is None or latest is None:
            raise NotReady("no trainer has started on this store yet")
        self.seed = state.seed
        self.config = state.config
        self.policy_settings = state.policy
        self.factory: PolicyFactory = make_factory(
            state.policy.arguments, epsilon=state.config.exploration_percentage
        )
        self.serving = Serving(self.factory(latest.data), latest.version, latest.created_at)
        self.generation = store.generation()
        self.writer = GroupCommitWriter(
            store, observer=self.metrics.observe_batch, sync_observer=self.metrics.observe_sync
        )
        self.requests = 0
        """Rank, reward and activate calls served; background work reads it to yield under load."""
        self._load = (0, time.monotonic(), False)  # (requests seen, when, under load)
        self._baseline = CountingFallback(
            ExploringBaselinePolicy(lambda: self.config.exploration_percentage),
            self.metrics.fallback_decisions,
        )
        # While set, ranks are decided by this policy in place of the model: the guardrail's
        # baseline fallback, while the stored guardrail state is tripped. Decisions still log
        # the serving model's version.
        self.fallback: Policy | None = self._baseline if guardrail_tripped(store) else None
        self._refresher: asyncio.Task[None] | None = None
        self._refreshing = asyncio.Lock()
        self._changed = asyncio.Event()

    async def start(self) -> None:
        """Start the writer and the cache refresh."""
        await self.writer.start()
        loop = asyncio.get_running_loop()
        changed = self._changed

        def announced() -> None:  # the store's thread: hand the notice to the event loop
            if not loop.is_closed():
                loop.call_soon_threadsafe(changed.set)

        self.store.watch_changes(announced)
        self._refresher = loop.create_task(self._refresh_every())

    async def stop(self) -> None:
        """Commit what is queued, stop refreshing, close the store."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        await self.writer.stop()
        self.store.close()

    async def _refresh_every(self) -> None:
        changed = self._changed
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.settings.refresh_interval)
            changed.clear()
            try:
                await self.refresh()
            except Exception:
                self.metrics.store_errors.labels("refresh").inc()
                log.exception("refreshing the edge's cache from the store failed; retrying")

    async def refresh(self) -> None:
        """Bring the cache up to date with the store: one read when nothing changed, the cached
        records again when the store's generation moved (every save of them moves it)."""
        async with self._refreshing:
            generation = await asyncio.to_thread(self.store.generation)
            if generation != self.generation:
                await self._reload(generation)

    async def _reload(self, generation: int) -> None:
        store = self.store
        config, policy, latest, tripped = await asyncio.to_thread(
            lambda: (
                store.load_config(),
                store.load_policy(),
                store.latest_model(),
                guardrail_tripped(store),
            )
        )
        if config is None or policy is None or latest is None:
            return
        self.fallback = self._baseline if tripped else None
        rebuild = (
            policy.arguments != self.policy_settings.arguments
            or config.exploration_percentage != self.config.exploration_percentage
        )
        factory = (
            make_factory(policy.arguments, epsilon=config.exploration_percentage)
            if rebuild
            else self.factory
        )
        if rebuild or latest.version != self.serving.version:
            model = await asyncio.to_thread(factory, latest.data)
            self.serving = Serving(model, latest.version, latest.created_at)
        self.config, self.policy_settings, self.factory = config, policy, factory
        self.generation = generation

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

    def explain(self, decision: Decision) -> dict[str, Any] | None:
        """The ``inferenceExplanation`` entry for the decision's chosen action: its features
        and interactions with their scores (docs/explanations.md), ``explored`` (a banditd
        extension) when the choice was not the model's greedy one. None when the serving model
        cannot explain (the fallback, a fixed policy, an interleaved VW model) or no longer
        serves (a newer version was published while the decision was committed)."""
        explain = getattr(self.serving.policy, "explain", None)
        # The decision's commit was awaited: a model published meanwhile did not serve it, and
        # its scores would not be the ones the choice was made with.
        stale = self.serving.version != decision.model_version
        if explain is None or self.fallback is not None or stale:
            return None
        explanation = explain(decision.request, decision.chosen_index)
        if explanation is None:
            return None
        return {
            "id": decision.request.actions[decision.chosen_index].id,
            "features": [{"name": n, "score": s} for n, s in explanation.features],
            "explored": decision.chosen_index != decision.greedy_index,
        }

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

        Read by the learner and the watcher threads of a trainer in the same process
        (``--role all``); a stale answer only shifts when they yield.
        """
        seen, at, loaded = self._load
        now = time.monotonic()
        if now - at >= 0.2:
            count = self.requests
            loaded = (count - seen) / (now - at) >= self.settings.busy_requests_per_second
            self._load = (count, now, loaded)
        return loaded

    def refresh_metrics(self) -> str:
        """Bring the store-derived gauges up to date; returns the text exposition of the
        trainer's metrics as it last stored them (empty before its first report)."""
        now = self.clock()
        report = load_report(self.store)
        self.metrics.refresh(
            self.store.counts(now),
            now=now,
            cursor=report.cursor if report is not None else 0,
            exploration_cap=self.config.exploration_percentage,
            model_version=self.serving.version,
            model_created_at=self.serving.created_at,
        )
        self.metrics.processes(report.holder.rsplit(":", 1)[-1] if report is not None else None)
        return report.metrics if report is not None else ""
