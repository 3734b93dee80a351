"""A non-stationary world: the linear world whose action parameters drift and change abruptly.

Drift: each ``θ_k(t) = cos(2πt/period)·A_k + sin(2πt/period)·B_k`` with ``A_k ⊥ B_k`` unit
vectors, so ``θ_k`` stays on the unit sphere and the best action for a context keeps changing.
Abrupt change: from round ``change_at`` on, ``A`` and ``B`` are replaced by a fresh draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sims.environment import (
    FloatArray,
    Round,
    bernoulli,
    dense,
    make_request,
    unit_vector,
    unit_vectors,
)
from sims.linear import LinearEnvironment


def _orthonormal_pairs(
    rng: np.random.Generator, n: int, dims: int
) -> tuple[FloatArray, FloatArray]:
    a = unit_vectors(rng, n, dims)
    b = rng.standard_normal((n, dims))
    b -= np.sum(a * b, axis=1, keepdims=True) * a
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return a, np.asarray(b, dtype=np.float64)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DriftingEnvironment:
    """The linear world with rotating parameters and an optional abrupt change.

    Args:
        seed: fixes every parameter and every round.
        n_actions: actions offered each round.
        dims: context dimension.
        period: rounds for one full rotation of every ``θ_k``; None for no drift.
        change_at: the round from which parameters are redrawn; None for no abrupt change.
    """

    seed: int
    n_actions: int = 10
    dims: int = 5
    period: float | None = None
    change_at: int | None = None
    name: str = "nonstationary"
    base: LinearEnvironment = field(init=False, repr=False)
    before: tuple[FloatArray, FloatArray] = field(init=False, repr=False)
    after: tuple[FloatArray, FloatArray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 1_000_037])
        object.__setattr__(
            self,
            "base",
            LinearEnvironment(seed=self.seed, n_actions=self.n_actions, dims=self.dims),
        )
        object.__setattr__(self, "before", _orthonormal_pairs(rng, self.n_actions, self.dims))
        object.__setattr__(self, "after", _orthonormal_pairs(rng, self.n_actions, self.dims))

    def theta(self, t: int) -> FloatArray:
        """The action parameters in force at round ``t``, shape (K, dims), unit rows."""
        a, b = self.after if self.change_at is not None and t >= self.change_at else self.before
        if self.period is None:
            return a
        angle = 2.0 * math.pi * t / self.period
        return np.asarray(math.cos(angle) * a + math.sin(angle) * b, dtype=np.float64)

    def round(self, t: int) -> Round:
        normals, uniforms = self.base.draws.at(t)
        x = unit_vector(normals)
        expected = self.base.expected_rewards(x, self.theta(t))
        return Round(
            index=t,
            request=make_request(t, [dense("user", x)], self.base.actions),
            expected=expected,
            realized=bernoulli(uniforms, expected),
        )
