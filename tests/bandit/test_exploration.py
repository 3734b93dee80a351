"""Exploration caps (DESIGN §2.4): invariants of :func:`bandit.exploration.apply_caps`."""

from __future__ import annotations

import doctest
import math

import hypothesis.strategies as st
from hypothesis import example, given, settings

from bandit import exploration
from bandit.exploration import apply_caps, propensity_floor

SUM_TOL = 1e-6
TOL = 1e-9

probabilities = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1.0))
budgets = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def offers(draw: st.DrawFn) -> tuple[list[float], list[bool]]:
    """A pmf over K ∈ [1, 50] actions (some zeros) and a mask leaving at least one allowed."""
    k = draw(st.integers(min_value=1, max_value=50))
    pmf = draw(st.lists(probabilities, min_size=k, max_size=k))
    excluded = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    excluded[draw(st.integers(min_value=0, max_value=k - 1))] = False
    return pmf, excluded


def allowed_indices(excluded: list[bool]) -> list[int]:
    return [i for i, ex in enumerate(excluded) if not ex]


def expected_greedy(pmf: list[float], excluded: list[bool]) -> int:
    """The allowed argmax of the input pmf, lowest index on ties."""
    allowed = allowed_indices(excluded)
    best = max(pmf[i] for i in allowed)
    return min(i for i in allowed if pmf[i] == best)


@given(offers(), budgets, budgets)
def test_served_pmf_sums_to_one(
    offer: tuple[list[float], list[bool]], epsilon: float, min_propensity: float
) -> None:
    pmf, excluded = offer
    capped = apply_caps(pmf, excluded, epsilon, min_propensity)
    assert len(capped.pmf) == len(pmf)
    assert abs(math.fsum(capped.pmf) - 1.0) <= SUM_TOL
    assert all(q >= 0.0 for q in capped.pmf)


@given(offers(), budgets, budgets)
def test_excluded_actions_get_exactly_zero(
    offer: tuple[list[float], list[bool]], epsilon: float, min_propensity: float
) -> None:
    pmf, excluded = offer
    capped = apply_caps(pmf, excluded, epsilon, min_propensity)
    for q, is_excluded in zip(capped.pmf, excluded, strict=True):
        if is_excluded:
            assert q == 0.0


@given(offers(), budgets, budgets)
def test_mass_off_the_greedy_action_is_at_most_epsilon(
    offer: tuple[list[float], list[bool]], epsilon: float, min_propensity: float
) -> None:
    pmf, excluded = offer
    capped = apply_caps(pmf, excluded, epsilon, min_propensity)
    off = math.fsum(q for i, q in enumerate(capped.pmf) if i != capped.greedy_index)
    assert off <= epsilon + TOL


@given(offers(), budgets, budgets)
def test_every_allowed_action_gets_at_least_the_floor(
    offer: tuple[list[float], list[bool]], epsilon: float, min_propensity: float
) -> None:
    pmf, excluded = offer
    allowed = allowed_indices(excluded)
    capped = apply_caps(pmf, excluded, epsilon, min_propensity)
    floor = propensity_floor(epsilon, len(allowed), min_propensity)
    assert capped.floor == floor
    for i in allowed:
        assert capped.pmf[i] >= floor - TOL


@given(st.integers(min_value=1, max_value=50), budgets, budgets)
def test_floor_is_min_of_min_propensity_and_even_split_of_budget(
    n_allowed: int, epsilon: float, min_propensity: float
) -> None:
    floor = propensity_floor(epsilon, n_allowed, min_propensity)
    assert 0.0 <= floor <= 1.0 / n_allowed
    if epsilon == 0.0 or n_allowed == 1:
        assert floor == 0.0
    elif epsilon <= (n_allowed - 1) / n_allowed:
        expected = min(min_propensity, epsilon / (n_allowed - 1))
        assert math.isclose(floor, expected, rel_tol=1e-12, abs_tol=0.0)


@given(offers(), budgets, budgets)
@example(([1.0, math.nextafter(1.0, 2.0), 1.0], [False, False, False]), 0.2, 0.01)
def test_greedy_index_is_the_lowest_allowed_argmax_of_the_input(
    offer: tuple[list[float], list[bool]], epsilon: float, min_propensity: float
) -> None:
    pmf, excluded = offer
    capped = apply_caps(pmf, excluded, epsilon, min_propensity)
    assert capped.greedy_index == expected_greedy(pmf, excluded)


