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

from sims.environment import (
    FloatArray,
    Round,
    bernoulli,
    dense,
    make_request,
    round_rng,
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

    def __post_init__(self) -> None:
        if not 2 <= self.min_actions <= self.max_actions <= min(RANK_LIMIT, self.catalog):
            raise ValueError("need 2 ≤ min_actions ≤ max_actions ≤ min(50, catalog)")
        rng = np.random.default_rng([self.seed, 1_000_039])
        object.__setattr__(self, "features", unit_vectors(rng, self.catalog, self.dims))
        q, _ = np.linalg.qr(rng.standard_normal((self.dims, self.dims)))
        object.__setattr__(self, "mixing", np.asarray(q, dtype=np.float64))

    def round(self, t: int) -> Round:
        rng = round_rng(self.seed, t)
        x = unit_vectors(rng, 1, self.dims)[0]
        k = int(rng.integers(self.min_actions, self.max_actions + 1))
        offered = rng.choice(self.catalog, size=k, replace=False)
        excluded = rng.random(k) < self.exclude
        if excluded.all():
            excluded[int(rng.integers(k))] = False
        expected = np.asarray(0.5 + 0.4 * (self.features[offered] @ (self.mixing.T @ x)))
        return Round(
            index=t,
            request=make_request(
                t,
                [dense("user", x)],
                [(f"c{j}", [dense("item", self.features[j], "f")]) for j in offered],
                [f"c{j}" for j, e in zip(offered, excluded, strict=True) if e],
            ),
            expected=expected.astype(np.float64),
            realized=bernoulli(rng, expected),
        )
