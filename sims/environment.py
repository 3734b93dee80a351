"""The ``Environment`` protocol: a simulated world with known expected rewards.

An environment turns a round number into a :class:`Round`: the rank request the application
would send (Personalizer-style feature objects wrapped in a :class:`bandit.events.RankRequest`),
the expected reward of every offered action (so regret is exact), the reward each action would
actually get this round, and when (or whether) that reward is reported.

Every round is a pure function of ``(seed, t)``: the in-process runner, the HTTP runner and every
policy in a sweep see the same contexts and the same realized rewards (common random numbers),
so differences between policies are not noise in the world.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bandit.events import Action, JSONObject, RankRequest

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Round:
    """One simulated interaction, before the policy acts.

    Attributes:
        index: the round number t (0-based).
        request: the rank request the application sends (event id ``str(t)``; runners prefix it).
        expected: expected reward of each offered action in request order, shape (K,).
        realized: the reward showing each action gets this round, shape (K,); the same for every
            policy (common random numbers). ``E[realized] == expected``.
        delay: seconds after the decision at which the reward is reported (≥ 0).
        dropped: the reward is never reported, so the loop learns the default reward.
        activate_after: for a deferred request, seconds after the decision at which the
            application activates the event; None means it never does.
    """

    index: int
    request: RankRequest
    expected: FloatArray
    realized: FloatArray
    delay: float = 0.0
    dropped: bool = False
    activate_after: float | None = None

    def allowed(self) -> npt.NDArray[np.bool_]:
        """Mask of the non-excluded actions, shape (K,)."""
        return ~np.asarray(self.request.excluded_mask(), dtype=bool)

    def best_index(self) -> int:
        """Index of the non-excluded action with the highest expected reward (lowest on ties)."""
        return int(np.argmax(np.where(self.allowed(), self.expected, -np.inf)))

    def best_expected(self) -> float:
        """The expected reward of the best non-excluded action: the oracle's value."""
        return float(self.expected[self.best_index()])


class Environment(Protocol):
    """A seeded world: ``round(t)`` is deterministic for a given construction seed."""

    @property
    def name(self) -> str:
        """The family name, e.g. ``"linear"``."""
        ...

    def round(self, t: int) -> Round:
        """The interaction at round ``t`` (0-based)."""
        ...


def round_rng(seed: int, t: int, stream: int = 0) -> np.random.Generator:
    """An independent generator for one round (and one use) of one seeded environment."""
    return np.random.default_rng([seed, t, stream])


def unit_vectors(rng: np.random.Generator, n: int, dims: int) -> FloatArray:
    """``n`` vectors drawn uniformly on the unit sphere in ``dims`` dimensions, shape (n, dims)."""
    v = rng.standard_normal((n, dims))
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float64)


def dense(namespace: str, values: Sequence[float] | FloatArray, prefix: str = "x") -> JSONObject:
    """A feature object with one namespace of numeric features ``{prefix}{i}``."""
    return {namespace: {f"{prefix}{i}": round(float(v), 6) for i, v in enumerate(values)}}


def bernoulli(rng: np.random.Generator, expected: FloatArray) -> FloatArray:
    """Realized 0/1 rewards with the given means, shape of ``expected``."""
    return np.asarray(rng.random(expected.shape) < expected, dtype=np.float64)


def make_request(
    t: int,
    context: Sequence[JSONObject],
    actions: Sequence[tuple[str, Sequence[JSONObject]]],
    excluded: Sequence[str] = (),
    *,
    defer: bool = False,
) -> RankRequest:
    """Wrap feature objects into the rank request of round ``t`` (event id ``str(t)``)."""
    return RankRequest(
        event_id=str(t),
        context_features=tuple(context),
        actions=tuple(Action(id=i, features=tuple(f)) for i, f in actions),
        excluded_action_ids=tuple(excluded),
        defer_activation=defer,
    )
