"""Service configuration: Personalizer's loop settings plus banditd's own.

Values are validated once, here, into a frozen :class:`ServiceConfiguration`. Durations are held
in seconds and written as ISO-8601 durations on the wire (``PT10M``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from bandit.errors import (
    InvalidLearningModeServiceConfiguration,
    InvalidLogRetentionDays,
    InvalidRewardWaitTime,
    InvalidServiceConfiguration,
)

E = TypeVar("E", bound=StrEnum)

DAY = 86_400.0
MIN_REWARD_WAIT = 1.0
"""Smallest reward wait in seconds. Personalizer documents 5 s; banditd allows 1 s for tests."""
MAX_REWARD_WAIT = 2 * DAY
MIN_EXPORT_FREQUENCY = 1.0
MAX_EXPORT_FREQUENCY = 30 * DAY

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


class Aggregation(StrEnum):
    """How several rewards for one event combine."""

    EARLIEST = "earliest"
    SUM = "sum"


class LearningMode(StrEnum):
    """What the loop serves and whether it learns (DESIGN §3)."""

    ONLINE = "Online"
    APPRENTICE = "Apprentice"
    LOGGING_ONLY = "LoggingOnly"


def parse_duration(text: str) -> float:
    """Parse an ISO-8601 duration of days, hours, minutes and seconds into seconds.

    >>> parse_duration("PT10M")
    600.0
    >>> parse_duration("P1DT1.5S")
    86401.5
    """
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None:
        raise InvalidServiceConfiguration(f"{text!r} is not an ISO-8601 duration such as 'PT10M'.")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    seconds = (
        parts.get("days", 0.0) * DAY
        + parts.get("hours", 0.0) * 3600
        + parts.get("minutes", 0.0) * 60
        + parts.get("seconds", 0.0)
    )
    return seconds


def format_duration(seconds: float) -> str:
    """Write seconds as the shortest ISO-8601 duration.

    >>> format_duration(600)
    'PT10M'
    >>> format_duration(90061.5)
    'P1DT1H1M1.5S'
    """
    if not math.isfinite(seconds):
        raise ValueError(f"cannot write {seconds} seconds as a duration")
    if seconds <= 0:
        return "PT0S"
    days, rest = divmod(seconds, DAY)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P"
    if days:
        out += f"{int(days)}D"
    time_part = ""
    if hours:
        time_part += f"{int(hours)}H"
    if minutes:
        time_part += f"{int(minutes)}M"
    if secs:
        time_part += f"{secs:.6f}".rstrip("0").rstrip(".") + "S"
    return out + ("T" + time_part if time_part else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfiguration:
    """The loop's settings, validated.

    Attributes:
        reward_wait_time: seconds a reward may arrive after activation; the join waits this long.
        default_reward: reward of an event that got none within the window.
        reward_aggregation: how several rewards for one event combine.
        exploration_percentage: the exploration budget ε in [0, 1]; also the ε of ε-greedy.
        model_export_frequency: seconds between model publications.
        log_retention_days: days logs are kept, or -1 to keep them forever.
        learning_mode: what is served and whether it learns.
        min_propensity: the propensity floor requested for every offered action (DESIGN §2.4).
        model_retrain_days: days of logs replayed when a settings change retrains the model.
        reward_min: smallest accepted reward value.
        reward_max: largest accepted reward value.
        apprentice_exploration: banditd extension, in [0, 1]: in Apprentice mode the baseline is
            served with probability 1 − this and the rest is spread over the other actions, so
            the logs can value the learned policy against the baseline (0: Personalizer's
            behaviour, the baseline always).
        apprentice_auto_graduate: banditd extension: switch from Apprentice to Online by itself
            once the learned policy is confidently better than the baseline (DESIGN §3).
        apprentice_graduation_min_events: banditd extension, ≥ 1: apprentice events that must be
            evaluated before a graduation; the confidence sequence is tightest there.
        inference_explainability: Personalizer's ``isInferenceExplainabilityEnabled``: every rank
            response carries the chosen action's per-feature scores (docs/explanations.md).
    """

    reward_wait_time: float = 600.0
    default_reward: float = 0.0
    reward_aggregation: Aggregation = Aggregation.EARLIEST
    exploration_percentage: float = 0.2
    model_export_frequency: float = 300.0
    log_retention_days: int = 90
    learning_mode: LearningMode = LearningMode.ONLINE
    min_propensity: float = 0.01
    model_retrain_days: int = 2
    reward_min: float = -1.0
    reward_max: float = 1.0
    apprentice_exploration: float = 0.0
    apprentice_auto_graduate: bool = False
    apprentice_graduation_min_events: int = 1000
    inference_explainability: bool = False

    def __post_init__(self) -> None:
        if not MIN_REWARD_WAIT <= self.reward_wait_time <= MAX_REWARD_WAIT:
            raise InvalidRewardWaitTime(
                f"rewardWaitTime must be between {MIN_REWARD_WAIT:g} s and 2 days, "
                f"got {_describe(self.reward_wait_time)}.",
                target="rewardWaitTime",
            )
        _check_finite("defaultReward", self.default_reward)
        _check_finite("explorationPercentage", self.exploration_percentage)
        _check_finite("minPropensity", self.min_propensity)
        _check_finite("apprenticeExplorationPercentage", self.apprentice_exploration)
        if not self.reward_min <= self.default_reward <= self.reward_max:
            raise InvalidServiceConfiguration(
                f"defaultReward must be within [{self.reward_min:g}, {self.reward_max:g}].",
                target="defaultReward",
            )
        if not 0.0 <= self.exploration_percentage <= 1.0:
            raise InvalidServiceConfiguration(
                "explorationPercentage must be within [0, 1].", target="explorationPercentage"
            )
        if not 0.0 <= self.min_propensity <= 1.0:
            raise InvalidServiceConfiguration(
                "minPropensity must be within [0, 1].", target="minPropensity"
            )
        if not 0.0 <= self.apprentice_exploration <= 1.0:
            raise InvalidServiceConfiguration(
                "apprenticeExplorationPercentage must be within [0, 1].",
                target="apprenticeExplorationPercentage",
            )
        if not isinstance(self.apprentice_auto_graduate, bool):
            raise InvalidServiceConfiguration(
                "apprenticeAutoGraduate must be true or false.", target="apprenticeAutoGraduate"
            )
        if (
            isinstance(self.apprentice_graduation_min_events, bool)
            or not isinstance(self.apprentice_graduation_min_events, int)
            or self.apprentice_graduation_min_events < 1
        ):
            raise InvalidServiceConfiguration(
                "apprenticeGraduationMinEvents must be an integer of at least 1.",
                target="apprenticeGraduationMinEvents",
            )
        if not MIN_EXPORT_FREQUENCY <= self.model_export_frequency <= MAX_EXPORT_FREQUENCY:
            raise InvalidServiceConfiguration(
                f"modelExportFrequency must be between {MIN_EXPORT_FREQUENCY:g} s and 30 days.",
                target="modelExportFrequency",
            )
        min_days = math.ceil(self.reward_wait_time / DAY + 1)
        if self.log_retention_days != -1 and self.log_retention_days < min_days:
            raise InvalidLogRetentionDays(
                f"logRetentionDays must be -1 or at least {min_days} "
                "(the reward wait time plus one day, rounded up).",
                target="logRetentionDays",
            )
        if self.model_retrain_days < 0:
            raise InvalidServiceConfiguration(
                "modelRetrainDays must not be negative.", target="modelRetrainDays"
            )
        if not self.reward_min < self.reward_max:
            raise InvalidServiceConfiguration("the reward range is empty.")

    def replace(self, **changes: Any) -> ServiceConfiguration:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes)

    def reward_settings(self) -> tuple[float, float, Aggregation]:
        """The settings whose change resets the model in Personalizer."""
        return (self.reward_wait_time, self.default_reward, self.reward_aggregation)

    def check_change(self, new: ServiceConfiguration) -> None:
        """Reject a change of learning mode made together with a change of reward settings."""
        if new.learning_mode != self.learning_mode and new.reward_settings() != (
            self.reward_settings()
        ):
            raise InvalidLearningModeServiceConfiguration(
                "learningMode cannot change in the same request as rewardWaitTime, "
                "defaultReward or rewardAggregation; make two requests.",
                target="learningMode",
            )


def _describe(seconds: float) -> str:
    return format_duration(seconds) if math.isfinite(seconds) else str(seconds)


def _check_finite(name: str, value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidServiceConfiguration(f"{name} must be a finite number.", target=name)


def to_wire(config: ServiceConfiguration) -> dict[str, Any]:
    """The Personalizer JSON form (camelCase, durations as ISO-8601)."""
    return {
        "rewardWaitTime": format_duration(config.reward_wait_time),
        "defaultReward": config.default_reward,
        "rewardAggregation": config.reward_aggregation.value,
        "explorationPercentage": config.exploration_percentage,
        "modelExportFrequency": format_duration(config.model_export_frequency),
        "logRetentionDays": config.log_retention_days,
        "learningMode": config.learning_mode.value,
        "modelRetrainDays": config.model_retrain_days,
        "minPropensity": config.min_propensity,
        "apprenticeExplorationPercentage": config.apprentice_exploration,
        "apprenticeAutoGraduate": config.apprentice_auto_graduate,
        "apprenticeGraduationMinEvents": config.apprentice_graduation_min_events,
        "isInferenceExplainabilityEnabled": config.inference_explainability,
    }


_REQUIRED = (
    "rewardWaitTime",
    "defaultReward",
    "rewardAggregation",
    "explorationPercentage",
    "modelExportFrequency",
    "logRetentionDays",
)


def from_wire(
    body: Any, *, base: ServiceConfiguration | None = None, require_all: bool = True
) -> ServiceConfiguration:
    """Validate a Personalizer ServiceConfiguration object.

    Args:
        body: the decoded JSON body.
        base: the configuration that fields absent from ``body`` keep (defaults when None).
        require_all: require every field Personalizer marks as required on PUT.

    Raises:
        InvalidServiceConfiguration: a field is missing, of the wrong type, or out of range.
    """
    if not isinstance(body, dict):
        raise InvalidServiceConfiguration("the service configuration must be a JSON object.")
    if require_all:
        missing = [k for k in _REQUIRED if k not in body]
        if missing:
            raise InvalidServiceConfiguration(
                f"missing required field(s): {', '.join(missing)}.", target=missing[0]
            )
    base = base or ServiceConfiguration()
    changes: dict[str, Any] = {}
    try:
        if "rewardWaitTime" in body:
            changes["reward_wait_time"] = _duration_field(body, "rewardWaitTime")
        if "modelExportFrequency" in body:
            changes["model_export_frequency"] = _duration_field(body, "modelExportFrequency")
        if "defaultReward" in body:
            changes["default_reward"] = _number(body, "defaultReward")
        if "explorationPercentage" in body:
            changes["exploration_percentage"] = _number(body, "explorationPercentage")
        if "minPropensity" in body:
            changes["min_propensity"] = _number(body, "minPropensity")
        if "rewardAggregation" in body:
            changes["reward_aggregation"] = _choice(body, "rewardAggregation", Aggregation)
        if "learningMode" in body and body["learningMode"] is not None:
            changes["learning_mode"] = _choice(body, "learningMode", LearningMode)
        if "logRetentionDays" in body:
            changes["log_retention_days"] = _integer(body, "logRetentionDays")
        if body.get("modelRetrainDays") is not None:
            changes["model_retrain_days"] = _integer(body, "modelRetrainDays")
        if body.get("apprenticeExplorationPercentage") is not None:
            changes["apprentice_exploration"] = _number(body, "apprenticeExplorationPercentage")
        if body.get("apprenticeAutoGraduate") is not None:
            changes["apprentice_auto_graduate"] = _boolean(body, "apprenticeAutoGraduate")
        if body.get("apprenticeGraduationMinEvents") is not None:
            changes["apprentice_graduation_min_events"] = _integer(
                body, "apprenticeGraduationMinEvents"
            )
        if body.get("isInferenceExplainabilityEnabled") is not None:
            changes["inference_explainability"] = _boolean(body, "isInferenceExplainabilityEnabled")
    except ValueError as exc:
        raise InvalidServiceConfiguration(str(exc)) from exc
    return base.replace(**changes)


def _duration_field(body: dict[str, Any], name: str) -> float:
    value = body[name]
    if not isinstance(value, str):
        raise InvalidServiceConfiguration(
            f"{name} must be an ISO-8601 duration string.", target=name
        )
    return parse_duration(value)


def _number(body: dict[str, Any], name: str) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidServiceConfiguration(f"{name} must be a number.", target=name)
    return float(value)


def _integer(body: dict[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidServiceConfiguration(f"{name} must be an integer.", target=name)
    return value


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body[name]
    if not isinstance(value, bool):
        raise InvalidServiceConfiguration(f"{name} must be true or false.", target=name)
    return value


def _choice(body: dict[str, Any], name: str, kind: type[E]) -> E:
    """The member of ``kind`` that ``body[name]`` names, in any case.

    >>> _choice({"rewardAggregation": "SUM"}, "rewardAggregation", Aggregation)
    <Aggregation.SUM: 'sum'>
    >>> _choice({"learningMode": "Sometimes"}, "learningMode", LearningMode)
    Traceback (most recent call last):
    ...
    bandit.errors.InvalidServiceConfiguration: learningMode must be one of Online, Apprentice, \
LoggingOnly; got 'Sometimes'.
    """
    value = body[name]
    for member in kind:
        if isinstance(value, str) and value.lower() == member.value.lower():
            return member
    raise InvalidServiceConfiguration(
        f"{name} must be one of {', '.join(m.value for m in kind)}; got {value!r}.", target=name
    )
