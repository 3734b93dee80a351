"""Row ↔ value conversion for the SQL stores: the one place their columns become domain values.

JSON columns are written compactly (``separators=(",", ":")``) and with ASCII escapes, so feature
strings holding lone surrogates (valid in JSON, not in UTF-8) still round-trip. Floats are written
with ``repr``, which reads back to the same double, so a decision compares equal after a round
trip.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgspec

from bandit.config import LearningMode, ServiceConfiguration
from bandit.events import (
    MOMENT_VECTORS,
    Action,
    ApprenticeMetrics,
    ApprenticeRecord,
    Checkpoint,
    Decision,
    GuardrailRecord,
    ImitationCounts,
    JoinedEvent,
    ModelRecord,
    MomentSums,
    PendingRetrain,
    PolicySettings,
    RankRequest,
    Reward,
    WatchSettingsRecord,
)
from bandit.guardrail import GuardrailState

Row = Mapping[str, Any]

DECISION_COLUMNS = (
    "event_id",
    "timestamp",
    "request",
    "pmf",
    "chosen_index",
    "greedy_index",
    "model_version",
    "learning_mode",
    "active",
    "activated_at",
    "close_at",
    "explored",
)
"""Columns of ``decisions``: what :func:`decision_params` writes and :func:`decision_from_row`
reads, in this order (rows of the learner's reads are tuples, read by position)."""

DECISION_SELECT = ", ".join(f"d.{c}" for c in DECISION_COLUMNS)
"""The decision columns of a ``decisions d`` query, in :data:`DECISION_COLUMNS` order."""

JOINED_SELECT = f"j.seq, j.reward, j.reward_count, j.defaulted, j.joined_at, {DECISION_SELECT}"
"""The columns :func:`joined_from_row` reads, of ``joined j JOIN decisions d``."""


_encode = msgspec.json.Encoder().encode


def dumps(value: Any) -> str:
    """Compact JSON text of ``value``.

    msgspec is several times faster than ``json`` on the writer's path; strings holding lone
    surrogates (which UTF-8 cannot carry, and which only in-process callers can produce) fall
    back to ``json`` with ASCII escapes.
    """
    try:
        return _encode(value).decode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))


def request_to_json(request: RankRequest) -> str:
    """The JSON text stored for a rank request; :func:`request_from_json` reverses it.

    >>> req = RankRequest(event_id="e", context_features=({"a": 1},), actions=(Action(id="x"),))
    >>> request_from_json(request_to_json(req)) == req
    True
    """
    try:
        # msgspec writes the dataclasses' fields in order, the keys request_from_json reads,
        # with no dicts built first (every rank stores its request).
        return _encode(request).decode()
    except UnicodeEncodeError:
        return dumps(
            {
                "event_id": request.event_id,
                "context_features": list(request.context_features),
                "actions": [{"id": a.id, "features": list(a.features)} for a in request.actions],
                "excluded_action_ids": list(request.excluded_action_ids),
                "defer_activation": request.defer_activation,
                "max_exploration": request.max_exploration,
            }
        )


_decode = msgspec.json.Decoder().decode


def loads(text: str | bytes) -> Any:
    """Decode a JSON column (msgspec: several times faster than ``json`` on the learner's path).

    Text that msgspec refuses (lone surrogates escaped by the ``json`` fallback of
    :func:`dumps`) is read with ``json``.
    """
    try:
        return _decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


