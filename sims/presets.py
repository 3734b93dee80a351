"""Policies to compare: VW exploration presets, the fixed policies and the oracle.

A :class:`PolicySpec` names a policy and the service exploration budget ε it runs with
(``explorationPercentage``: the loop's cap on mass off the greedy action, and the ε of ε-greedy,
which :func:`policies.make_factory` writes over any ``--epsilon`` in ε-greedy arguments). So:

* ``greedy`` runs with ε = 0: no exploration at all, neither VW's nor the caps'.
* ``uniform`` runs with ε = 1, so the caps do not pull it towards the first action.
* ``baseline`` and ``oracle`` run with ε = 0: exactly the first action, exactly the best one.
* the other presets run with the service default ε = 0.2 unless a spec says otherwise
  (``name@0.1``); for SquareCB, RegCB-opt, bagging and cover, ε only caps their own exploration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from bandit.config import ServiceConfiguration
from bandit.errors import BanditError
from bandit.policy import PolicyFactory
from policies import DEFAULT_ARGUMENTS, make_factory, validate_arguments
from policies.vw import PERSONALIZER_ARGUMENTS
from sims.environment import Round
from sims.oracle import OraclePolicy

LEARNING = "--cb_type mtr -q ::"
"""Learning options shared by the presets (VW's default learning rate schedule)."""

DEFAULT_EXPLORATION = ServiceConfiguration().exploration_percentage


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySpec:
    """A policy to run: a label, its arguments and the service exploration budget.

    Attributes:
        name: label in results and plots.
        arguments: a VW ``--cb_explore_adf`` command line, or ``uniform``, ``baseline``,
            ``oracle``.
        exploration: the service ``explorationPercentage`` ε in [0, 1] for this run.
    """

    name: str
    arguments: str
    exploration: float = DEFAULT_EXPLORATION


PRESETS: dict[str, PolicySpec] = {
    spec.name: spec
    for spec in (
        PolicySpec(name="default", arguments=DEFAULT_ARGUMENTS),
        PolicySpec(name="personalizer", arguments=PERSONALIZER_ARGUMENTS),
        PolicySpec(
            name="greedy", arguments=f"--cb_explore_adf --epsilon 0 {LEARNING}", exploration=0.0
        ),
        PolicySpec(name="egreedy", arguments=f"--cb_explore_adf --epsilon 0.2 {LEARNING}"),
        PolicySpec(
            name="squarecb", arguments=f"--cb_explore_adf --squarecb --gamma_scale 10 {LEARNING}"
        ),
        PolicySpec(
            name="regcbopt", arguments=f"--cb_explore_adf --regcbopt --mellowness 0.01 {LEARNING}"
        ),
        PolicySpec(name="bag", arguments=f"--cb_explore_adf --bag 5 --greedify {LEARNING}"),
        PolicySpec(name="cover", arguments=f"--cb_explore_adf --cover 3 --psi 0.1 {LEARNING}"),
        PolicySpec(name="uniform", arguments="uniform", exploration=1.0),
        PolicySpec(name="baseline", arguments="baseline", exploration=0.0),
        PolicySpec(name="oracle", arguments="oracle", exploration=0.0),
    )
}


RECOMMENDED = PRESETS["default"]
"""banditd's default, chosen with the sweep evidence in docs/policy-comparison.md."""


FIXED = ("uniform", "baseline", "oracle")
"""Argument strings that name a policy of :mod:`policies.baseline` or the oracle, not VW."""


def parse_policy(text: str, named: Mapping[str, PolicySpec] | None = None) -> PolicySpec:
    """A spec from a preset name, ``name@ε``, or a VW argument string (``args@ε`` also works).

    ``named`` holds more policies a name may refer to (a TOML file's ``[[policy]]`` tables);
    they come before the presets. A name that is neither, nor a VW argument string (one that
    starts with ``--``), is refused, and so is a VW string VW rejects, before anything runs.

    Raises:
        ValueError: an unknown name, an ε outside [0, 1], or invalid VW arguments.

    >>> parse_policy("egreedy@0.05").exploration
    0.05
    >>> parse_policy("--cb_explore_adf --epsilon 0.1 -q ::").name
    '--cb_explore_adf --epsilon 0.1 -q ::'
    >>> parse_policy("sqarecb")
    Traceback (most recent call last):
    ...
    ValueError: unknown policy preset 'sqarecb'; known: default, personalizer, greedy, \
egreedy, squarecb, regcbopt, bag, cover, uniform, baseline, oracle
    """
    named = named or {}
    body, sep, eps = text.rpartition("@")
    if not sep:
        body = text
    body = body.strip()
    spec = named.get(body) or PRESETS.get(body)
    if spec is None:
        if not body.startswith("--"):
            known = ", ".join([*PRESETS, *(n for n in named if n not in PRESETS)])
            raise ValueError(f"unknown policy preset {body!r}; known: {known}")
        spec = PolicySpec(name=body, arguments=body)
    check_policy(spec)
    if sep:
        try:
            epsilon = float(eps)
        except ValueError:
            raise ValueError(f"exploration after '@' must be a number, got {eps!r}") from None
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"exploration must be within [0, 1], got {epsilon}")
        spec = replace(spec, name=f"{spec.name}@{eps.strip()}", exploration=epsilon)
    return spec


def check_policy(spec: PolicySpec) -> None:
    """Refuse a spec whose arguments cannot build a policy, as the policy configuration API
    does (a VW workspace is built from them).

    Raises:
        ValueError: the arguments, named, with VW's or banditd's reason.
    """
    if spec.arguments.strip().lower() in FIXED:
        return
    try:
        validate_arguments(spec.arguments)
    except BanditError as exc:
        raise ValueError(f"policy {spec.name!r}: {exc.message}") from None


def policy_factory(spec: PolicySpec, rounds: dict[str, Round]) -> PolicyFactory:
    """The factory the loop builds its learner and serving policies with.

    Args:
        spec: the policy to build.
        rounds: the runner's registry of rounds (event id → round), read by the oracle only.
    """
    if spec.arguments.strip().lower() == "oracle":
        return lambda _data: OraclePolicy(rounds)
    return make_factory(spec.arguments, epsilon=spec.exploration)
