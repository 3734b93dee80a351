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

import math
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
        if not self.request.excluded_action_ids:
            return int(np.argmax(self.expected))
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


class Draws:
    """The random numbers of every round of one seeded stream, drawn a block of rounds at a time.

    ``at(t)`` is a pure function of ``(seed, stream, t)``: round ``t`` reads row ``t % block`` of
    the arrays drawn from ``default_rng([seed, t // block, stream])``. Drawing a block at once
    costs far less per round than seeding a generator per round; the last block is memoised.

    Args:
        seed: the environment's seed.
        stream: separates independent uses of randomness within one environment.
        normals: standard normals per round.
        uniforms: uniforms in [0, 1) per round.
        block: rounds per block.
    """

    def __init__(
        self, seed: int, stream: int, *, normals: int, uniforms: int, block: int = 256
    ) -> None:
        self._key = (seed, stream)
        self._shape = (block, normals, uniforms)
        self._block = -1
        self._normals = np.zeros((0, normals))
        self._uniforms = np.zeros((0, uniforms))

    def at(self, t: int) -> tuple[FloatArray, FloatArray]:
        """(normals, uniforms) of round ``t``, shapes (normals,) and (uniforms,)."""
        size, normals, uniforms = self._shape
        block, row = divmod(t, size)
        if block != self._block:
            seed, stream = self._key
            rng = np.random.default_rng([seed, block, stream])
            self._normals = rng.standard_normal((size, normals))
            self._uniforms = rng.random((size, uniforms))
            self._block = block
        return self._normals[row], self._uniforms[row]


def unit_vector(normals: FloatArray) -> FloatArray:
    """A uniform draw on the unit sphere from a vector of standard normals (same shape)."""
    return np.asarray(normals / math.sqrt(float(normals @ normals)), dtype=np.float64)


def unit_vectors(rng: np.random.Generator, n: int, dims: int) -> FloatArray:
    """``n`` vectors drawn uniformly on the unit sphere in ``dims`` dimensions, shape (n, dims)."""
    v = rng.standard_normal((n, dims))
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float64)


def bernoulli(uniforms: FloatArray, expected: FloatArray) -> FloatArray:
    """Realized 0/1 rewards with the given means from uniforms of the same shape."""
    return np.asarray(uniforms < expected, dtype=np.float64)


def actions_of(actions: Sequence[tuple[str, Sequence[JSONObject]]]) -> tuple[Action, ...]:
    """Action values from (id, feature objects) pairs."""
    return tuple(Action(id=i, features=tuple(f)) for i, f in actions)


def dense(namespace: str, values: Sequence[float] | FloatArray, prefix: str = "x") -> JSONObject:
    """A feature object with one namespace of numeric features ``{prefix}{i}`` (6 decimals)."""
    rounded: list[float] = np.round(np.asarray(values, dtype=np.float64), 6).tolist()
    return {namespace: {f"{prefix}{i}": v for i, v in enumerate(rounded)}}


def make_request(
    t: int,
    context: Sequence[JSONObject],
    actions: tuple[Action, ...],
    excluded: Sequence[str] = (),
    *,
    defer: bool = False,
) -> RankRequest:
    """Wrap feature objects into the rank request of round ``t`` (event id ``str(t)``)."""
    return RankRequest(
        event_id=str(t),
        context_features=tuple(context),
        actions=actions,
        excluded_action_ids=tuple(excluded),
        defer_activation=defer,
    )
