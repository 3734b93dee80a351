"""The event loop's metrics expose exactly what prometheus-client's own metrics would."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from server.serving.metrics import Metrics

_CREATED = re.compile(r"^\w+_created(\{.*\})? .*$", re.MULTILINE)

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


def _family(text: str, name: str) -> list[str]:
    """The lines of one metric family (HELP, TYPE and samples), creation times masked."""
    text = _CREATED.sub(lambda m: m.group(0).rsplit(" ", 1)[0] + " T", text)
    return [line for line in text.splitlines() if re.match(rf"(# \w+ )?{name}(_\w+)?\b", line)]


def test_loop_metrics_render_as_prometheus_client_metrics() -> None:
    metrics = Metrics()
    reference = CollectorRegistry()
    latency = Histogram(
        "banditd_request_duration_seconds",
        "Request latency by route and status.",
        ["route", "status"],
        buckets=BUCKETS,
        registry=reference,
    )
    rewards = Counter(
        "banditd_rewards",
        "Reward calls by outcome (stored, late, duplicate, inactive).",
        ["outcome"],
        registry=reference,
    )
    # values on and between bucket bounds, above the last one, and two label sets
    for route, status, seconds in [
        ("rank", "201", 0.0005),
        ("rank", "201", 0.003),
        ("rank", "201", 0.25),
        ("rank", "201", 9.0),
        ("reward", "404", 0.0001),
    ]:
        metrics.request_seconds_by(route, status).observe(seconds)
        latency.labels(route, status).observe(seconds)
    for outcome in ("stored", "stored", "duplicate"):
        metrics.rewards_by(outcome).inc()
        rewards.labels(outcome).inc()
    ours, theirs = metrics.render().decode(), generate_latest(reference).decode()
    for name in ("banditd_request_duration_seconds", "banditd_rewards"):
        assert _family(ours, name) == _family(theirs, name)
        assert len(_family(ours, name)) > 4
    assert (
        'banditd_request_duration_seconds_bucket{le="0.005",route="rank",status="201"} 2.0' in ours
    )
