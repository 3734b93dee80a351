"""A world whose best actions switch at a known round, so a learned policy goes stale.

``n_users`` user types (the context is one categorical feature, ``{"user": {"type": "u1"}}``) and
``n_actions`` actions ``a0…``; ``a0`` is offered first, so it is the baseline. Before
``change_at`` user type ``u`` does best with ``a_{1 + u mod (K−1)}``, from then on with
``a_{1 + (u + 1) mod (K−1)}``. The best action pays ``p_best``, the baseline ``p_baseline`` and
every other action ``p_other`` (Bernoulli rewards).

With ``p_other < p_baseline < p_best``, a policy that learned the first world beats the baseline
there, is worse than the baseline once the world switches, and beats it again once it has
relearned: the story a guardrail must get right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bandit.events import Action
from sims.environment import Draws, Round, bernoulli, make_request
from sims.linear import id_actions


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SwitchingEnvironment:
    """Per-user best actions that switch at round ``change_at``.

    Args:
        seed: fixes every round (which user comes, which rewards are realized).
        n_users: user types, drawn uniformly each round (≥ 1).
        n_actions: actions offered each round (≥ 2; ``a0`` is the baseline).
        change_at: the first round of the second world; None for a world that never switches.
        p_best: expected reward of the user's best action.
        p_baseline: expected reward of ``a0``.
        p_other: expected reward of every other action.

    >>> env = SwitchingEnvironment(seed=1, n_users=2, n_actions=3, change_at=10)
    >>> env.best_index(0, 0), env.best_index(0, 10), env.best_index(1, 0), env.best_index(1, 10)
    (1, 2, 2, 1)
    >>> [float(p) for p in env.round(3).expected] in ([0.5, 1.0, 0.0], [0.5, 0.0, 1.0])
    True
    """

    seed: int
    n_users: int = 2
    n_actions: int = 3
    change_at: int | None = None
    p_best: float = 1.0
    p_baseline: float = 0.5
    p_other: float = 0.0
    name: str = "switching"
    actions: tuple[Action, ...] = field(init=False, repr=False)
    draws: Draws = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_users < 1 or self.n_actions < 2:
            raise ValueError("need at least one user type and two actions")
        for p in (self.p_best, self.p_baseline, self.p_other):
            if not 0.0 <= p <= 1.0:
                raise ValueError("reward probabilities must be within [0, 1]")
        put = object.__setattr__
        put(self, "actions", id_actions(self.n_actions))
        put(self, "draws", Draws(self.seed, 0, normals=0, uniforms=1 + self.n_actions))

    def best_index(self, user: int, t: int) -> int:
        """Index of user type ``user``'s best action at round ``t`` (never the baseline)."""
        switched = self.change_at is not None and t >= self.change_at
        return 1 + (user + int(switched)) % (self.n_actions - 1)

    def round(self, t: int) -> Round:
        _, uniforms = self.draws.at(t)
        user = min(int(uniforms[0] * self.n_users), self.n_users - 1)
        expected = np.full(self.n_actions, self.p_other)
        expected[0] = self.p_baseline
        expected[self.best_index(user, t)] = self.p_best
        return Round(
            index=t,
            request=make_request(t, [{"user": {"type": f"u{user}"}}], self.actions),
            expected=expected,
            realized=bernoulli(uniforms[1:], expected),
        )
