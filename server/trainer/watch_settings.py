"""Settings of the loop watcher (window, α, guardrail, drift), from the settings file and the API.

In the TOML settings file they sit in a ``[watch]`` table with snake_case keys; on the wire
(``GET``/``PUT /v1/loop/configuration``) the same settings use camelCase. A ``PUT`` is stored
and wins over the file's values from then on, across restarts.

Both forms are decoded by msgspec into one schema (a field per setting, its name and type), so
a wrong type or an unknown name is refused the same way wherever it comes from; the ranges are
the ones :class:`~bandit.watch.WatchSettings`, :class:`~bandit.guardrail.GuardrailSettings`
and :class:`~bandit.drift.DriftSettings` enforce, reported under the name the caller used.

>>> s = from_mapping({"window": 400, "min_events": 150, "margin": 0.05}, wire=False)
>>> (s.watch.window, s.guardrail.min_events, s.guardrail.margin)
(400, 150, 0.05)
>>> to_wire(s)["minEvents"]
150
>>> from_mapping({"window": -5}, wire=False)
Traceback (most recent call last):
...
server.trainer.watch_settings.InvalidWatchSetting: window: must be within 2..10,000,000 events
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import msgspec

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
        history: most points of history kept for the dashboard's charts (1..100,000; they
            cover up to an hour, 1 s apart for the last 5 minutes, 15 s apart before).
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


class InvalidWatchSetting(ValueError):
    """A watch setting is unknown, of the wrong type or out of range.

    Attributes:
        name: the setting as the caller named it (snake_case from the file, camelCase from
            the wire).
        problem: what is wrong with it, in a few words.
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


# (file name, group, attribute, type); the wire name is the file name in camelCase.
_FIELDS: tuple[tuple[str, str, str, type], ...] = (
    ("window", "watch", "window", int),
    ("alpha", "watch", "alpha", float),
    ("guardrail_enabled", "guardrail", "enabled", bool),
    ("margin", "guardrail", "margin", float),
    ("min_events", "guardrail", "min_events", int),
    ("drift_delta", "drift", "delta", float),
    ("drift_threshold", "drift", "threshold", float),
    ("drift_min_events", "drift", "min_events", int),
    ("interval", "", "interval", float),
    ("batch", "", "batch", int),
    ("history", "", "history", int),
)
FILE_NAMES: tuple[str, ...] = tuple(name for name, _, _, _ in _FIELDS)
"""The keys of the ``[watch]`` table, in the order the docs list them."""


_HOLDERS: dict[str, type] = {
    "watch": WatchSettings,
    "guardrail": GuardrailSettings,
    "drift": DriftSettings,
    "": WatcherSettings,
}


def holder(name: str) -> tuple[type, str]:
    """The class that holds the ``[watch]`` key ``name``, and the attribute there (the class's
    docstring describes it, its ``__post_init__`` checks its range).

    >>> holder("drift_min_events")
    (<class 'bandit.drift.DriftSettings'>, 'min_events')
    """
    group, attr = _PLACES[name]
    return _HOLDERS[group], attr


def _schema(name: str, rename: Literal["camel"] | None) -> type[msgspec.Struct]:
    # A setting that is not given stays UNSET, so a change names only what it changes.
    fields = [(f, kind | msgspec.UnsetType, msgspec.UNSET) for f, _, _, kind in _FIELDS]
    return msgspec.defstruct(
        name, fields, rename=rename, frozen=True, forbid_unknown_fields=True, kw_only=True
    )


_FILE = _schema("WatchTable", None)
_WIRE = _schema("WatchChanges", "camel")
_WIRE_NAMES = {f.name: f.encode_name for f in msgspec.structs.fields(_WIRE)}
_PLACES = {name: (group, attr) for name, group, attr, _ in _FIELDS}

_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")


