"""The ``/v1/loop/status`` document and the JSON forms of what the watcher reports.

Numbers that are undefined (no estimate yet) or unbounded (too little evidence for an interval)
are ``null``; times are ISO-8601 UTC strings, except the chart history's, which are seconds
since the epoch.
"""

from __future__ import annotations

import math
from typing import Any

from bandit.config import format_duration
from bandit.drift import DriftAlarm
from bandit.dsjson import iso_time
from bandit.estimators import Estimate
from bandit.events import StoreCounts
from bandit.guardrail import Transition
from bandit.join import JOIN_GRACE
from bandit.watch import WatchSnapshot
from server.trainer.observer import LoopObserver
from server.trainer.timeline import Sample, Timeline
from server.trainer.watcher import Report

METHOD = (
    "SNIPS over a rolling window of joined events, with the normal-mixture confidence sequence "
    "(valid under continuous monitoring) plus a Bernstein term for large importance weights"
)


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def estimate_body(e: Estimate) -> dict[str, Any]:
    """An estimate with its interval; unbounded or undefined numbers are null."""
    return {
        "value": _num(e.estimate),
        "lower": _num(e.ci_low),
        "upper": _num(e.ci_high),
        "stdError": _num(e.std_error),
        "ess": _num(e.ess),
        "events": e.n,
    }


def snapshot_body(s: WatchSnapshot) -> dict[str, Any]:
    """The window's estimates and plain summaries."""
    return {
        "events": s.n,
        "firstSeq": s.first_seq,
        "lastSeq": s.last_seq,
        "since": iso_time(s.since) if math.isfinite(s.since) else None,
        "until": iso_time(s.until) if math.isfinite(s.until) else None,
        "rewardMean": _num(s.reward_mean),
        "explorationRatio": _num(s.exploration_ratio),
        "defaultRewardRatio": _num(s.default_ratio),
        "propensityMean": _num(s.propensity_mean),
        "propensityMin": _num(s.propensity_min),
        "policy": estimate_body(s.policy),
        "baseline": estimate_body(s.baseline),
        "uniform": estimate_body(s.uniform),
        "improvement": estimate_body(s.improvement),
    }


def transition_body(t: Transition) -> dict[str, Any]:
    return {
        "state": t.state.value,
        "at": iso_time(t.at),
        "seq": t.seq,
        "reason": t.reason,
        "improvement": estimate_body(t.improvement) if t.improvement is not None else None,
    }


def alarm_body(a: DriftAlarm) -> dict[str, Any]:
    return {
        "direction": a.direction.value,
        "at": iso_time(a.at),
        "seq": a.seq,
        "detectedAfter": a.detected_after,
        "meanBefore": _num(a.mean_before),
        "meanAfter": _num(a.mean_after),
        "explainedBy": a.explained_by,
        "counterfactual": _num(a.counterfactual),
    }


def history_body(samples: list[Sample]) -> dict[str, list[Any]]:
    """Chart series, one list per column (times in seconds since the epoch), oldest first.

    ``ranksPerSecond`` and ``rewardsPerSecond`` are the store totals' rates since the sample
    before (null for the first); every other column is as of its sample."""
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "at", "modelVersion", "tripped", "events", "rewardMean", "explorationRatio",
            "policy", "policyLower", "policyUpper", "baseline", "baselineLower", "baselineUpper",
            "uniform", "improvement", "improvementLower", "improvementUpper",
            "decisions", "rewards", "ranksPerSecond", "rewardsPerSecond", "lagEvents",
            "lagSeconds",
        )
    }  # fmt: skip
    previous: Sample | None = None
    for p in samples:
        s = p.snapshot
        dt = p.at - previous.at if previous is not None else 0.0
        row: dict[str, Any] = {
            "at": round(p.at, 3),
            "modelVersion": p.model_version,
            "tripped": p.tripped,
            "events": s.n,
            "rewardMean": _num(s.reward_mean),
            "explorationRatio": _num(s.exploration_ratio),
            "decisions": p.decisions,
            "rewards": p.rewards,
            "ranksPerSecond": (
                max(p.decisions - previous.decisions, 0) / dt if previous and dt > 0 else None
            ),
            "rewardsPerSecond": (
                max(p.rewards - previous.rewards, 0) / dt if previous and dt > 0 else None
            ),
            "lagEvents": p.lag_events,
            "lagSeconds": round(p.lag_seconds, 3),
        }
        for name, e in (
            ("policy", s.policy),
            ("baseline", s.baseline),
            ("improvement", s.improvement),
        ):
            row[name], row[name + "Lower"], row[name + "Upper"] = (
                _num(e.estimate),
                _num(e.ci_low),
                _num(e.ci_high),
            )
        row["uniform"] = _num(s.uniform.estimate)
        for key, value in row.items():
            cols[key].append(value)
        previous = p
    return cols


