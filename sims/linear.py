"""A linear world: each action's expected reward is linear in the context.

``μ_k(x) = 0.5 + 0.4·θ_k·x + 0.05·b_k`` with ``x`` and every ``θ_k`` on the unit sphere and
``b_k ∈ [-1, 1]``, so ``μ ∈ [0.05, 0.95]`` without clipping. The context is sent as one numeric
namespace and each action as a categorical id, so VW with ``-q ::`` can represent ``μ`` exactly.
Rewards are Bernoulli(μ).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bandit.events import Action
from sims.environment import (
    Draws,
    FloatArray,
    Round,
    actions_of,
    bernoulli,
    dense,
    make_request,
    unit_vector,
    unit_vectors,
)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LinearEnvironment:
    """Bernoulli rewards with means linear in a ``dims``-dimensional context.

    Args:
        seed: fixes the action parameters and every round.
        n_actions: actions offered each round (≤ 50, the rank limit).
        dims: context dimension.
    """

    seed: int
    n_actions: int = 10
    dims: int = 5
    name: str = "linear"
    theta: FloatArray = field(init=False, repr=False)
    bias: FloatArray = field(init=False, repr=False)
    actions: tuple[Action, ...] = field(init=False, repr=False)
    draws: Draws = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 1_000_003])
        put = object.__setattr__
        put(self, "theta", unit_vectors(rng, self.n_actions, self.dims))
        put(self, "bias", rng.uniform(-1.0, 1.0, self.n_actions))
        put(self, "actions", id_actions(self.n_actions))
        put(self, "draws", Draws(self.seed, 0, normals=self.dims, uniforms=self.n_actions))

    def expected_rewards(self, x: FloatArray, theta: FloatArray | None = None) -> FloatArray:
        """Expected reward of every action for context ``x`` (shape (dims,)); shape (K,)."""
        weights = self.theta if theta is None else theta
        return np.asarray(0.5 + 0.4 * (weights @ x) + 0.05 * self.bias, dtype=np.float64)

    def round(self, t: int) -> Round:
        normals, uniforms = self.draws.at(t)
        x = unit_vector(normals)
        expected = self.expected_rewards(x)
        return Round(
            index=t,
            request=make_request(t, [dense("user", x)], self.actions),
            expected=expected,
            realized=bernoulli(uniforms, expected),
        )


def id_actions(n: int) -> tuple[Action, ...]:
    """``n`` actions ``a0…`` described only by a categorical id (``{"item": {"id": "a3"}}``)."""
    return actions_of([(f"a{k}", [{"item": {"id": f"a{k}"}}]) for k in range(n)])
