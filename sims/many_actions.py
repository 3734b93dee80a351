"""Many actions: a changing set of up to 50 actions drawn from a catalog, some excluded.

Each round offers between ``min_actions`` and ``max_actions`` actions of a ``catalog`` (ids
``c{j}``, each with dense unit features ``a_j``), in random order, and excludes each with
probability ``exclude`` (never all). ``μ(x, a) = 0.5 + 0.4·xᵀMa`` with ``M`` a fixed random
orthogonal matrix, so ``μ ∈ [0.1, 0.9]`` and a learner must generalise through features to
actions it has rarely seen.
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

RANK_LIMIT = 50


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ManyActionsEnvironment:
    """Bernoulli rewards bilinear in context and action features, over changing action sets.

    Args:
        seed: fixes the catalog, ``M`` and every round.
        catalog: number of distinct actions.
        min_actions: fewest actions offered in a round.
        max_actions: most actions offered in a round (≤ 50, the rank limit).
        dims: dimension of contexts and of action features.
        exclude: probability that an offered action is excluded.
    """

    seed: int
    catalog: int = 100
    min_actions: int = 10
    max_actions: int = RANK_LIMIT
    dims: int = 6
    exclude: float = 0.1
    name: str = "many-actions"
    features: FloatArray = field(init=False, repr=False)
    mixing: FloatArray = field(init=False, repr=False)
    actions: tuple[Action, ...] = field(init=False, repr=False)
    draws: Draws = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 2 <= self.min_actions <= self.max_actions <= min(RANK_LIMIT, self.catalog):
            raise ValueError("need 2 ≤ min_actions ≤ max_actions ≤ min(50, catalog)")
        rng = np.random.default_rng([self.seed, 1_000_039])
        object.__setattr__(self, "features", unit_vectors(rng, self.catalog, self.dims))
        q, _ = np.linalg.qr(rng.standard_normal((self.dims, self.dims)))
        object.__setattr__(self, "mixing", np.asarray(q, dtype=np.float64))
        object.__setattr__(
            self,
            "actions",
            actions_of([(f"c{j}", [dense("item", f, "f")]) for j, f in enumerate(self.features)]),
        )
        # Per round: the set size, a shuffle of the catalog, exclusions, rewards, a fallback.
        uniforms = 2 + self.catalog + 2 * self.max_actions
        object.__setattr__(self, "draws", Draws(self.seed, 0, normals=self.dims, uniforms=uniforms))

    def round(self, t: int) -> Round:
        normals, u = self.draws.at(t)
        x = unit_vector(normals)
        span = self.max_actions - self.min_actions + 1
        k = self.min_actions + min(int(u[0] * span), span - 1)
        catalog_end = 2 + self.catalog
        offered = np.argsort(u[2:catalog_end])[:k]
        excluded = u[catalog_end : catalog_end + k] < self.exclude
        if excluded.all():
            excluded[min(int(u[1] * k), k - 1)] = False
        expected = np.asarray(0.5 + 0.4 * (self.features[offered] @ (self.mixing.T @ x)))
        rewards_at = catalog_end + self.max_actions
        return Round(
            index=t,
            request=make_request(
                t,
                [dense("user", x)],
                tuple(self.actions[j] for j in offered),
                [f"c{j}" for j, e in zip(offered, excluded, strict=True) if e],
            ),
            expected=expected.astype(np.float64),
            realized=bernoulli(u[rewards_at : rewards_at + k], expected),
        )
