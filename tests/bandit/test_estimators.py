"""Off-policy estimators on logs from a simulated world whose true policy values are known.

The world: 10 contexts drawn uniformly, 4 actions, Bernoulli rewards with known means μ(c, a).
Logs come from a smooth logging policy; the target policy is a different, mostly-greedy one.
The target's true value is ``mean_c Σ_a π(a|c)·μ(c, a)``, exact.

Coverage is checked over many seeds at the nominal 95% level; with S seeds the observed rate
has binomial standard deviation √(0.95·0.05/S), and each tolerance below is about 3.5 of those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bandit import estimators as est

N_CONTEXTS, N_ACTIONS = 10, 4


@dataclass(frozen=True)
class World:
    mu: np.ndarray  # (contexts, actions)
    logging: np.ndarray  # (contexts, actions), every entry ≥ 0.1
    target: np.ndarray  # (contexts, actions)

    @property
    def value(self) -> float:
        return float(np.mean(np.sum(self.target * self.mu, axis=1)))


def make_world(offset: float = 0.0) -> World:
    rng = np.random.default_rng(12345)
    mu = rng.uniform(0.1, 0.9, (N_CONTEXTS, N_ACTIONS)) + offset
    logits = rng.normal(size=(N_CONTEXTS, N_ACTIONS))
    logging = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    logging = 0.6 * logging + 0.4 / N_ACTIONS
    target = np.full((N_CONTEXTS, N_ACTIONS), 0.1 / (N_ACTIONS - 1))
    target[np.arange(N_CONTEXTS), np.argmax(mu, axis=1)] = 0.9
    return World(mu=mu, logging=logging, target=target)


@dataclass(frozen=True)
class Logs:
    rewards: np.ndarray
    logging: np.ndarray
    target: np.ndarray
    target_pmf: np.ndarray
    mu_rows: np.ndarray
    chosen: np.ndarray


def simulate(world: World, n: int, seed: int) -> Logs:
    rng = np.random.default_rng(seed)
    contexts = rng.integers(N_CONTEXTS, size=n)
    cdf = np.cumsum(world.logging[contexts], axis=1)
    chosen = np.minimum((rng.random((n, 1)) > cdf).sum(axis=1), N_ACTIONS - 1)
    means = world.mu[contexts, chosen]
    base = np.floor(means)  # the offset's integer part, then a Bernoulli on the rest
    rewards = base + (rng.random(n) < means - base)
    return Logs(
        rewards=rewards.astype(np.float64),
        logging=world.logging[contexts, chosen],
        target=world.target[contexts, chosen],
        target_pmf=world.target[contexts],
        mu_rows=world.mu[contexts],
        chosen=chosen.astype(np.int64),
    )


def run_estimator(name: str, logs: Logs, rng: np.random.Generator | None = None) -> est.Estimate:
    weights = est.importance_weights(logs.target, logs.logging)
    options = {"rng": rng, "n_boot": 200}
    if name == "ips":
        return est.ips(logs.rewards, weights, **options)  # type: ignore[arg-type]
    if name == "snips":
        return est.snips(logs.rewards, weights, **options)  # type: ignore[arg-type]
    # A reward model that is right on average but noisy per context and action.
    noise = np.random.default_rng(7).normal(0.0, 0.05, logs.mu_rows.shape[1])
    predicted = logs.mu_rows + noise
    if name == "dm":
        return est.dm(logs.target_pmf, logs.mu_rows, **options)  # type: ignore[arg-type]
    return est.dr(
        logs.rewards,
        weights,
        logs.target_pmf,
        predicted,
        logs.chosen,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("name", ["ips", "snips", "dm", "dr"])
def test_normal_interval_covers_true_value_at_nominal_rate(name: str) -> None:
    world = make_world()
    seeds = 400  # binomial sd of the rate ≈ 0.011; tolerance 0.04 ≈ 3.6 sd
    covered = 0
    for seed in range(seeds):
        e = run_estimator(name, simulate(world, 1000, seed))
        covered += e.ci_low <= world.value <= e.ci_high
    assert abs(covered / seeds - 0.95) <= 0.04


@pytest.mark.parametrize("name", ["ips", "snips", "dr"])
def test_bootstrap_interval_covers_true_value_at_nominal_rate(name: str) -> None:
    world = make_world()
    seeds = 150  # binomial sd ≈ 0.018; tolerance 0.06 ≈ 3.4 sd
    covered = 0
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        e = run_estimator(name, simulate(world, 500, seed), rng)
        covered += e.ci_low <= world.value <= e.ci_high
    assert abs(covered / seeds - 0.95) <= 0.06


def test_ips_is_unbiased_in_small_samples() -> None:
    world = make_world()
    values = np.array([run_estimator("ips", simulate(world, 100, s)).estimate for s in range(2000)])
    standard_error = values.std(ddof=1) / math.sqrt(values.size)
    assert abs(values.mean() - world.value) <= 3.5 * standard_error


def test_snips_varies_less_than_ips_when_rewards_sit_far_from_zero() -> None:
    world = make_world(offset=2.0)  # rewards in [2, 3]: IPS's variance grows with the weights
    ips_values, snips_values = [], []
    for seed in range(300):
        logs = simulate(world, 300, seed)
        ips_values.append(run_estimator("ips", logs).estimate)
        snips_values.append(run_estimator("snips", logs).estimate)
    assert np.var(snips_values) < 0.5 * np.var(ips_values)


def test_dr_varies_less_than_ips_with_a_good_reward_model() -> None:
    world = make_world()
    ips_values, dr_values = [], []
    for seed in range(300):
        logs = simulate(world, 300, seed)
        ips_values.append(run_estimator("ips", logs).estimate)
        dr_values.append(run_estimator("dr", logs).estimate)
    assert np.var(dr_values) < 0.5 * np.var(ips_values)


def test_clipping_bounds_weights_and_trades_bias_for_variance() -> None:
    world = make_world()
    logs = simulate(world, 1000, 0)
    clipped = est.importance_weights(logs.target, logs.logging, clip=2.0)
    assert clipped.max() <= 2.0
    raw = est.importance_weights(logs.target, logs.logging)
    assert est.effective_sample_size(clipped) >= est.effective_sample_size(raw)


@given(
    arrays(np.float64, st.integers(1, 50), elements=st.floats(0.0, 100.0)),
)
def test_effective_sample_size_is_between_zero_and_n(weights: np.ndarray) -> None:
    ess = est.effective_sample_size(weights)
    assert 0.0 <= ess <= weights.size * (1 + 1e-9)
    if weights.sum() > 0:
        assert ess >= 1.0 - 1e-9


@given(arrays(np.float64, st.integers(2, 40), elements=st.floats(-1.0, 1.0)))
def test_unit_weights_give_the_logged_mean(rewards: np.ndarray) -> None:
    ones = np.ones_like(rewards)
    for estimate in (est.ips(rewards, ones), est.snips(rewards, ones)):
        assert math.isclose(estimate.estimate, rewards.mean(), abs_tol=1e-9)
        assert estimate.ci_low <= estimate.estimate <= estimate.ci_high
        assert estimate.n == rewards.size


def test_bootstrap_is_reproducible_with_the_same_seed() -> None:
    logs = simulate(make_world(), 200, 3)
    weights = est.importance_weights(logs.target, logs.logging)
    a = est.ips(logs.rewards, weights, rng=np.random.default_rng(1), n_boot=300)
    b = est.ips(logs.rewards, weights, rng=np.random.default_rng(1), n_boot=300)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)


def test_bad_shapes_and_propensities_raise() -> None:
    with pytest.raises(ValueError):
        est.importance_weights(np.ones(2), np.ones(3))
    with pytest.raises(ValueError):
        est.importance_weights(np.ones(2), np.array([0.5, 0.0]))
    with pytest.raises(ValueError):
        est.ips(np.ones(2), np.ones(3))
    with pytest.raises(ValueError):
        est.dm(np.ones(3), np.ones(3))


def test_empty_logs_give_nan_not_an_error() -> None:
    e = est.ips(np.zeros(0), np.zeros(0))
    assert e.n == 0 and math.isnan(e.estimate)
