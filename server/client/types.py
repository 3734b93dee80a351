"""What banditd answers, as typed values (with the raw mapping kept where the document is
larger than its typed part), and the functions that read them from decoded JSON.

The request types are the project's own: :class:`bandit.events.RankRequest`,
:class:`bandit.config.ServiceConfiguration`, :class:`bandit.events.PolicySettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bandit.config import ServiceConfiguration, from_wire, to_wire
from bandit.events import PolicySettings

_CONFIG_FIELDS = frozenset(to_wire(ServiceConfiguration()))


@dataclass(frozen=True, slots=True, kw_only=True)
class RankedAction:
    """One action of a ranking and the probability it was served with."""

    id: str
    probability: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RankResponse:
    """A rank answer: the chosen action first in ``ranking``, then the rest in request order.

    Attributes:
        event_id: the event's id (the request's, or the one the client made for it).
        reward_action_id: the chosen action, to show and to reward.
        ranking: every offered action with its probability; the probabilities sum to 1.
    """

    event_id: str
    reward_action_id: str
    ranking: tuple[RankedAction, ...]

    def probabilities(self) -> dict[str, float]:
        """Each action id's probability."""
        return {a.id: a.probability for a in self.ranking}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportResult:
    """What a bulk import did: lines stored, and lines skipped as already stored."""

    imported: int
    skipped: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LearnerStatus:
    """The learner as the trainer last reported it.

    Attributes:
        cursor: the join order position learned up to.
        learned_count: joined events learned since the model was reset.
        lag_events: events decided but not learned yet (waiting for their window or the learner).
        lag_seconds: how long the oldest of them has waited past its window.
    """

    cursor: int
    learned_count: int
    lag_events: int
    lag_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopCounts:
    """Totals the store keeps: decisions logged, rewards taken, events joined, decisions that
    explored (served an action other than the greedy one)."""

    decisions: int
    rewards: int
    joined: int
    explored: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopStatus:
    """``GET /v1/loop/status``: the figures a caller usually needs, and the whole document.

    Attributes:
        model_version: the serving model's version.
        learning_mode: ``Online``, ``Apprentice`` or ``LoggingOnly``.
        serving: ``policy``, or ``baseline`` while the guardrail holds the loop.
        counts: the store's totals.
        learner: the learner's position and lag.
        raw: the decoded document (watch, guardrail, drift, history…).
    """

    model_version: int
    learning_mode: str
    serving: str
    counts: LoopCounts
    learner: LearnerStatus
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """``GET /healthz``.

    Attributes:
        ok: the service answers and its store writes succeed.
        model_version: the version this process serves.
        learner_running: the trainer reported recently and its learner runs.
        learned_count: events learned, as last reported.
        learner_failures: learner steps that failed, as last reported.
        reason: why the service is unavailable (None when ``ok``).
        raw: the decoded document.
    """

    ok: bool
    model_version: int
    learner_running: bool
    learned_count: int
    learner_failures: int
    reason: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersion:
    """A stored model version (``GET /v1/models``); ``raw`` holds its counterfactual scores."""

    version: int
    created_at: datetime
    learned_count: int
    arguments: str
    serving: bool
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelList:
    """The stored model versions, newest first as the server lists them, and the one serving."""

    serving_version: int
    models: tuple[ModelVersion, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelActivation:
    """A roll back: ``version`` is the new version published from ``restored_from``."""

    version: int
    restored_from: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelProperties:
    """When the model was created (reset) and last published; None when unknown."""

    creation_time: datetime | None
    last_modified_time: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogsProperties:
    """The date range of the logged events; None for an empty log."""

    start: datetime | None
    end: datetime | None


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time as banditd writes it (``2026-01-02T03:04:05.678Z``), or None.

    >>> parse_time("1970-01-01T00:00:00.000Z").timestamp()
    0.0
    """
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _time(value: Any) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError(f"expected an ISO-8601 time, got {value!r}")
    return parsed


def rank_response(body: Any) -> RankResponse:
    """A RankResponse body."""
    return RankResponse(
        event_id=str(body["eventId"]),
        reward_action_id=str(body["rewardActionId"]),
        ranking=tuple(
            RankedAction(id=str(r["id"]), probability=float(r["probability"]))
            for r in body["ranking"]
        ),
    )


def service_configuration(body: Any) -> ServiceConfiguration:
    """The ServiceConfiguration a server answered (the read-only fields it adds, such as
    ``lastConfigurationEditDate``, are left out)."""
    return from_wire({k: v for k, v in body.items() if k in _CONFIG_FIELDS})


def policy_settings(body: Any) -> PolicySettings:
    """A PolicyContract body."""
    return PolicySettings(name=str(body["name"]), arguments=str(body["arguments"]))


def import_result(body: Any) -> ImportResult:
    """A bulk import's answer."""
    return ImportResult(imported=int(body["imported"]), skipped=int(body["skipped"]))


def loop_status(body: Any) -> LoopStatus:
    """A ``/v1/loop/status`` document."""
    counts, learner = body["counts"], body["learner"]
    return LoopStatus(
        model_version=int(body["modelVersion"]),
        learning_mode=str(body["learningMode"]),
        serving=str(body["serving"]),
        counts=LoopCounts(
            decisions=int(counts["decisions"]),
            rewards=int(counts["rewards"]),
            joined=int(counts["joined"]),
            explored=int(counts["explored"]),
        ),
        learner=LearnerStatus(
            cursor=int(learner["cursor"]),
            learned_count=int(learner["learnedCount"]),
            lag_events=int(learner["lagEvents"]),
            lag_seconds=float(learner["lagSeconds"]),
        ),
        raw=body,
    )


def health(body: Any) -> Health:
    """A ``/healthz`` document (200 or 503)."""
    learner = body.get("learner") or {}
    return Health(
        ok=body.get("status") == "ok",
        model_version=int(body.get("modelVersion") or 0),
        learner_running=bool(learner.get("running")),
        learned_count=int(learner.get("learnedCount") or 0),
        learner_failures=int(learner.get("failures") or 0),
        reason=body.get("reason"),
        raw=body,
    )


def model_list(body: Any) -> ModelList:
    """A ``/v1/models`` document."""
    return ModelList(
        serving_version=int(body["servingVersion"]),
        models=tuple(
            ModelVersion(
                version=int(m["version"]),
                created_at=_time(m["createdAt"]),
                learned_count=int(m["learnedCount"]),
                arguments=str(m["arguments"]),
                serving=bool(m["serving"]),
                raw=m,
            )
            for m in body["models"]
        ),
    )


def model_activation(body: Any) -> ModelActivation:
    """The answer to ``POST /v1/models/{version}/activate``."""
    return ModelActivation(
        version=int(body["version"]),
        restored_from=int(body["restoredFrom"]),
        created_at=_time(body["createdAt"]),
    )


def model_properties(body: Any) -> ModelProperties:
    """A ModelProperties body."""
    return ModelProperties(
        creation_time=parse_time(body.get("creationTime")),
        last_modified_time=parse_time(body.get("lastModifiedTime")),
    )


def logs_properties(body: Any) -> LogsProperties:
    """A LogsProperties body."""
    dates = body.get("dateRange") or {}
    return LogsProperties(start=parse_time(dates.get("from")), end=parse_time(dates.get("to")))
