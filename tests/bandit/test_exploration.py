"""Exploration caps (DESIGN §2.4): invariants of :func:`bandit.exploration.apply_caps` and of
:func:`bandit.exploration.served_distribution` in every learning mode."""

from __future__ import annotations

import doctest
import math
from dataclasses import dataclass, replace

import hypothesis.strategies as st
from hypothesis import example, given, settings

from bandit import exploration
from bandit.config import LearningMode, ServiceConfiguration
from bandit.events import Action, JoinedEvent, RankRequest
from bandit.exploration import Capped, apply_caps, propensity_floor, served_distribution

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


# -- served_distribution: learning mode, request budget and caps in one function ----------------


class FixedPolicy:
    """A policy that answers every request with one pmf and counts how often it was asked."""

    def __init__(self, pmf: list[float]) -> None:
        self.pmf = pmf
        self.asked = 0

    @property
    def arguments(self) -> str:
        return "fixed"

    def predict_one(self, request: RankRequest) -> list[float]:
        self.asked += 1
        return list(self.pmf)

    def learn_one(self, event: JoinedEvent) -> None:
        raise AssertionError("served_distribution never learns")

    def to_bytes(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """One drawn case: the policy, the request, the configuration and the mode served in."""

    policy: FixedPolicy
    request: RankRequest
    config: ServiceConfiguration
    mode: LearningMode

    @property
    def excluded(self) -> list[bool]:
        return list(self.request.excluded_mask())

    @property
    def budget(self) -> float:
        """The ε DESIGN §2.4 and §3 give this mode, lowered by the request's maxExploration."""
        if self.mode is LearningMode.ONLINE:
            epsilon = self.config.exploration_percentage
        elif self.mode is LearningMode.APPRENTICE:
            epsilon = self.config.apprentice_exploration
        else:
            epsilon = 0.0
        limit = self.request.max_exploration
        return epsilon if limit is None else min(epsilon, limit)

    def serve(self) -> Capped:
        return served_distribution(
            self.policy,
            self.request,
            self.config,
            mode=self.mode,
            max_exploration=self.request.max_exploration,
        )


@st.composite
def served_cases(draw: st.DrawFn) -> Served:
    """A policy's pmf, a request offering its actions (some excluded, maybe a maxExploration),
    a configuration and a learning mode."""
    pmf, excluded = draw(offers())
    request = RankRequest(
        event_id="e",
        context_features=(),
        actions=tuple(Action(id=f"a{i}") for i in range(len(pmf))),
        excluded_action_ids=tuple(f"a{i}" for i, ex in enumerate(excluded) if ex),
        max_exploration=draw(st.none() | budgets),
    )
    config = ServiceConfiguration(
        exploration_percentage=draw(budgets),
        apprentice_exploration=draw(budgets),
        min_propensity=draw(budgets),
    )
    return Served(
        policy=FixedPolicy(pmf),
        request=request,
        config=config,
        mode=draw(st.sampled_from(LearningMode)),
    )


@given(served_cases())
def test_served_distribution_sums_to_one_over_the_offered_actions(case: Served) -> None:
    served = case.serve()
    assert len(served.pmf) == len(case.request.actions)
    assert abs(math.fsum(served.pmf) - 1.0) <= SUM_TOL
    assert all(q >= 0.0 for q in served.pmf)


@given(served_cases())
def test_served_distribution_gives_excluded_actions_exactly_zero(case: Served) -> None:
    served = case.serve()
    assert all(q == 0.0 for q, ex in zip(served.pmf, case.excluded, strict=True) if ex)


@given(served_cases())
def test_served_distribution_keeps_the_mass_off_greedy_within_the_mode_and_request_budget(
    case: Served,
) -> None:
    served = case.serve()
    off = math.fsum(q for i, q in enumerate(served.pmf) if i != served.greedy_index)
    assert off <= case.budget + TOL


@given(served_cases())
def test_served_distribution_lifts_every_allowed_action_to_the_floor(case: Served) -> None:
    served = case.serve()
    allowed = allowed_indices(case.excluded)
    floor = propensity_floor(case.budget, len(allowed), case.config.min_propensity)
    assert served.floor == floor
    assert all(served.pmf[i] >= floor - TOL for i in allowed)


@given(served_cases())
def test_served_distribution_caps_the_policy_online_and_never_asks_it_otherwise(
    case: Served,
) -> None:
    served = case.serve()
    if case.mode is LearningMode.ONLINE:
        assert case.policy.asked == 1
        assert served == apply_caps(
            case.policy.pmf, case.excluded, case.budget, case.config.min_propensity
        )
    else:
        assert case.policy.asked == 0
    if case.mode is LearningMode.LOGGING_ONLY:
        assert served.pmf[case.request.baseline_index()] == 1.0


@given(served_cases(), budgets)
def test_max_exploration_lowers_the_budget_and_never_raises_it(
    case: Served, max_exploration: float
) -> None:
    unlimited = replace(case, request=replace(case.request, max_exploration=None))
    lowered = replace(case, request=replace(case.request, max_exploration=max_exploration))
    served = lowered.serve()
    if max_exploration >= unlimited.budget:
        assert served == unlimited.serve()
    off = math.fsum(q for i, q in enumerate(served.pmf) if i != served.greedy_index)
    assert off <= max_exploration + TOL
