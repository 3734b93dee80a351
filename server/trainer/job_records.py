"""Job records (evaluations, feature importances): their stored form, and the Personalizer
wire shapes of evaluations built from them. Edges create and read the records; the trainer runs
the jobs and saves their results (:mod:`server.trainer.job_work`).

Stored: one JSON document per evaluation (a :class:`bandit.events.JobRecord` of kind
``evaluation``), holding each policy's IPS and SNIPS estimates and its 5-minute bucket sums.
Served: the v1.0/v1.1 ``Evaluation`` (``policyResults`` with per-bucket summaries) and the
2022-09-01-preview ``Evaluation`` (``content`` with a time series at the requested interval
and window); both shapes are sent together, with the status spelled for the caller's version.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from bandit.dsjson import iso_time
from bandit.estimators import Estimate
from bandit.evaluation import BUCKET_SECONDS, Bucket, PolicyResult, combine
from bandit.events import JobRecord

KIND = "evaluation"
STATUS_V1 = {
    "Running": "pending",
    "Succeeded": "completed",
    "Failed": "failed",
    "Canceled": "failed",
    "NotSubmitted": "notSubmitted",
}
"""2022 status → v1.x status."""


class StoredEstimate(msgspec.Struct, frozen=True):
    """An estimate with its interval; non-finite values are stored as None."""

    estimate: float | None
    low: float | None
    high: float | None
    std_error: float | None
    ess: float
    n: int


class StoredResult(msgspec.Struct, frozen=True):
    """One evaluated policy."""

    name: str
    arguments: str
    source: str
    ips: StoredEstimate
    snips: StoredEstimate
    buckets: list[tuple[float, int, float, float, float, float, float, int]]


class StoredEvaluation(msgspec.Struct, frozen=True):
    """An evaluation's definition, status and results."""

    id: str
    name: str
    start: float
    end: float
    created: float
    status: str
    policies: list[tuple[str, str]]
    optimize: bool
    online: tuple[str, str] = ("Online", "")
    epsilon: float = 0.2
    min_propensity: float = 0.01
    description: str = ""
    optimal: str | None = None
    events: int = 0
    results: list[StoredResult] = []


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def store_estimate(e: Estimate) -> StoredEstimate:
    """The stored form of an estimate."""
    return StoredEstimate(
        estimate=_finite(e.estimate),
        low=_finite(e.ci_low),
        high=_finite(e.ci_high),
        std_error=_finite(e.std_error),
        ess=e.ess,
        n=e.n,
    )


def store_result(r: PolicyResult) -> StoredResult:
    """The stored form of a policy result."""
    return StoredResult(
        name=r.name,
        arguments=r.arguments,
        source=r.source.value,
        ips=store_estimate(r.ips),
        snips=store_estimate(r.snips),
        buckets=[(b.start, b.n, b.wr, b.w, b.wr2, b.w2, b.wwr, b.nonzero) for b in r.buckets],
    )


def encode(evaluation: StoredEvaluation) -> str:
    """JSON text of a stored evaluation."""
    return msgspec.json.encode(evaluation).decode()


def decode(text: str) -> StoredEvaluation:
    """A stored evaluation from its JSON text."""
    return msgspec.json.decode(text, type=StoredEvaluation)


def _buckets(result: StoredResult) -> list[Bucket]:
    return [
        Bucket(start=s, n=n, wr=wr, w=w, wr2=wr2, w2=w2, wwr=wwr, nonzero=nz)
        for s, n, wr, w, wr2, w2, wwr, nz in result.buckets
    ]


def _interval(e: StoredEstimate) -> list[float | None]:
    return [e.low, e.high]


def _estimate_body(e: StoredEstimate) -> dict[str, Any]:
    return {
        "estimate": e.estimate,
        "confidenceInterval": _interval(e),
        "standardError": e.std_error,
        "effectiveSampleSize": e.ess,
        "numberOfEvents": e.n,
    }


def _summary_v1(b: Bucket, snips: Estimate | None) -> dict[str, Any]:
    half = None
    if snips is not None and math.isfinite(snips.ci_high):
        half = (snips.ci_high - snips.ci_low) / 2
    return {
        "timeStamp": iso_time(b.start + BUCKET_SECONDS),
        "ipsEstimatorNumerator": b.wr,
        "ipsEstimatorDenominator": float(b.n),
        "snipsEstimatorDenominator": b.w,
        "aggregateTimeWindow": "PT5M",
        "nonZeroProbability": float(b.nonzero),
        "confidenceInterval": half,
        "sumOfSquares": b.wr2,
        "averageReward": snips.estimate if snips is not None else None,
    }


def _policy_v1(result: StoredResult) -> dict[str, Any]:
    parts = _buckets(result)
    summaries = []
    for b in parts:
        combined = combine([b])
        summaries.append(_summary_v1(b, combined[1] if combined else None))
    total = Bucket(
        start=parts[-1].start if parts else 0.0,
        n=sum(b.n for b in parts),
        wr=sum(b.wr for b in parts),
        w=sum(b.w for b in parts),
        wr2=sum(b.wr2 for b in parts),
        w2=sum(b.w2 for b in parts),
        wwr=sum(b.wwr for b in parts),
        nonzero=sum(b.nonzero for b in parts),
    )
    overall = combine(parts)
    return {
        "name": result.name,
        "arguments": result.arguments,
        "policySource": result.source,
        "summary": summaries,
        "totalSummary": _summary_v1(total, overall[1] if overall else None),
    }


