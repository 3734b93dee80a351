"""Scenarios: a world, how long and how fast it runs, and the loop settings it runs under.

Named scenarios cover every environment family; custom ones come from a TOML file
(:func:`load_toml`). Times are virtual seconds: a decision every ``interval``, ``loop.step`` every
``tick``, and the loop's reward wait and model export frequency.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bandit.config import ServiceConfiguration
from bandit.errors import BanditError
from sims.delayed import DelayedEnvironment
from sims.environment import Environment
from sims.linear import LinearEnvironment
from sims.many_actions import ManyActionsEnvironment
from sims.nonlinear import NonLinearEnvironment
from sims.nonstationary import DriftingEnvironment
from sims.presets import PolicySpec, check_policy, parse_policy
from sims.supervised import DigitsEnvironment
from sims.switching import SwitchingEnvironment

FAMILIES: dict[str, Callable[..., Environment]] = {
    "linear": LinearEnvironment,
    "nonlinear": NonLinearEnvironment,
    "nonstationary": DriftingEnvironment,
    "many-actions": ManyActionsEnvironment,
    "digits": DigitsEnvironment,
    "switching": SwitchingEnvironment,
}
"""Environment families by name; ``delayed`` wraps one of these (param ``inner``)."""


def make_environment(family: str, seed: int, params: Mapping[str, Any]) -> Environment:
    """Build an environment of ``family`` with keyword ``params``.

    ``delayed`` takes ``inner`` (a family name, default ``linear``) and ``inner_params``; its other
    params go to :class:`sims.delayed.DelayedEnvironment`.
    """
    if family == "delayed":
        rest = dict(params)
        inner = make_environment(
            str(rest.pop("inner", "linear")), seed, dict(rest.pop("inner_params", {}))
        )
        return DelayedEnvironment(inner=inner, seed=seed, **rest)
    if family not in FAMILIES:
        known = ", ".join([*FAMILIES, "delayed"])
        raise ValueError(f"unknown environment {family!r}; known: {known}")
    return FAMILIES[family](seed=seed, **params)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A world and the loop settings it runs under.

    Attributes:
        name: label in results.
        environment: a family name (see :data:`FAMILIES`, or ``delayed``).
        params: keyword arguments of the environment.
        rounds: number of decisions.
        interval: virtual seconds between decisions.
        tick: virtual seconds between ``loop.step`` calls (join, learn, maybe publish).
        reward_wait_time: the loop's reward window in seconds (≥ 1).
        model_export_frequency: seconds between model publications (≥ 1).
        default_reward: reward learned when none arrives in the window.
        min_propensity: the loop's requested propensity floor.
    """

    name: str
    environment: str
    params: Mapping[str, Any] = field(default_factory=dict)
    rounds: int = 3000
    interval: float = 0.2
    tick: float = 5.0
    reward_wait_time: float = 5.0
    model_export_frequency: float = 10.0
    default_reward: float = 0.0
    min_propensity: float = 0.01

    def build(self, seed: int) -> Environment:
        """The scenario's environment for one seed."""
        return make_environment(self.environment, seed, self.params)

    def config(self, exploration: float) -> ServiceConfiguration:
        """The loop settings with ``explorationPercentage = exploration``."""
        return ServiceConfiguration(
            reward_wait_time=self.reward_wait_time,
            model_export_frequency=self.model_export_frequency,
            default_reward=self.default_reward,
            exploration_percentage=exploration,
            min_propensity=self.min_propensity,
        )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(name="linear", environment="linear"),
        Scenario(name="nonlinear", environment="nonlinear"),
        Scenario(name="drift", environment="nonstationary", params={"period": 6000.0}),
        Scenario(
            name="abrupt", environment="nonstationary", params={"change_at": 1500}, rounds=3000
        ),
        Scenario(
            name="delayed",
            environment="delayed",
            params={"mean_delay": 6.0, "missing": 0.2, "deferred": 0.1},
            reward_wait_time=15.0,
        ),
        Scenario(name="many-actions", environment="many-actions", rounds=2000),
        Scenario(name="digits", environment="digits"),
    )
}


_SCENARIO_KEYS = {f.name for f in fields(Scenario)}


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    """A scenario from a TOML table; ``base = "linear"`` starts from a named scenario."""
    data = dict(data)
    base = data.pop("base", None)
    unknown = set(data) - _SCENARIO_KEYS
    if unknown:
        raise ValueError(f"unknown scenario keys: {', '.join(sorted(unknown))}")
    if base is not None:
        if base not in SCENARIOS:
            raise ValueError(f"unknown base scenario {base!r}")
        merged: dict[str, Any] = {
            f.name: getattr(SCENARIOS[base], f.name) for f in fields(Scenario)
        }
        merged.update(data)
        data = merged
    if "name" not in data or "environment" not in data:
        raise ValueError("a scenario needs a name and an environment (or a base)")
    return Scenario(**data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What a TOML file asks to run."""

    scenarios: tuple[Scenario, ...]
    policies: tuple[PolicySpec, ...]
    seeds: int | None = None


def check_scenario(scenario: Scenario) -> None:
    """Refuse a scenario that cannot run: a world that cannot be built or cannot draw its
    first round (an unknown family or parameter, a parameter out of range), or loop settings
    the service refuses (a reward wait below 1 s, say). Builds it for seed 0.

    Raises:
        ValueError: naming the scenario and the reason.
    """
    try:
        if scenario.rounds < 1:
            raise ValueError(f"rounds must be ≥ 1, got {scenario.rounds}")
        scenario.build(0).round(0)
        scenario.config(ServiceConfiguration().exploration_percentage)
    except BanditError as exc:
        raise ValueError(f"scenario {scenario.name!r}: {exc.message}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scenario {scenario.name!r}: {exc}") from None


def load_toml(path: Path) -> Plan:
    """Read scenarios and policies from a TOML file, every one checked before it is returned.

    The file has ``[[scenario]]`` tables (keys of :class:`Scenario`, with ``[scenario.params]``
    and optional ``base``), ``[[policy]]`` tables (``name``, ``arguments`` or ``preset``,
    ``exploration``) or a ``policies = ["egreedy@0.1", ...]`` list (presets, VW strings or
    names of the file's ``[[policy]]`` tables), and an optional ``seeds``.

    Raises:
        ValueError: the file's name and what is wrong in it (an unknown preset, scenario key
            or environment, VW arguments VW refuses).
        OSError: the file cannot be read.
    """
    with path.open("rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: {exc}") from None
    try:
        scenarios = tuple(scenario_from_dict(s) for s in data.get("scenario", []))
        for scenario in scenarios:
            check_scenario(scenario)
        tables: dict[str, PolicySpec] = {}
        for table in data.get("policy", []):
            if "arguments" in table and "preset" not in table:
                spec = PolicySpec(name=str(table.get("name", table["arguments"])), arguments="")
            else:
                spec = parse_policy(str(table.get("preset", table.get("name"))))
            spec = PolicySpec(
                name=str(table.get("name", spec.name)),
                arguments=str(table.get("arguments", spec.arguments)),
                exploration=float(table.get("exploration", spec.exploration)),
            )
            check_policy(spec)
            tables[spec.name] = spec
        listed = [parse_policy(str(p), tables) for p in data.get("policies", [])]
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    policies = [*listed, *(spec for spec in tables.values() if spec not in listed)]
    seeds = data.get("seeds")
    return Plan(scenarios=scenarios, policies=tuple(policies), seeds=int(seeds) if seeds else None)