def validation_problem(exc: msgspec.ValidationError) -> tuple[str, str]:
    """Split one of msgspec's validation errors into (where, what): the dotted path of the bad
    value (``""`` for the top level) and the problem, or for an unknown field its path and
    ``"unknown setting"``.

    >>> Table = msgspec.defstruct("Table", [("port", int)], forbid_unknown_fields=True)
    >>> for values in ({"port": "80"}, {"port": 80, "colour": "blue"}):
    ...     try:
    ...         msgspec.convert(values, Table)
    ...     except msgspec.ValidationError as exc:
    ...         print(validation_problem(exc))
    ('port', 'expected `int`, got `str`')
    ('colour', 'unknown setting')
    """
    found = _AT.match(str(exc))
    assert found is not None  # the pattern matches any text
    problem, path = found["problem"], (found["path"] or "").lstrip(".")
    unknown = _UNKNOWN.match(problem)
    if unknown:
        return ".".join(p for p in (path, unknown["name"]) if p), "unknown setting"
    return path, problem[:1].lower() + problem[1:]


def decode(values: object, *, wire: bool, strict: bool = True) -> dict[str, Any]:
    """Type-check watch settings given by name (camelCase when ``wire``), ranges aside.

    Args:
        values: a mapping of setting names to values.
        wire: whether the names are camelCase (the API's) rather than snake_case (the file's).
        strict: whether values must already have their type; when False, strings are parsed
            (``"400"`` for an integer, ``"true"`` for a boolean), as environment variables need.

    Returns:
        The given settings, by file name, with their types (an int given for a float is a float).

    Raises:
        InvalidWatchSetting: an unknown name or a value of the wrong type.
    """
    try:
        given = msgspec.convert(values, _WIRE if wire else _FILE, strict=strict)
    except msgspec.ValidationError as exc:
        where, problem = validation_problem(exc)
        raise InvalidWatchSetting(where or "[watch]", problem) from None
    return {
        name: value
        for name, value in msgspec.structs.asdict(given).items()
        if value is not msgspec.UNSET
    }


def _apply(given: Mapping[str, Any], base: WatcherSettings) -> WatcherSettings:
    groups: dict[str, dict[str, Any]] = {"watch": {}, "guardrail": {}, "drift": {}, "": {}}
    for name, value in given.items():
        group, attr = _PLACES[name]
        groups[group][attr] = value
    return replace(
        base,
        watch=replace(base.watch, **groups["watch"]),
        guardrail=replace(base.guardrail, **groups["guardrail"]),
        drift=replace(base.drift, **groups["drift"]),
        **groups[""],
    )


def from_mapping(
    values: Mapping[str, Any], *, wire: bool, base: WatcherSettings | None = None
) -> WatcherSettings:
    """Validate settings given by name (camelCase when ``wire``), over ``base``.

    Raises:
        InvalidWatchSetting: an unknown name, a value of the wrong type or out of range; its
            ``name`` is the setting as given.
    """
    base = base or WatcherSettings()
    given = decode(values, wire=wire)
    # Each range is checked alone first, so the error names the one setting that is wrong.
    for name, value in given.items():
        try:
            _apply({name: value}, base)
        except ValueError as exc:
            attr = _PLACES[name][1]
            problem = str(exc).removeprefix(f"{attr} ")
            raise InvalidWatchSetting(_WIRE_NAMES[name] if wire else name, problem) from None
    return _apply(given, base)


def to_wire(settings: WatcherSettings) -> dict[str, Any]:
    """The camelCase form served by ``GET /v1/loop/configuration``."""
    return to_mapping(settings, wire=True)


def to_mapping(settings: WatcherSettings, *, wire: bool) -> dict[str, Any]:
    """Every setting by name (camelCase when ``wire``, else the settings file's names, which
    :class:`bandit.events.WatchSettingsRecord` uses too): what :func:`from_mapping` reads."""
    out: dict[str, Any] = {}
    for name, group, attr, _ in _FIELDS:
        holder = getattr(settings, group) if group else settings
        out[_WIRE_NAMES[name] if wire else name] = getattr(holder, attr)
    return out