@given(offers(), budgets)
def test_zero_epsilon_serves_the_greedy_action_with_probability_one(
    offer: tuple[list[float], list[bool]], min_propensity: float
) -> None:
    pmf, excluded = offer
    capped = apply_caps(pmf, excluded, 0.0, min_propensity)
    assert capped.floor == 0.0
    assert capped.pmf[capped.greedy_index] == 1.0
    assert all(q == 0.0 for i, q in enumerate(capped.pmf) if i != capped.greedy_index)


@st.composite
def pmfs_within_caps(
    draw: st.DrawFn,
) -> tuple[list[float], list[bool], float, float]:
    """A normalized pmf that already honours the caps and the floor it implies."""
    pmf, excluded = draw(offers())
    allowed = allowed_indices(excluded)
    epsilon = draw(budgets)
    min_propensity = draw(budgets)
    floor = propensity_floor(epsilon, len(allowed), min_propensity)
    greedy, others = allowed[0], allowed[1:]
    # Everything off the greedy action: the floor plus a share of what the budget leaves.
    spare = max(0.0, epsilon - floor * len(others)) * draw(st.floats(0.0, 0.999))
    weights = [draw(st.floats(0.0, 1.0)) for _ in others]
    total = math.fsum(weights)
    q = [0.0] * len(pmf)
    for i, w in zip(others, weights, strict=True):
        q[i] = floor + (spare * w / total if total > 0 else 0.0)
    q[greedy] = 1.0 - math.fsum(q[i] for i in others)
    # Keep the greedy action strictly the most probable so that it stays the greedy one.
    if others and q[greedy] <= max(q[i] for i in others):
        return [1.0 if i == greedy else 0.0 for i in range(len(pmf))], excluded, 0.0, 0.0
    return q, excluded, epsilon, min_propensity


@given(pmfs_within_caps())
def test_pmf_already_within_caps_is_returned_unchanged(
    case: tuple[list[float], list[bool], float, float],
) -> None:
    pmf, excluded, epsilon, min_propensity = case
    capped = apply_caps(pmf, excluded, epsilon, min_propensity)
    for got, want in zip(capped.pmf, pmf, strict=True):
        assert math.isclose(got, want, rel_tol=0.0, abs_tol=TOL)


@given(offers(), budgets, budgets)
def test_importance_weights_are_bounded_by_one_over_floor(
    offer: tuple[list[float], list[bool]], epsilon: float, min_propensity: float
) -> None:
    pmf, excluded = offer
    capped = apply_caps(pmf, excluded, epsilon, min_propensity)
    if capped.floor > 0.0:
        bound = 1.0 / capped.floor
        for i in allowed_indices(excluded):
            assert 1.0 / capped.pmf[i] <= bound * (1.0 + 1e-9)


@settings(max_examples=50)
@given(offers(), st.floats(-10.0, 10.0), budgets)
def test_epsilon_outside_unit_interval_is_clamped(
    offer: tuple[list[float], list[bool]], epsilon: float, min_propensity: float
) -> None:
    pmf, excluded = offer
    clamped = min(max(epsilon, 0.0), 1.0)
    assert apply_caps(pmf, excluded, epsilon, min_propensity) == apply_caps(
        pmf, excluded, clamped, min_propensity
    )


def test_all_zero_pmf_is_treated_as_uniform_over_allowed_actions() -> None:
    capped = apply_caps([0.0, 0.0, 0.0, 0.0], [False, True, False, False], 1.0, 1.0)
    assert capped.greedy_index == 0
    assert capped.pmf[1] == 0.0
    for i in (0, 2, 3):
        assert math.isclose(capped.pmf[i], 1.0 / 3.0, abs_tol=TOL)


def test_non_finite_and_negative_entries_count_as_zero() -> None:
    capped = apply_caps([math.nan, -1.0, math.inf, 0.5], [False] * 4, 0.0, 0.0)
    assert capped.pmf == (0.0, 0.0, 0.0, 1.0)
    assert capped.greedy_index == 3


def test_every_action_excluded_is_an_error() -> None:
    try:
        apply_caps([0.5, 0.5], [True, True], 0.2, 0.01)
    except ValueError:
        return
    raise AssertionError("apply_caps accepted a request with every action excluded")


def test_module_doctests_pass() -> None:
    result = doctest.testmod(exploration)
    assert result.attempted > 0
    assert result.failed == 0
