"""Prometheus metrics of an edge (requests, group commits, the store's figures), on a registry
of the app's own; the trainer's are :mod:`server.trainer.metrics`, and an edge's ``/metrics``
adds the ones the trainer last stored.

Metrics updated on every request (latency, outcomes, group commits) are :class:`LoopCounter`
and :class:`LoopHistogram`: plain numbers that only the event loop changes, exposed through a
collector of their own. prometheus-client's metrics take a lock per update (a histogram
observation takes two and walks its buckets), which cost a reward about 4% of its instructions;
these cost an addition or a bisect. Metrics other threads update stay prometheus-client's.
"""

from __future__ import annotations

import functools
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Generic, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from bandit.events import StoreCounts, WriteBatch, WriteResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_go_float = cast(Callable[[float], str], floatToGoString)
"""A bucket bound as prometheus-client writes it (``le="0.0005"``, ``le="1.0"``)."""


class LoopCounter:
    """A counter that only the event loop increments (no lock)."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (≥ 0)."""
        self.value += amount


class LoopHistogram:
    """A histogram that only the event loop observes (no lock; one bisect per observation).

    >>> h = LoopHistogram((0.5, 1.0))
    >>> for v in (0.25, 0.5, 0.75, 4.0):
    ...     h.observe(v)
    >>> h.counts, h.sum
    ([2, 1, 1], 5.5)
    """

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf's own
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose upper bound is ≥ it."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


Child = TypeVar("Child", LoopCounter, LoopHistogram)


class _LoopFamily(Generic[Child]):
    """Children of one loop metric by label values, each made on first use."""

    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], make: Callable[[], Child]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.children: dict[tuple[str, ...], Child] = {}
        self._make: Callable[[], Child] = make

    def child(self, *values: str) -> Child:
        """The child for these label values, made on the first call (later calls are one dict
        lookup)."""
        found = self.children.get(values)
        if found is None:
            if len(values) != len(self.labels):
                raise ValueError(f"{self.name} takes labels {self.labels}, got {values}")
            found = self.children[values] = self._make()
        return found


class _LoopCollector(Collector):
    """Exposes the loop metrics in prometheus-client's formats (scraped on the loop too)."""

    def __init__(self) -> None:
        self.counters: list[_LoopFamily[LoopCounter]] = []
        self.histograms: list[_LoopFamily[LoopHistogram]] = []

    def counter(
        self, name: str, documentation: str, labels: tuple[str, ...] = ()
    ) -> _LoopFamily[LoopCounter]:
        family = _LoopFamily(name, documentation, labels, LoopCounter)
        self.counters.append(family)
        return family

    def histogram(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        labels: tuple[str, ...] = (),
    ) -> _LoopFamily[LoopHistogram]:
        family = _LoopFamily(name, documentation, labels, functools.partial(LoopHistogram, buckets))
        self.histograms.append(family)
        return family

    def collect(self) -> Iterator[Metric]:
        for counter in self.counters:
            counts = CounterMetricFamily(counter.name, counter.documentation, labels=counter.labels)
            for values, child in list(counter.children.items()):
                counts.add_metric(values, child.value, created=child.created)
            yield counts
        for histogram in self.histograms:
            observed = HistogramMetricFamily(
                histogram.name, histogram.documentation, labels=histogram.labels
            )
            for values, h in list(histogram.children.items()):
                bounds = [_go_float(b) for b in h.bounds] + ["+Inf"]
                cumulative = [float(n) for n in accumulate(h.counts)]
                observed.add_metric(values, list(zip(bounds, cumulative, strict=True)), h.sum)
                # as prometheus-client's own histograms expose it
                labels = dict(zip(histogram.labels, values, strict=True))
                observed.add_sample(histogram.name + "_created", labels, h.created)
            yield observed


class Metrics:
    """An edge's metrics. Counters count since process start; gauges read the store.

    ``*_by`` give a labelled loop metric's child for label values (one dict lookup: the request
    path asks for one on every request).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        loop = _LoopCollector()
        ranks = loop.counter("banditd_ranks", "Rank decisions served.", ("learning_mode",))
        self.rank_replays = loop.counter(
            "banditd_rank_replays", "Rank requests answered from a stored decision."
        ).child()
        rewards = loop.counter(
            "banditd_rewards",
            "Reward calls by outcome (stored, late, duplicate, inactive).",
            ("outcome",),
        )
        activations = loop.counter(
            "banditd_activations", "Activate calls by outcome.", ("outcome",)
        )
        self.ranks_by = ranks.child
        self.rewards_by = rewards.child
        self.activations_by = activations.child
        self.store_errors = Counter(
            "banditd_store_errors",
            "Store operations of this edge that failed.",
            ["operation"],
            registry=r,
        )
        self.process_info = Gauge(
            "banditd_process_info",
            "The loop's processes: this edge, and the trainer that last reported (1 each).",
            ["role", "pid"],
            registry=r,
        )
        ProcessCollector(namespace="banditd_edge", registry=r)
        self.fallback_decisions = Counter(
            "banditd_guardrail_fallback_decisions",
            "Rank decisions served by the baseline because the guardrail was tripped.",
            registry=r,
        )
        request_seconds = loop.histogram(
            "banditd_request_duration_seconds",
            "Request latency by route and status.",
            (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            ("route", "status"),
        )
        self.request_seconds_by = request_seconds.child
        self.batch_size = loop.histogram(
            "banditd_writer_batch_size",
            "Items committed per group-commit transaction.",
            (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        ).child()
        self.commit_seconds = loop.histogram(
            "banditd_writer_commit_duration_seconds",
            "Seconds one group-commit transaction took.",
            (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
        ).child()
        self.sync_seconds = loop.histogram(
            "banditd_writer_sync_duration_seconds",
            "Seconds one fsync of committed batches took.",
            (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
        ).child()
        r.register(loop)
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

    def processes(self, trainer_pid: str | None) -> None:
        """Set ``banditd_process_info``: this edge, and the trainer's pid (from its report)."""
        self.process_info.clear()
        self.process_info.labels("edge", str(os.getpid())).set(1)
        if trainer_pid is not None:
            self.process_info.labels("trainer", trainer_pid).set(1)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))
