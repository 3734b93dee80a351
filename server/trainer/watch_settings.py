"""Settings of the loop watcher (window, α, guardrail, drift), from the settings file and the API.

In the TOML settings file they sit in a ``[watch]`` table with snake_case keys; on the wire
(``GET``/``PUT /v1/loop/configuration``) the same settings use camelCase. A ``PUT`` is stored
and wins over the file's values from then on, across restarts.

>>> s = from_mapping({"window": 400, "min_events": 150, "margin": 0.05}, wire=False)
>>> (s.watch.window, s.guardrail.min_events, s.guardrail.margin)
(400, 150, 0.05)
>>> to_wire(s)["minEvents"]
150
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bandit.drift import DriftSettings
from bandit.guardrail import GuardrailSettings
from bandit.watch import WatchSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class WatcherSettings:
    """Everything the watcher is told.

    Attributes:
        watch: the window and the confidence level.
        guardrail: when serving falls back to the baseline and returns.
        drift: the Page–Hinkley test's parameters.
        interval: seconds the watcher waits between rounds when it has caught up (> 0).
        batch: joined events scored per round (1..100,000).
        history: points of history kept for the dashboard's charts (1..100,000).
    """

    watch: WatchSettings = field(default_factory=WatchSettings)
    guardrail: GuardrailSettings = field(default_factory=GuardrailSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    interval: float = 0.5
    batch: int = 2048
    history: int = 600

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval) and 0.0 < self.interval <= 3600.0):
            raise ValueError("interval must be within (0, 3600] seconds")
        if not 1 <= self.batch <= 100_000:
            raise ValueError("batch must be within 1..100,000")
        if not 1 <= self.history <= 100_000:
            raise ValueError("history must be within 1..100,000")


# (wire name, file name, group, attribute, type)
_FIELDS: tuple[tuple[str, str, str, str, type], ...] = (
    ("window", "window", "watch", "window", int),
    ("alpha", "alpha", "watch", "alpha", float),
    ("guardrailEnabled", "guardrail_enabled", "guardrail", "enabled", bool),
    ("margin", "margin", "guardrail", "margin", float),
    ("minEvents", "min_events", "guardrail", "min_events", int),
    ("driftDelta", "drift_delta", "drift", "delta", float),
    ("driftThreshold", "drift_threshold", "drift", "threshold", float),
    ("driftMinEvents", "drift_min_events", "drift", "min_events", int),
    ("interval", "interval", "", "interval", float),
    ("batch", "batch", "", "batch", int),
    ("history", "history", "", "history", int),
)


def _typed(name: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name} must be an integer")
        return int(value)
    return float(value)


def from_mapping(
    values: Mapping[str, Any], *, wire: bool, base: WatcherSettings | None = None
) -> WatcherSettings:
    """Validate settings given by name (camelCase when ``wire``), over ``base``.

    Raises:
        ValueError: an unknown name, a value of the wrong type or out of range; the message
            names the setting.
    """
    base = base or WatcherSettings()
    names = {(w if wire else f): (group, attr, kind) for w, f, group, attr, kind in _FIELDS}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown watch setting(s): {', '.join(unknown)}")
    groups: dict[str, dict[str, Any]] = {"watch": {}, "guardrail": {}, "drift": {}, "": {}}
    for name, value in values.items():
        group, attr, kind = names[name]
        groups[group][attr] = _typed(name, value, kind)
    try:
        return replace(
            base,
            watch=replace(base.watch, **groups["watch"]),
            guardrail=replace(base.guardrail, **groups["guardrail"]),
            drift=replace(base.drift, **groups["drift"]),
            **groups[""],
        )
    except ValueError as exc:
        raise ValueError(f"invalid watch settings: {exc}") from exc


def to_wire(settings: WatcherSettings) -> dict[str, Any]:
    """The camelCase form served by ``GET /v1/loop/configuration``."""
    return to_mapping(settings, wire=True)


def to_mapping(settings: WatcherSettings, *, wire: bool) -> dict[str, Any]:
    """Every setting by name (camelCase when ``wire``, else the settings file's names, which
    :class:`bandit.events.WatchSettingsRecord` uses too): what :func:`from_mapping` reads."""
    out: dict[str, Any] = {}
    for wire_name, file_name, group, attr, _ in _FIELDS:
        holder = getattr(settings, group) if group else settings
        out[wire_name if wire else file_name] = getattr(holder, attr)
    return out
