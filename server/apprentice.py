"""Apprentice-mode counters kept by the learner thread and served as
``latestApprenticeModeMetrics``.

The learner calls :meth:`ApprenticeTracker.observe` before it learns each event; the totals are
written to the store's meta table by :meth:`ApprenticeTracker.flush`, which the control loop
calls every second. Each flush closes a *batch*: ``lastBatchMetrics`` are the counts of the last
non-empty one.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, replace
from typing import Any

from bandit.apprentice import ApprenticeMetrics, ImitationCounts, imitates, is_apprentice
from bandit.dsjson import iso_time
from bandit.events import JoinedEvent
from bandit.policy import Policy
from bandit.store import Store

META_KEY = "apprentice_metrics"


class ApprenticeTracker:
    """Thread-safe apprentice counters, persisted in the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._batch = ImitationCounts()
        self._dirty = False
        text = store.get_meta(META_KEY)
        self.metrics: ApprenticeMetrics | None = _from_json(text) if text else None

    def start(self, now: float) -> None:
        """Apprentice mode was turned on at ``now``: start counting afresh."""
        with self._lock:
            self.metrics = ApprenticeMetrics(start_time=now, last_processed_event_time=now)
            self._batch = ImitationCounts()
            self._dirty = True

    def observe(self, policy: Policy, event: JoinedEvent) -> None:
        """Count an event the learner is about to learn (learner thread)."""
        if not is_apprentice(event):
            return
        imitated = imitates(policy, event)
        with self._lock:
            if self.metrics is None:
                at = event.decision.timestamp
                self.metrics = ApprenticeMetrics(start_time=at, last_processed_event_time=at)
            self.metrics = self.metrics.add(event, imitated)
            self._batch = self._batch.add(event.reward, imitated)
            self._dirty = True

    def flush(self) -> None:
        """Close the running batch and persist the totals if they changed (blocking)."""
        with self._lock:
            if self.metrics is None or not self._dirty:
                return
            if self._batch.number_of_events:
                self.metrics = replace(self.metrics, last_batch=self._batch)
                self._batch = ImitationCounts()
            text = json.dumps(asdict(self.metrics))
            self._dirty = False
        self._store.set_meta(META_KEY, text)

    def to_wire(self) -> dict[str, Any] | None:
        """Personalizer's ``latestApprenticeModeMetrics``, or None if never in Apprentice mode."""
        with self._lock:
            metrics = self.metrics
            batch = self._batch
        if metrics is None:
            return None
        last = batch if batch.number_of_events else metrics.last_batch
        return {
            "startTime": iso_time(metrics.start_time),
            "lastProcessedEventTime": iso_time(metrics.last_processed_event_time),
            **_counts(metrics.total),
            "lastBatchMetrics": _counts(last),
        }


def _counts(counts: ImitationCounts) -> dict[str, Any]:
    return {
        "numberOfEvents": counts.number_of_events,
        "sumOfRewards": counts.sum_of_rewards,
        "sumOfImitatedRewards": counts.sum_of_imitated_rewards,
        "numberOfImitatedEvents": counts.number_of_imitated_events,
    }


def _from_json(text: str) -> ApprenticeMetrics:
    data = json.loads(text)
    return ApprenticeMetrics(
        start_time=float(data["start_time"]),
        last_processed_event_time=float(data["last_processed_event_time"]),
        total=ImitationCounts(**data["total"]),
        last_batch=ImitationCounts(**data["last_batch"]),
    )
