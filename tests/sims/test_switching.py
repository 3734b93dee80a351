"""The switching world: seeded, the baseline in the middle, best actions that switch."""

from __future__ import annotations

import doctest

import numpy as np

import sims.switching
from sims.scenarios import make_environment
from sims.switching import SwitchingEnvironment


def test_examples_in_docstrings_hold() -> None:
    assert doctest.testmod(sims.switching).failed == 0


def test_the_best_action_switches_at_the_change_and_is_never_the_baseline() -> None:
    env = make_environment("switching", 4, {"n_users": 3, "n_actions": 4, "change_at": 100})
    assert isinstance(env, SwitchingEnvironment)
    for t in (0, 99, 100, 500):
        rnd = env.round(t)
        user = int(rnd.request.context_features[0]["user"]["type"][1:])
        best = env.best_index(user, t)
        assert best != 0 and rnd.best_index() == best
        assert rnd.expected[0] == env.p_baseline and rnd.expected.max() == env.p_best
    assert all(env.best_index(u, 99) != env.best_index(u, 100) for u in range(3))


def test_rounds_are_a_pure_function_of_seed_and_round_with_the_stated_means() -> None:
    a, b = SwitchingEnvironment(seed=9), SwitchingEnvironment(seed=9)
    rounds = [a.round(t) for t in range(4000)]
    assert all(np.array_equal(r.realized, b.round(r.index).realized) for r in rounds[:50])
    diffs = np.concatenate([r.realized - r.expected for r in rounds])
    assert abs(diffs.mean()) <= 4 * 0.5 / np.sqrt(diffs.size)
    users = [r.request.context_features[0]["user"]["type"] for r in rounds]
    assert abs(users.count("u0") / len(users) - 0.5) < 0.05
