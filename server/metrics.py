"""Prometheus metrics for every stage of the loop, on a registry of the app's own."""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bandit.events import StoreCounts, WriteBatch, WriteResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's metrics. Counters count since process start; gauges read the store.

    ``*_by`` are the labelled metrics' ``labels`` memoized per label value, for the request
    path: prometheus-client checks and locks on every ``labels`` call, and the values are few.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ranks = Counter(
            "banditd_ranks", "Rank decisions served.", ["learning_mode"], registry=r
        )
        self.rank_replays = Counter(
            "banditd_rank_replays", "Rank requests answered from a stored decision.", registry=r
        )
        self.rewards = Counter(
            "banditd_rewards",
            "Reward calls by outcome (stored, late, duplicate, inactive).",
            ["outcome"],
            registry=r,
        )
        self.activations = Counter(
            "banditd_activations", "Activate calls by outcome.", ["outcome"], registry=r
        )
        self.ranks_by = functools.cache(self.ranks.labels)
        self.rewards_by = functools.cache(self.rewards.labels)
        self.activations_by = functools.cache(self.activations.labels)
        self.joined = Counter(
            "banditd_joined_events", "Decisions joined with their reward.", registry=r
        )
        self.learned = Counter(
            "banditd_learned_events", "Joined events learned by the learner.", registry=r
        )
        self.published = Counter(
            "banditd_models_published", "Model versions published.", registry=r
        )
        self.apprentice_graduations = Counter(
            "banditd_apprentice_graduations",
            "Automatic switches from Apprentice to Online (apprenticeAutoGraduate).",
            registry=r,
        )
        self.store_errors = Counter(
            "banditd_store_errors", "Store operations that failed.", ["operation"], registry=r
        )
        self.request_seconds = Histogram(
            "banditd_request_duration_seconds",
            "Request latency by route and status.",
            ["route", "status"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=r,
        )
        self.request_seconds_by = functools.cache(self.request_seconds.labels)
        self.batch_size = Histogram(
            "banditd_writer_batch_size",
            "Items committed per group-commit transaction.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "banditd_writer_commit_duration_seconds",
            "Seconds one group-commit transaction took.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.sync_seconds = Histogram(
            "banditd_writer_sync_duration_seconds",
            "Seconds one fsync of committed batches took.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.default_reward_ratio = Gauge(
            "banditd_default_reward_ratio",
            "Share of joined events that got the default reward (no reward in the window).",
            registry=r,
        )
        self.exploration_ratio = Gauge(
            "banditd_realized_exploration_ratio",
            "Share of logged decisions whose draw left the greedy action.",
            registry=r,
        )
        self.exploration_cap = Gauge(
            "banditd_exploration_cap_ratio",
            "The configured exploration budget (explorationPercentage).",
            registry=r,
        )
        self.lag_events = Gauge(
            "banditd_learner_lag_events",
            "Events due to be joined or learned but not learned yet.",
            registry=r,
        )
        self.lag_seconds = Gauge(
            "banditd_learner_lag_seconds",
            "Age of the oldest event due to be joined but not joined yet.",
            registry=r,
        )
        self.model_version = Gauge(
            "banditd_model_version", "Version of the model serving ranks.", registry=r
        )
        self.model_age = Gauge(
            "banditd_model_age_seconds",
            "Seconds since the serving model was published.",
            registry=r,
        )
        self.decisions_stored = Gauge(
            "banditd_decisions_stored", "Decisions in the store.", registry=r
        )
        self.late_rewards_stored = Gauge(
            "banditd_late_rewards_stored",
            "Late rewards in the store (never learned).",
            registry=r,
        )

    def observe_batch(self, batch: WriteBatch, result: WriteResult | None, seconds: float) -> None:
        """Record one group commit (``result`` None when it failed)."""
        size = len(batch.decisions) + len(batch.rewards) + len(batch.activations)
        self.batch_size.observe(size)
        self.commit_seconds.observe(seconds)
        if result is None:
            self.store_errors.labels("write").inc()

    def observe_sync(self, batches: int, seconds: float, ok: bool) -> None:
        """Record one sync of ``batches`` committed batches."""
        del batches
        self.sync_seconds.observe(seconds)
        if not ok:
            self.store_errors.labels("sync").inc()

    def refresh(
        self,
        counts: StoreCounts,
        *,
        now: float,
        cursor: int,
        exploration_cap: float,
        model_version: int,
        model_created_at: float,
    ) -> None:
        """Update the gauges that come from the store."""
        self.decisions_stored.set(counts.decisions)
        self.late_rewards_stored.set(counts.late_rewards)
        self.default_reward_ratio.set(counts.defaulted / counts.joined if counts.joined else 0.0)
        self.exploration_ratio.set(counts.explored / counts.decisions if counts.decisions else 0.0)
        self.exploration_cap.set(exploration_cap)
        self.lag_events.set(counts.pending_join + max(counts.joined - cursor, 0))
        oldest = counts.oldest_pending_close_at
        self.lag_seconds.set(max(now - oldest, 0.0) if oldest is not None else 0.0)
        self.model_version.set(model_version)
        self.model_age.set(max(now - model_created_at, 0.0))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))
