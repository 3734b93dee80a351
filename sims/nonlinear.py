"""A non-linear world: expected reward is a small random network of context × action features.

``μ(x, a) = 0.1 + 0.8·σ(v·tanh(W_x x + W_a a + c))`` with a fixed random network (hidden width
16). Actions carry dense features ``a`` (no id), so a learner must generalise through features;
a model linear in (context × action) features cannot represent ``μ`` exactly.
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

_HIDDEN = 16


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NonLinearEnvironment:
    """Bernoulli rewards whose means come from a fixed random one-hidden-layer network.

    Args:
        seed: fixes the network, the action features and every round.
        n_actions: actions offered each round.
        dims: context dimension.
        action_dims: dimension of each action's features.
        scale: steepness of the output; larger makes actions more different.
    """

    seed: int
    n_actions: int = 10
    dims: int = 5
    action_dims: int = 4
    scale: float = 3.0
    name: str = "nonlinear"
    actions: FloatArray = field(init=False, repr=False)
    w_x: FloatArray = field(init=False, repr=False)
    w_a: FloatArray = field(init=False, repr=False)
    c: FloatArray = field(init=False, repr=False)
    v: FloatArray = field(init=False, repr=False)
    offered: tuple[Action, ...] = field(init=False, repr=False)
    draws: Draws = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 1_000_033])
        put = object.__setattr__
        put(self, "actions", unit_vectors(rng, self.n_actions, self.action_dims))
        put(self, "w_x", rng.standard_normal((_HIDDEN, self.dims)) * 1.5)
        put(self, "w_a", rng.standard_normal((_HIDDEN, self.action_dims)) * 1.5)
        put(self, "c", rng.standard_normal(_HIDDEN) * 0.5)
        put(self, "v", rng.standard_normal(_HIDDEN) / np.sqrt(_HIDDEN))
        put(
            self,
            "offered",
            actions_of([(f"a{k}", [dense("item", a, "f")]) for k, a in enumerate(self.actions)]),
        )
        put(self, "draws", Draws(self.seed, 0, normals=self.dims, uniforms=self.n_actions))

    def expected_rewards(self, x: FloatArray) -> FloatArray:
        """Expected reward of every action for context ``x`` (shape (dims,)); shape (K,)."""
        hidden = np.tanh((self.w_x @ x)[None, :] + self.actions @ self.w_a.T + self.c)
        logits = self.scale * (hidden @ self.v)
        return np.asarray(0.1 + 0.8 / (1.0 + np.exp(-logits)), dtype=np.float64)

    def round(self, t: int) -> Round:
        normals, uniforms = self.draws.at(t)
        x = unit_vector(normals)
        expected = self.expected_rewards(x)
        return Round(
            index=t,
            request=make_request(t, [dense("user", x)], self.offered),
            expected=expected,
            realized=bernoulli(uniforms, expected),
        )
