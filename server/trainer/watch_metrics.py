"""Prometheus metrics of the loop watcher: counterfactual estimates, guardrail, drift, rollbacks.

Registered on the trainer's registry (:attr:`server.trainer.metrics.TrainerMetrics.registry`);
edges show them on ``/metrics`` as the trainer last stored them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from bandit.drift import Direction
from bandit.estimators import Estimate
from bandit.watch import WatchSnapshot


class WatchMetrics:
    """Gauges and counters the watcher updates after each batch of joined events."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.value = Gauge(
            "banditd_counterfactual_value",
            "SNIPS estimate of the mean reward per decision over the watch window, by target "
            "policy (policy, baseline, uniform), with its anytime-valid confidence bounds.",
            ["target", "bound"],
            registry=r,
        )
        self.improvement = Gauge(
            "banditd_counterfactual_improvement",
            "Estimated value of the learned policy minus the baseline's over the watch window, "
            "with its anytime-valid confidence bounds.",
            ["bound"],
            registry=r,
        )
        self.ess = Gauge(
            "banditd_counterfactual_effective_sample_size",
            "Effective sample size of each target's importance weights over the watch window.",
            ["target"],
            registry=r,
        )
        self.window_events = Gauge(
            "banditd_watch_window_events", "Joined events the watch window holds.", registry=r
        )
        self.watched = Counter(
            "banditd_watch_events", "Joined events scored by the watcher.", registry=r
        )
        self.lag = Gauge(
            "banditd_watch_lag_events",
            "Joined events not yet scored by the watcher.",
            registry=r,
        )
        self.errors = Counter(
            "banditd_watch_errors", "Watcher rounds that failed (retried).", registry=r
        )
        self.reward_mean = Gauge(
            "banditd_watch_reward_mean",
            "Mean joined reward over the watch window (what was actually served).",
            registry=r,
        )
        self.exploration = Gauge(
            "banditd_watch_exploration_ratio",
            "Share of the watch window's decisions whose draw left the greedy action.",
            registry=r,
        )
        self.default_ratio = Gauge(
            "banditd_watch_default_reward_ratio",
            "Share of the watch window's events joined with the default reward.",
            registry=r,
        )
        self.propensity_mean = Gauge(
            "banditd_served_propensity_mean_ratio",
            "Mean logged propensity of the chosen action over the watch window.",
            registry=r,
        )
        self.propensity_min = Gauge(
            "banditd_served_propensity_min_ratio",
            "Smallest logged propensity of a chosen action over the watch window.",
            registry=r,
        )
        self.tripped = Gauge(
            "banditd_guardrail_tripped",
            "1 while the guardrail serves the baseline in place of the learned policy, else 0.",
            registry=r,
        )
        self.trips = Counter(
            "banditd_guardrail_trips",
            "Times the guardrail switched serving to the baseline.",
            registry=r,
        )
        self.recoveries = Counter(
            "banditd_guardrail_recoveries",
            "Times the guardrail returned serving to the learned policy.",
            registry=r,
        )
        self.drift_alarms = Counter(
            "banditd_drift_alarms",
            "Page–Hinkley alarms on the joined reward stream, by direction of the shift.",
            ["direction"],
            registry=r,
        )
        self.drift_statistic = Gauge(
            "banditd_drift_statistic_ratio",
            "Page–Hinkley statistic over its alarm threshold (an alarm fires above 1).",
            ["direction"],
            registry=r,
        )
        self.drift_last_alarm = Gauge(
            "banditd_drift_last_alarm_timestamp_seconds",
            "When the last drift alarm fired (0 before any).",
            registry=r,
        )
        self.activations = Counter(
            "banditd_model_activations",
            "Manual activations of a stored model version (rollbacks).",
            registry=r,
        )
        for direction in Direction:
            self.drift_alarms.labels(direction.value)
            self.drift_statistic.labels(direction.value).set(0.0)

    def observe_snapshot(self, snap: WatchSnapshot) -> None:
        """Set the window gauges from a snapshot (NaN before any estimate, ±Inf while unbounded)."""
        for target, estimate in (
            ("policy", snap.policy),
            ("baseline", snap.baseline),
            ("uniform", snap.uniform),
        ):
            self._bounds(self.value, estimate, target)
            self.ess.labels(target).set(estimate.ess)
        self._bounds(self.improvement, snap.improvement)
        self.window_events.set(snap.n)
        self.reward_mean.set(snap.reward_mean)
        self.exploration.set(snap.exploration_ratio)
        self.default_ratio.set(snap.default_ratio)
        self.propensity_mean.set(snap.propensity_mean)
        self.propensity_min.set(snap.propensity_min)

    @staticmethod
    def _bounds(gauge: Gauge, estimate: Estimate, *labels: str) -> None:
        for bound, value in (
            ("estimate", estimate.estimate),
            ("lower", estimate.ci_low),
            ("upper", estimate.ci_high),
        ):
            gauge.labels(*labels, bound).set(value)
