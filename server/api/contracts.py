"""Wire types of the configuration, policy, model, log, evaluation and feature-importance
operations, as ``msgspec`` structs: handlers decode with them and ``/openapi.json`` is
generated from them. Field names are Personalizer's (camelCase); limits are its documented ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Id = Annotated[str, Meta(min_length=1, max_length=256)]
Name = Annotated[str, Meta(max_length=256)]
Arguments = Annotated[str, Meta(max_length=1024)]
Duration = Annotated[str, Meta(description="ISO-8601 duration, e.g. PT10M", examples=["PT10M"])]
DateTime = Annotated[
    str, Meta(description="ISO-8601 date-time", extra_json_schema={"format": "date-time"})
]


class Contract(msgspec.Struct, rename="camel", omit_defaults=True):
    """Base of the wire types: camelCase names; absent optional fields are left out."""


class ApprenticeCounts(Contract):
    """Apprentice counts over a set of events."""

    number_of_events: int
    sum_of_rewards: float
    sum_of_imitated_rewards: float
    number_of_imitated_events: int


class ApprenticeModeMetrics(ApprenticeCounts):
    """``latestApprenticeModeMetrics`` (read-only).

    The last six fields are banditd's, present once apprentice events have been evaluated (with
    apprentice exploration): SNIPS estimates of the learned policy's greedy choice and of the
    baseline, and their difference with an anytime-valid 95% interval (null while not
    estimable).
    """

    start_time: DateTime
    last_processed_event_time: DateTime
    last_batch_metrics: ApprenticeCounts | None = None
    evaluated_events: int | None = None
    estimated_policy_value: float | None = None
    estimated_baseline_value: float | None = None
    estimated_improvement: float | None = None
    improvement_lower_bound: float | None = None
    improvement_upper_bound: float | None = None


LearningMode = Literal["Online", "Apprentice", "LoggingOnly"]
Exploration = Annotated[float, Meta(ge=0.0, le=1.0)]


class ServiceConfiguration(Contract):
    """The loop's settings, as served."""

    reward_wait_time: Duration
    default_reward: float
    reward_aggregation: Name
    exploration_percentage: Exploration
    model_export_frequency: Duration
    log_retention_days: Annotated[int, Meta(ge=-1)]
    model_retrain_days: Annotated[int, Meta(ge=0)] | None = None
    learning_mode: LearningMode | None = None
    last_configuration_edit_date: DateTime | None = None
    is_auto_optimization_enabled: bool | None = None
    auto_optimization_frequency: Duration | None = None
    auto_optimization_start_date: DateTime | None = None
    log_mirror_enabled: bool | None = None
    log_mirror_sas_uri: str | None = None
    latest_apprentice_mode_metrics: ApprenticeModeMetrics | None = None
    min_propensity: Exploration | None = None
    apprentice_exploration_percentage: Exploration | None = None
    apprentice_auto_graduate: bool | None = None
    apprentice_graduation_min_events: Annotated[int, Meta(ge=1)] | None = None
    is_inference_explainability_enabled: bool | None = None


class ServiceConfigurationUpdate(Contract, forbid_unknown_fields=True):
    """A change of the loop's settings: the fields of ServiceConfiguration, each optional.

    Personalizer's clients send the whole configuration (it requires the first six fields on
    PUT); banditd also takes a part of it, and every field left out (or null) keeps its current
    value. The read-only fields a client sends back (lastConfigurationEditDate,
    latestApprenticeModeMetrics) are ignored. A field that neither Personalizer nor banditd
    defines is refused, so that a misspelt name is not silently dropped.
    """

    reward_wait_time: Duration | None = None
    default_reward: float | None = None
    reward_aggregation: Name | None = None
    exploration_percentage: Exploration | None = None
    model_export_frequency: Duration | None = None
    log_retention_days: Annotated[int, Meta(ge=-1)] | None = None
    model_retrain_days: Annotated[int, Meta(ge=0)] | None = None
    learning_mode: LearningMode | None = None
    last_configuration_edit_date: DateTime | None = None
    is_auto_optimization_enabled: bool | None = None
    auto_optimization_frequency: Duration | None = None
    auto_optimization_start_date: DateTime | None = None
    log_mirror_enabled: bool | None = None
    log_mirror_sas_uri: str | None = None
    is_inference_explainability_enabled: bool | None = None
    latest_apprentice_mode_metrics: ApprenticeModeMetrics | None = None
    min_propensity: Exploration | None = None
    apprentice_exploration_percentage: Exploration | None = None
    apprentice_auto_graduate: bool | None = None
    apprentice_graduation_min_events: Annotated[int, Meta(ge=1)] | None = None


class PolicyContract(Contract, forbid_unknown_fields=True):
    """Learning settings: a name and a VW ``--cb_explore_adf`` command line (no other field)."""

    name: Name
    arguments: Arguments


class PolicyReferenceContract(Contract):
    """A policy of an evaluation, to apply as the online policy."""

    evaluation_id: Id
    policy_name: Name


class ModelProperties(Contract):
    """Times of the serving model: when its lineage started, when it was last published."""

    creation_time: DateTime | None = None
    last_modified_time: DateTime | None = None


class DateRange(msgspec.Struct, omit_defaults=True):
    """A range of decision times (``from``/``to`` as on the wire)."""

    from_: DateTime | None = msgspec.field(default=None, name="from")
    to: DateTime | None = None


class LogsProperties(Contract):
    """The range of logged (joined) events."""

    date_range: DateRange


class LogsImported(Contract):
    """The outcome of a log import: events stored, and events skipped as stored already."""

    imported: int
    skipped: int


class EvaluationContract(Contract):
    """An offline evaluation request (v1.x ``enableOfflineExperimentation``, 2022
    ``enablePolicyOptimization``)."""

    name: Name
    start_time: DateTime
    end_time: DateTime
    policies: list[PolicyContract] = []
    enable_offline_experimentation: bool | None = None
    enable_policy_optimization: bool | None = None


class FeatureImportanceContract(Contract):
    """A feature-importance request."""

    name: Name
    start_time: DateTime
    end_time: DateTime


class ErrorDetail(Contract):
    """The ``error`` object of every error response."""

    code: str
    message: str
    target: str | None = None
    inner_error: dict[str, Any] | None = msgspec.field(default=None, name="innerError")


class ErrorResponse(Contract):
    """Every error: a high-level code, a message, and the specific code in ``innerError``."""

    error: ErrorDetail
