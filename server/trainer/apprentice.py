"""Apprentice-mode counters kept by the learner thread and served as
``latestApprenticeModeMetrics``.

The learner calls :meth:`ApprenticeTracker.observe` before it learns each event; the totals are
saved in the store (:class:`bandit.events.ApprenticeRecord`) by :meth:`ApprenticeTracker.flush`,
which the control loop calls every second. Each flush closes a *batch*: ``lastBatchMetrics`` are
the counts of the last non-empty one.

With apprentice exploration the tracker also values the learned policy against the baseline
(:mod:`bandit.graduation`), persisted with the counts and served as banditd's extra fields of
``latestApprenticeModeMetrics``; :meth:`ApprenticeTracker.graduation` says when the loop may
move to Online.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from typing import Any

from bandit.apprentice import greedy_index, is_apprentice
from bandit.dsjson import iso_time
from bandit.events import ApprenticeMetrics, ApprenticeRecord, ImitationCounts, JoinedEvent
from bandit.graduation import ApprenticeEvaluation, ApprenticeValue, graduates
from bandit.policy import Policy
from bandit.store import LoopSettings


class ApprenticeTracker:
    """Thread-safe apprentice counters, persisted in the store."""

    def __init__(self, store: LoopSettings) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._batch = ImitationCounts()
        self._dirty = False
        saved = store.load_apprentice()
        self.metrics: ApprenticeMetrics | None = saved.metrics if saved else None
        self._evaluation = (
            ApprenticeEvaluation.from_sums(saved.evaluation) if saved else ApprenticeEvaluation()
        )

    def start(self, now: float) -> None:
        """Apprentice mode was turned on at ``now``: start counting afresh."""
        with self._lock:
            self.metrics = ApprenticeMetrics(start_time=now, last_processed_event_time=now)
            self._batch = ImitationCounts()
            self._evaluation = ApprenticeEvaluation()
            self._dirty = True

    def restart_evaluation(self) -> None:
        """The learner's model was replaced by a fresh one: value it from scratch (the counts
        keep running)."""
        with self._lock:
            if self._evaluation.n:
                self._evaluation = ApprenticeEvaluation()
                self._dirty = self.metrics is not None

    def observe(self, policy: Policy, event: JoinedEvent) -> None:
        """Count an event the learner is about to learn (learner thread)."""
        if not is_apprentice(event):
            return
        greedy = greedy_index(policy, event)
        imitated = greedy == event.decision.request.baseline_index()
        with self._lock:
            if self.metrics is None:
                at = event.decision.timestamp
                self.metrics = ApprenticeMetrics(start_time=at, last_processed_event_time=at)
            self.metrics = self.metrics.add(event, imitated)
            self._batch = self._batch.add(event.reward, imitated)
            self._evaluation.add(event, greedy)
            self._dirty = True

    def flush(self) -> None:
        """Close the running batch and persist the totals if they changed (blocking)."""
        with self._lock:
            if self.metrics is None or not self._dirty:
                return
            if self._batch.number_of_events:
                self.metrics = replace(self.metrics, last_batch=self._batch)
                self._batch = ImitationCounts()
            record = ApprenticeRecord(metrics=self.metrics, evaluation=self._evaluation.sums())
            self._dirty = False
        self._store.save_apprentice(record)

    def value(self, horizon: float) -> ApprenticeValue:
        """The learned policy against the baseline so far (intervals tightest at ``horizon``)."""
        with self._lock:
            return self._evaluation.value(horizon)

    def graduation(self, min_events: int) -> ApprenticeValue | None:
        """The evidence for moving to Online, or None while it is not enough."""
        value = self.value(min_events)
        return value if graduates(value, min_events) else None

    def to_wire(self, horizon: float = 1000.0) -> dict[str, Any] | None:
        """Personalizer's ``latestApprenticeModeMetrics``, or None if never in Apprentice mode.

        Once apprentice events have been evaluated (apprentice exploration on), banditd adds
        ``evaluatedEvents``, ``estimatedPolicyValue``, ``estimatedBaselineValue``,
        ``estimatedImprovement``, ``improvementLowerBound`` and ``improvementUpperBound`` (null
        while not estimable); intervals are anytime-valid at 95%, tightest at ``horizon`` events.
        """
        with self._lock:
            metrics = self.metrics
            batch = self._batch
            value = self._evaluation.value(horizon) if self._evaluation.n else None
        if metrics is None:
            return None
        last = batch if batch.number_of_events else metrics.last_batch
        body = {
            "startTime": iso_time(metrics.start_time),
            "lastProcessedEventTime": iso_time(metrics.last_processed_event_time),
            **_counts(metrics.total),
            "lastBatchMetrics": _counts(last),
        }
        if value is not None:
            body.update(
                evaluatedEvents=value.evaluated_events,
                estimatedPolicyValue=_finite(value.policy.estimate),
                estimatedBaselineValue=_finite(value.baseline.estimate),
                estimatedImprovement=_finite(value.improvement.estimate),
                improvementLowerBound=_finite(value.improvement.ci_low),
                improvementUpperBound=_finite(value.improvement.ci_high),
            )
        return body


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _counts(counts: ImitationCounts) -> dict[str, Any]:
    return {
        "numberOfEvents": counts.number_of_events,
        "sumOfRewards": counts.sum_of_rewards,
        "sumOfImitatedRewards": counts.sum_of_imitated_rewards,
        "numberOfImitatedEvents": counts.number_of_imitated_events,
    }
