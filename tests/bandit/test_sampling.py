"""Seeded sampling (DESIGN §2.5): reproducible, well spread, faithful to the pmf."""

from __future__ import annotations

import doctest
import math

import hypothesis.strategies as st
from hypothesis import given

from bandit import sampling
from bandit.sampling import sample, uniform

seeds = st.integers(min_value=-(2**63), max_value=2**63 - 1)
event_ids = st.text(max_size=64)


@st.composite
def pmfs(draw: st.DrawFn) -> list[float]:
    """Non-negative weights over 1–50 actions, some zero, at least one positive."""
    k = draw(st.integers(min_value=1, max_value=50))
    weights = draw(
        st.lists(
            st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1.0)),
            min_size=k,
            max_size=k,
        )
    )
    weights[draw(st.integers(min_value=0, max_value=k - 1))] = draw(st.floats(1e-3, 1.0))
    total = math.fsum(weights)
    return [w / total for w in weights]


@given(pmfs(), seeds, event_ids)
def test_same_seed_and_event_id_give_the_same_index(pmf: list[float], seed: int, eid: str) -> None:
    first = sample(pmf, seed, eid)
    assert all(sample(list(pmf), seed, eid) == first for _ in range(3))
    assert uniform(seed, eid) == uniform(seed, eid)


@given(pmfs(), seeds, event_ids)
def test_zero_probability_indices_are_never_drawn(pmf: list[float], seed: int, eid: str) -> None:
    index = sample(pmf, seed, eid)
    assert 0 <= index < len(pmf)
    assert pmf[index] > 0.0


@given(seeds, event_ids)
def test_uniform_lies_in_the_half_open_unit_interval(seed: int, eid: str) -> None:
    u = uniform(seed, eid)
    assert 0.0 <= u < 1.0


def test_different_seeds_give_different_draws_for_most_event_ids() -> None:
    pmf = [0.25, 0.25, 0.25, 0.25]
    ids = [f"event-{i}" for i in range(2_000)]
    differ = sum(sample(pmf, 1, e) != sample(pmf, 2, e) for e in ids) / len(ids)
    # Independent draws disagree with probability 3/4; 4 standard errors ≈ 0.04.
    assert abs(differ - 0.75) <= 0.04
    assert sum(uniform(1, e) != uniform(2, e) for e in ids) == len(ids)


def test_empirical_frequencies_match_the_pmf_within_four_standard_errors() -> None:
    pmf = [0.5, 0.0, 0.25, 0.15, 0.1, 0.0]
    n = 20_000
    counts = [0] * len(pmf)
    for i in range(n):
        counts[sample(pmf, 20240601, f"evt-{i:06d}")] += 1
    for p, c in zip(pmf, counts, strict=True):
        se = math.sqrt(p * (1.0 - p) / n)
        assert abs(c / n - p) <= 4.0 * se
    assert counts[1] == 0 and counts[5] == 0


def test_uniform_variates_are_uniform_over_many_event_ids() -> None:
    n = 20_000
    values = [uniform(99, str(i)) for i in range(n)]
    # Mean of U(0,1) is 1/2 with standard deviation sqrt(1/12); check the mean and each decile.
    assert abs(math.fsum(values) / n - 0.5) <= 4.0 * math.sqrt(1.0 / 12.0 / n)
    deciles = [0] * 10
    for v in values:
        deciles[int(v * 10)] += 1
    se = math.sqrt(0.1 * 0.9 / n)
    assert all(abs(d / n - 0.1) <= 4.0 * se for d in deciles)


def test_unnormalized_weights_are_sampled_in_proportion() -> None:
    n = 10_000
    hits = sum(sample([3.0, 1.0], 5, f"e{i}") == 0 for i in range(n))
    assert abs(hits / n - 0.75) <= 4.0 * math.sqrt(0.75 * 0.25 / n)


def test_pmf_without_positive_entry_is_an_error() -> None:
    try:
        sample([0.0, 0.0], 1, "e")
    except ValueError:
        return
    raise AssertionError("sample drew from a pmf with no positive entry")


def test_module_doctests_pass() -> None:
    result = doctest.testmod(sampling)
    assert result.attempted > 0
    assert result.failed == 0
