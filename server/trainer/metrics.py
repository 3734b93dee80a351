"""Prometheus metrics of the trainer: joining, learning, publishing, and (registered by the
watcher) the counterfactual watch.

The trainer serves no HTTP: it stores their text exposition with its report
(:mod:`server.trainer.report`) and every edge's ``/metrics`` shows it after its own, so one
scrape of any edge covers the loop.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, generate_latest


class TrainerMetrics:
    """The trainer's metrics; counters count since the trainer process started."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
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
        ProcessCollector(namespace="banditd_trainer", registry=r)
        self.store_errors = Counter(
            "banditd_trainer_store_errors",
            "Store operations of the trainer that failed (retried).",
            ["operation"],
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))