def _series(
    result: StoredResult, start: float, end: float, interval: int, rolling: bool
) -> list[dict[str, Any]]:
    width = interval * 60.0
    parts = _buckets(result)
    points: list[dict[str, Any]] = []
    t = start
    while t < end and len(points) < 10_000:
        upper = t + width
        lower = t if rolling else start
        chosen = [b for b in parts if b.start + BUCKET_SECONDS > lower and b.start < upper]
        combined = combine(chosen)
        if combined is not None:
            snips = combined[1]
            points.append(
                {
                    "timeStamp": iso_time(upper),
                    "expectedReward": _finite(snips.estimate),
                    "confidenceInterval": [_finite(snips.ci_low), _finite(snips.ci_high)],
                }
            )
        t = upper
    return points


def render(
    evaluation: StoredEvaluation,
    *,
    version: str,
    window: tuple[float, float, int, bool] | None = None,
) -> dict[str, Any]:
    """The Evaluation body for an API version (``v1.0``, ``v1.1`` or ``2022``).

    ``window`` is the 2022 time series' (start, end, interval in minutes, rolling); it defaults
    to the evaluation's own range at 5 minutes, expanding.
    """
    status = evaluation.status if version == "2022" else STATUS_V1.get(evaluation.status, "failed")
    start, end, interval, rolling = window or (evaluation.start, evaluation.end, 5, False)
    body: dict[str, Any] = {
        "id": evaluation.id,
        "name": evaluation.name,
        "startTime": iso_time(evaluation.start),
        "endTime": iso_time(evaluation.end),
        "creationTime": iso_time(evaluation.created),
        "jobId": evaluation.id,
        "status": status,
        "evaluationType": "Manual",
        "description": evaluation.description,
        "featureImportance": [],
        "policyResults": [_policy_v1(r) for r in evaluation.results],
        "content": {
            "startTime": iso_time(start),
            "endTime": iso_time(end),
            "intervalInMinutes": interval,
            "value": [
                {
                    "name": r.name,
                    "arguments": r.arguments,
                    "policySource": r.source,
                    "slotId": "",
                    "summary": {
                        "expectedReward": r.snips.estimate,
                        "confidenceInterval": _interval(r.snips),
                        "ips": _estimate_body(r.ips),
                        "snips": _estimate_body(r.snips),
                    },
                    "timeseries": {"data": _series(r, start, end, interval, rolling)},
                }
                for r in evaluation.results
            ],
        },
    }
    if evaluation.optimal is not None:
        body["optimalPolicy"] = evaluation.optimal
    return body


def render_brief(evaluation: StoredEvaluation) -> dict[str, Any]:
    """The 2022 listing item."""
    return {
        "id": evaluation.id,
        "name": evaluation.name,
        "startTime": iso_time(evaluation.start),
        "endTime": iso_time(evaluation.end),
        "creationTime": iso_time(evaluation.created),
        "status": evaluation.status,
        "evaluationType": "Manual",
    }


def evaluation_record(evaluation: StoredEvaluation) -> JobRecord:
    """The store's record of an evaluation."""
    return JobRecord(
        kind=KIND, id=evaluation.id, created_at=evaluation.created, data=encode(evaluation)
    )


# -- feature importances ------------------------------------------------------------------------

IMPORTANCE_KIND = "featureImportance"


class StoredFeatureScore(msgspec.Struct, frozen=True):
    """One feature's or interaction's score (:class:`bandit.importance.FeatureScore`)."""

    namespaces: list[str]
    names: list[str]
    label: str
    score: float
    drop: float
    interaction: float | None = None
    halves: tuple[float, float] | None = None


class StoredStability(msgspec.Struct, frozen=True):
    """How much the ranking moved between the halves (:class:`bandit.importance.Stability`)."""

    rank_correlation: float | None
    top_k_overlap: float
    k: int
    events: tuple[int, int]


class StoredImportance(msgspec.Struct, frozen=True):
    """A feature-importance job's definition, status and scores.

    ``scores`` holds per-namespace scores of jobs run before features were scored one by one;
    newer jobs fill ``features`` and ``stability`` instead.
    """

    id: str
    name: str
    start: float
    end: float
    created: float
    status: str
    arguments: str
    epsilon: float
    min_propensity: float
    description: str = ""
    scores: list[tuple[str, float, float]] = []
    features: list[StoredFeatureScore] = []
    stability: StoredStability | None = None


def encode_importance(item: StoredImportance) -> str:
    return msgspec.json.encode(item).decode()


def decode_importance(text: str) -> StoredImportance:
    return msgspec.json.decode(text, type=StoredImportance)


def importance_record(item: StoredImportance) -> JobRecord:
    """The store's record of a feature-importance job."""
    return JobRecord(
        kind=IMPORTANCE_KIND, id=item.id, created_at=item.created, data=encode_importance(item)
    )