RawObject = dict[str, msgspec.Raw]
"""A feature object whose top-level keys are decoded and whose values are left as JSON text."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _RawAction(Action):
    features: tuple[RawObject, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _RawRequest(RankRequest):
    context_features: tuple[RawObject, ...]
    actions: tuple[_RawAction, ...]


_decode_request = msgspec.json.Decoder(RankRequest).decode
_decode_raw_request = msgspec.json.Decoder(_RawRequest).decode


def request_from_json(text: str, *, raw_features: bool = False) -> RankRequest:
    """The rank request stored as ``text`` by :func:`request_to_json`.

    Decoded by msgspec straight into the dataclasses (half the time of building them from
    dicts: the learner decodes every event); text msgspec refuses takes the ``json`` path.

    With ``raw_features`` each feature object's values stay encoded (:data:`RawObject`): the
    namespace keys can be read and dropped, and msgspec writes the values back out verbatim,
    which is all the learner's VW input needs (decoding a request takes about 30% less time).
    Only msgspec can encode such a request, and it compares unequal to the decoded one.

    >>> text = request_to_json(RankRequest(event_id="e", context_features=({"u": {"a": 1}},),
    ...                                    actions=(Action(id="x", features=({"i": [2]},)),)))
    >>> raw = request_from_json(text, raw_features=True)
    >>> bytes(raw.context_features[0]["u"]), bytes(raw.actions[0].features[0]["i"])
    (b'{"a":1}', b'[2]')
    """
    try:
        return _decode_raw_request(text) if raw_features else _decode_request(text)
    except msgspec.DecodeError:
        data = json.loads(text)
    return RankRequest(
        event_id=data["event_id"],
        context_features=tuple(data["context_features"]),
        actions=tuple(Action(id=a["id"], features=tuple(a["features"])) for a in data["actions"]),
        excluded_action_ids=tuple(data["excluded_action_ids"]),
        defer_activation=data["defer_activation"],
        max_exploration=data["max_exploration"],
    )


def decision_params(decision: Decision) -> dict[str, Any]:
    """Named parameters for inserting ``decision`` (keys are :data:`DECISION_COLUMNS`)."""
    return {
        "event_id": decision.event_id,
        "timestamp": float(decision.timestamp),
        "request": request_to_json(decision.request),
        "pmf": dumps(tuple(map(float, decision.pmf))),
        "chosen_index": decision.chosen_index,
        "greedy_index": decision.greedy_index,
        "model_version": decision.model_version,
        "learning_mode": decision.learning_mode.value,
        "active": int(decision.active),
        "activated_at": decision.activated_at,
        "close_at": decision.close_at,
        "explored": int(decision.explored),
    }


_decode_pmf = msgspec.json.Decoder(tuple[float, ...]).decode
"""A stored pmf straight into a tuple of floats (integers such as ``1`` read as ``1.0``)."""

_MODES = {mode.value: mode for mode in LearningMode}
"""Learning modes by stored value (a lookup costs a fraction of ``LearningMode(value)``)."""


def decision_from_row(row: Sequence[Any], *, raw_features: bool = False, at: int = 0) -> Decision:
    """The decision in a row holding :data:`DECISION_COLUMNS` in order from index ``at``
    (``raw_features``: as in :func:`request_from_json`)."""
    (
        event_id,
        timestamp,
        request,
        pmf,
        chosen_index,
        greedy_index,
        model_version,
        learning_mode,
        active,
        activated_at,
        close_at,
        _explored,
    ) = row[at : at + len(DECISION_COLUMNS)]
    return Decision(
        event_id=event_id,
        timestamp=timestamp,
        request=request_from_json(request, raw_features=raw_features),
        pmf=_decode_pmf(pmf),
        chosen_index=chosen_index,
        greedy_index=greedy_index,
        model_version=model_version,
        learning_mode=_MODES[learning_mode],
        active=bool(active),
        activated_at=activated_at,
        close_at=close_at,
    )


REWARD_SELECT = "event_id, value, received_at, request_key"
"""The columns :func:`reward_from_row` reads, of ``rewards``."""


def reward_from_row(row: Sequence[Any]) -> Reward:
    """A reward from a ``rewards`` row holding :data:`REWARD_SELECT`."""
    event_id, value, received_at, request_key = row
    return Reward(event_id=event_id, value=value, received_at=received_at, request_key=request_key)


def joined_from_row(row: Sequence[Any], *, raw_features: bool = False) -> JoinedEvent:
    """A joined event from a row holding :data:`JOINED_SELECT`."""
    seq, reward, reward_count, defaulted, joined_at = row[:5]
    return JoinedEvent(
        decision=decision_from_row(row, raw_features=raw_features, at=5),
        reward=reward,
        reward_count=reward_count,
        defaulted=bool(defaulted),
        joined_at=joined_at,
        seq=seq,
    )


def model_from_row(row: Row) -> ModelRecord:
    """A model record; ``data`` is empty when the row was read without it."""
    return ModelRecord(
        version=row["version"],
        created_at=row["created_at"],
        data=bytes(row.get("data") or b""),
        arguments=row["arguments"],
        learned_count=row["learned_count"],
        cursor=row["cursor"],
        restored_from=row["restored_from"],
    )


def guardrail_from_row(row: Row) -> GuardrailRecord:
    """The guardrail state from its single row."""
    return GuardrailRecord(
        state=GuardrailState(row["state"]),
        since=row["since"],
        reason=row["reason"],
        trips=row["trips"],
        recoveries=row["recoveries"],
    )


def watch_settings_from_row(row: Row) -> WatchSettingsRecord:
    """The saved watch settings from their single row (``guardrail_enabled`` is 0 or 1)."""
    values = {name: row[name] for name in WatchSettingsRecord.__dataclass_fields__}
    return WatchSettingsRecord(**values | {"guardrail_enabled": bool(row["guardrail_enabled"])})


_COUNT_COLUMNS = ("events", "rewards", "imitated_events", "imitated_rewards")
_COUNT_FIELDS = (
    "number_of_events",
    "sum_of_rewards",
    "number_of_imitated_events",
    "sum_of_imitated_rewards",
)
_APPRENTICE_COLUMNS = (
    "start_time",
    "last_processed_event_time",
    *(f"{group}_{name}" for group in ("total", "batch") for name in _COUNT_COLUMNS),
    "evaluated_events",
    "reward_min",
    "reward_max",
    *MOMENT_VECTORS,
)

APPRENTICE_SAVE = (
    f"INSERT OR REPLACE INTO apprentice (id, {', '.join(_APPRENTICE_COLUMNS)}) "
    f"VALUES (1, {', '.join(':' + c for c in _APPRENTICE_COLUMNS)})"
)
"""Replace the apprentice row with :func:`apprentice_params`."""


def apprentice_params(record: ApprenticeRecord) -> dict[str, Any]:
    """The named parameters of :data:`APPRENTICE_SAVE`."""
    m, sums = record.metrics, record.evaluation
    params: dict[str, Any] = {
        "start_time": m.start_time,
        "last_processed_event_time": m.last_processed_event_time,
        "evaluated_events": sums.n,
        "reward_min": sums.rmin,
        "reward_max": sums.rmax,
    }
    for group, counts in (("total", m.total), ("batch", m.last_batch)):
        for column, name in zip(_COUNT_COLUMNS, _COUNT_FIELDS, strict=True):
            params[f"{group}_{column}"] = getattr(counts, name)
    for name in MOMENT_VECTORS:
        values = getattr(sums, name)
        params[name] = struct.pack(f"<{len(values)}d", *values)
    return params


def apprentice_from_row(row: Row) -> ApprenticeRecord:
    """Apprentice mode's record from its single row."""

    def counts(group: str) -> ImitationCounts:
        return ImitationCounts(
            **{
                name: row[f"{group}_{column}"]
                for column, name in zip(_COUNT_COLUMNS, _COUNT_FIELDS, strict=True)
            }
        )

    vectors = {
        name: struct.unpack(f"<{len(row[name]) // 8}d", row[name]) for name in MOMENT_VECTORS
    }
    return ApprenticeRecord(
        metrics=ApprenticeMetrics(
            start_time=row["start_time"],
            last_processed_event_time=row["last_processed_event_time"],
            total=counts("total"),
            last_batch=counts("batch"),
        ),
        evaluation=MomentSums(
            n=row["evaluated_events"], rmin=row["reward_min"], rmax=row["reward_max"], **vectors
        ),
    )