def status_body(
    observer: LoopObserver, counts: StoreCounts, now: float, timeline: Timeline
) -> dict[str, Any]:
    """The whole ``/v1/loop/status`` document as the trainer sees it at ``now`` (``counts``
    read from the store just before), after adding this moment to ``timeline`` (the charts'
    history). Edges serve it from the trainer's report and add their own
    ``guardrail.fallbackDecisions`` (each edge counts the decisions it served by the baseline),
    ``serving`` (what the edge serves now) and ``modelVersion`` (the version the edge serves)."""
    service = observer.service
    report: Report = observer.report
    settings = observer.settings
    oldest, next_close = counts.oldest_pending_close_at, counts.next_close_at
    lag_events = counts.pending_join + max(counts.joined - service.learner.cursor, 0)
    lag_seconds = max(now - oldest, 0.0) if oldest is not None else 0.0
    timeline.add(
        Sample(
            at=now,
            decisions=counts.decisions,
            rewards=counts.rewards,
            lag_events=lag_events,
            lag_seconds=lag_seconds,
            model_version=service.serving.version,
            tripped=observer.watcher.guardrail.tripped,
            snapshot=report.snapshot,
        ),
        limit=settings.history,
    )
    body: dict[str, Any] = {
        "time": iso_time(now),
        "learningMode": service.config.learning_mode.value,
        "explorationCap": service.config.exploration_percentage,
        "modelVersion": service.serving.version,
        "modelCreatedAt": iso_time(service.serving.created_at),
        "serving": "baseline" if observer.watcher.guardrail.tripped else "policy",
        "window": {
            "size": settings.watch.window,
            "alpha": settings.watch.alpha,
            "method": METHOD,
            **snapshot_body(report.snapshot),
        },
        "guardrail": {
            "enabled": settings.guardrail.enabled,
            "state": report.state.value,
            "since": iso_time(report.since) if report.since > 0 else None,
            "reason": report.reason or None,
            "margin": settings.guardrail.margin,
            "minEvents": settings.guardrail.min_events,
            "trips": report.trips,
            "recoveries": report.recoveries,
            "history": [transition_body(t) for t in reversed(report.transitions)],
        },
        "drift": {
            "statisticUp": report.drift_up,
            "statisticDown": report.drift_down,
            "mean": _num(report.drift_mean),
            "delta": settings.drift.delta,
            "threshold": settings.drift.threshold,
            "alarms": [alarm_body(a) for a in reversed(report.alarms)],
        },
        "learner": {
            "cursor": service.learner.cursor,
            "learnedCount": service.learner.learned_count,
            "lagEvents": lag_events,
            "lagSeconds": lag_seconds,
        },
        # What the dashboard's countdown to the next join needs: a decision joins (and can be
        # learned) once its reward wait and the join's grace have passed.
        "join": {
            "rewardWaitTime": format_duration(service.config.reward_wait_time),
            "rewardWaitSeconds": service.config.reward_wait_time,
            "joined": counts.joined,
            "due": counts.pending_join,
            "oldestDueCloseAt": iso_time(oldest) if oldest is not None else None,
            "nextJoinAt": iso_time(next_close + JOIN_GRACE) if next_close is not None else None,
        },
        "watcher": {"cursor": report.cursor, "lagEvents": report.lag, "scored": report.seen},
        "counts": {
            "decisions": counts.decisions,
            "rewards": counts.rewards,
            "joined": counts.joined,
            "explored": counts.explored,
        },
    }
    body["history"] = history_body(timeline.samples())
    return body
