"""Implementations of :class:`bandit.policy.Policy`: Vowpal Wabbit and simple baselines."""

from __future__ import annotations

from bandit.events import PolicySettings
from bandit.policy import PolicyFactory
from policies.baseline import BaselinePolicy, UniformPolicy
from policies.vw import DEFAULT_ARGUMENTS, VWPolicy, validate_arguments

DEFAULT_POLICY = PolicySettings(name="default", arguments=DEFAULT_ARGUMENTS)
"""The learning policy of a new loop, and the one ``DELETE /policy`` goes back to."""


def make_factory(arguments: str, *, epsilon: float) -> PolicyFactory:
    """A factory for the policy an argument string names.

    ``"uniform"`` and ``"baseline"`` name the fixed policies; anything else is a VW
    ``cb_explore_adf`` command line, validated now (raises ``InvalidPolicyConfiguration``).
    """
    name = arguments.strip().lower()
    if name == "uniform":
        return lambda _data: UniformPolicy()
    if name == "baseline":
        return lambda _data: BaselinePolicy()
    validate_arguments(arguments)
    return lambda data: VWPolicy(arguments, epsilon=epsilon, model=data)


__all__ = [
    "DEFAULT_ARGUMENTS",
    "DEFAULT_POLICY",
    "BaselinePolicy",
    "UniformPolicy",
    "VWPolicy",
    "make_factory",
    "validate_arguments",
]
