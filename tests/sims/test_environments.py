"""Every environment family: seeded, exact expected rewards, Personalizer-shaped requests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandit.dsjson import context_line
from sims.delayed import DelayedEnvironment
from sims.environment import Environment
from sims.linear import LinearEnvironment
from sims.many_actions import ManyActionsEnvironment
from sims.nonstationary import DriftingEnvironment
from sims.scenarios import SCENARIOS, make_environment


def envs(seed: int) -> dict[str, Environment]:
    return {name: s.build(seed) for name, s in SCENARIOS.items()}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_rounds_are_a_pure_function_of_seed_and_round(name: str) -> None:
    a, b, other = SCENARIOS[name].build(3), SCENARIOS[name].build(3), SCENARIOS[name].build(4)
    for t in (0, 1, 57):
        ra, rb = a.round(t), b.round(t)
        assert ra.request == rb.request
        assert np.array_equal(ra.expected, rb.expected)
        assert np.array_equal(ra.realized, rb.realized)
        assert (ra.delay, ra.dropped) == (rb.delay, rb.dropped)
    assert any(
        a.round(t).request.context_features != other.round(t).request.context_features
        for t in range(5)
    )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_requests_are_personalizer_shaped_and_expected_rewards_are_probabilities(
    name: str,
) -> None:
    env = SCENARIOS[name].build(0)
    for t in range(30):
        rnd = env.round(t)
        request = rnd.request
        k = len(request.actions)
        assert 2 <= k <= 50
        assert rnd.expected.shape == rnd.realized.shape == (k,)
        assert np.all((rnd.expected >= 0.0) & (rnd.expected <= 1.0))
        assert all(isinstance(obj, dict) for obj in request.context_features)
        assert all(a.id and all(isinstance(f, dict) for f in a.features) for a in request.actions)
        assert len({a.id for a in request.actions}) == k
        assert set(request.excluded_action_ids) <= {a.id for a in request.actions}
        assert rnd.allowed().any()
        assert rnd.best_expected() == rnd.expected[rnd.allowed()].max()
        json.loads(context_line(request))  # the VW input builds from it


@pytest.mark.parametrize("name", ["linear", "nonlinear", "drift", "many-actions"])
def test_realized_rewards_have_the_expected_means(name: str) -> None:
    env = SCENARIOS[name].build(1)
    gaps = [env.round(t) for t in range(3000)]
    diffs = np.concatenate([r.realized - r.expected for r in gaps])
    # Bernoulli noise: sd ≤ 0.5 per draw; allow 4 standard errors.
    assert abs(diffs.mean()) <= 4 * 0.5 / np.sqrt(diffs.size)


def test_digits_reward_is_one_exactly_for_the_true_label() -> None:
    env = SCENARIOS["digits"].build(0)
    for t in range(50):
        rnd = env.round(t)
        assert rnd.expected.sum() == 1.0
        assert np.array_equal(rnd.realized, rnd.expected)
        assert [a.id for a in rnd.request.actions] == [str(k) for k in range(10)]


def test_many_actions_change_sets_and_exclude_some() -> None:
    env = ManyActionsEnvironment(seed=2)
    rounds = [env.round(t) for t in range(200)]
    sizes = {len(r.request.actions) for r in rounds}
    assert min(sizes) >= 10 and max(sizes) <= 50 and len(sizes) > 10
    assert sum(len(r.request.excluded_action_ids) for r in rounds) > 0
    assert len({r.request.actions[0].id for r in rounds}) > 20


def test_delayed_world_drops_delays_and_defers_at_the_configured_rates() -> None:
    env = DelayedEnvironment(
        inner=LinearEnvironment(seed=0), seed=0, mean_delay=4.0, missing=0.25, deferred=0.1
    )
    rounds = [env.round(t) for t in range(4000)]
    assert abs(np.mean([r.dropped for r in rounds]) - 0.25) < 0.03
    assert abs(np.mean([r.delay for r in rounds]) - 4.0) < 0.3
    deferred = [r for r in rounds if r.request.defer_activation]
    assert abs(len(deferred) / 4000 - 0.1) < 0.02
    assert all(r.activate_after == 1.0 for r in deferred)
    for kind in ("fixed", "lognormal", "uniform"):
        d = DelayedEnvironment(inner=LinearEnvironment(seed=0), seed=0, delay=kind, mean_delay=3.0)
        assert abs(np.mean([d.round(t).delay for t in range(3000)]) - 3.0) < 0.35


def test_drift_moves_the_best_action_and_the_abrupt_change_redraws_it() -> None:
    drifting = DriftingEnvironment(seed=0, period=1000.0)
    theta = [drifting.theta(t) for t in (0, 250, 500)]
    assert np.allclose(np.linalg.norm(theta[1], axis=1), 1.0)
    assert not np.allclose(theta[0], theta[1])
    abrupt = DriftingEnvironment(seed=0, change_at=100)
    assert np.array_equal(abrupt.theta(0), abrupt.theta(99))
    assert not np.allclose(abrupt.theta(99), abrupt.theta(100))


def test_unknown_family_and_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown environment"):
        make_environment("nope", 0, {})
    with pytest.raises(ValueError):
        make_environment("many-actions", 0, {"max_actions": 60})
    with pytest.raises(ValueError):
        make_environment("delayed", 0, {"delay": "weibull"})
