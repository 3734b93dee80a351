"""A linear world: each action's expected reward is linear in the context.

``μ_k(x) = 0.5 + 0.4·θ_k·x + 0.05·b_k`` with ``x`` and every ``θ_k`` on the unit sphere and
``b_k ∈ [-1, 1]``, so ``μ ∈ [0.05, 0.95]`` without clipping. The context is sent as one numeric
namespace and each action as a categorical id, so VW with ``-q ::`` can represent ``μ`` exactly.
Rewards are Bernoulli(μ).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sims.environment import (
    FloatArray,
    Round,
    bernoulli,
    dense,
    make_request,
    round_rng,
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

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 1_000_003])
        object.__setattr__(self, "theta", unit_vectors(rng, self.n_actions, self.dims))
        object.__setattr__(self, "bias", rng.uniform(-1.0, 1.0, self.n_actions))

    def expected_rewards(self, x: FloatArray, theta: FloatArray | None = None) -> FloatArray:
        """Expected reward of every action for context ``x`` (shape (dims,)); shape (K,)."""
        weights = self.theta if theta is None else theta
        return np.asarray(0.5 + 0.4 * (weights @ x) + 0.05 * self.bias, dtype=np.float64)

    def round(self, t: int) -> Round:
        rng = round_rng(self.seed, t)
        x = unit_vectors(rng, 1, self.dims)[0]
        expected = self.expected_rewards(x)
        return Round(
            index=t,
            request=make_request(
                t,
                [dense("user", x)],
                [(f"a{k}", [{"item": {"id": f"a{k}"}}]) for k in range(self.n_actions)],
            ),
            expected=expected,
            realized=bernoulli(rng, expected),
        )