def _floats(blob: bytes) -> tuple[float, ...]:
    """A little-endian float64 array's values."""
    return struct.unpack(f"<{len(blob) // 8}d", blob)


def checkpoint_from_row(row: Row) -> Checkpoint:
    """The learner's checkpoint from its single row."""
    retrain = None
    if row.get("retrain_generation") is not None:
        retrain = PendingRetrain(
            generation=row["retrain_generation"],
            cursor=row["retrain_cursor"],
            since=row["retrain_since"],
            settings=row["retrain_settings"],
        )
    return Checkpoint(
        model=bytes(row["model"]),
        arguments=row["arguments"],
        cursor=row["cursor"],
        learned_count=row["learned_count"],
        updated_at=row["updated_at"],
        retrain=retrain,
    )


def policy_from_row(row: Row) -> PolicySettings:
    """The learning policy from its single row."""
    return PolicySettings(name=row["name"], arguments=row["arguments"])


def config_to_json(config: ServiceConfiguration) -> str:
    """Every field of ``config`` by its Python name; enums by value."""
    return dumps(
        {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(ServiceConfiguration)}
    )


def config_from_json(text: str) -> ServiceConfiguration:
    """The configuration stored by :func:`config_to_json`, validated again.

    Fields missing from ``text`` (stored by an older version) take their defaults; unknown ones
    are ignored.

    >>> config = ServiceConfiguration(reward_wait_time=5.0, learning_mode=LearningMode.APPRENTICE)
    >>> config_from_json(config_to_json(config)) == config
    True
    """
    data = json.loads(text)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ServiceConfiguration):
        if f.name not in data:
            continue
        raw, default = data[f.name], f.default
        if isinstance(default, Enum):
            values[f.name] = type(default)(raw)
        elif isinstance(default, float):
            values[f.name] = float(raw)
        else:
            values[f.name] = raw
    return ServiceConfiguration(**values)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value
