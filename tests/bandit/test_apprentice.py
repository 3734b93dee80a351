"""Apprentice mode: the served distribution with apprentice exploration, and imitation."""

from __future__ import annotations

import doctest
import math

import hypothesis.strategies as st
import pytest
from hypothesis import given

from bandit import events as events_module
from bandit.apprentice import imitates
from bandit.config import LearningMode, ServiceConfiguration
from bandit.events import Decision, JoinedEvent, RankRequest
from bandit.exploration import apprentice_pmf, propensity_floor
from bandit.loop import decide
from policies import UniformPolicy
from tests.conftest import decision, joined, rank_request

SEED = 77


class NeverAsked:
    """A policy that fails if consulted: Apprentice and LoggingOnly serve without the model."""

    arguments = "never-asked"

    def predict_one(self, request: RankRequest) -> list[float]:
        raise AssertionError("the policy was asked for a non-Online decision")

    def learn_one(self, event: JoinedEvent) -> None:
        raise AssertionError("not learning here")

    def to_bytes(self) -> bytes:
        return b""


def request_for(
    excluded: list[bool], *, event_id: str = "e", max_exploration: float | None = None
) -> RankRequest:
    """A request over ``len(excluded)`` actions, ``a{i}`` excluded where ``excluded[i]``."""
    return rank_request(
        event_id,
        k=len(excluded),
        excluded=tuple(f"a{i}" for i, ex in enumerate(excluded) if ex),
        max_exploration=max_exploration,
    )


def apprentice(epsilon: float, min_propensity: float = 0.01) -> ServiceConfiguration:
    return ServiceConfiguration(
        learning_mode=LearningMode.APPRENTICE,
        apprentice_exploration=epsilon,
        min_propensity=min_propensity,
    )


def served(request: RankRequest, config: ServiceConfiguration) -> Decision:
    return decide(request, NeverAsked(), config=config, seed=SEED, model_version=1, now=0.0)


@st.composite
def offers(draw: st.DrawFn) -> list[bool]:
    """An excluded mask over 1..8 actions with at least one action allowed."""
    k = draw(st.integers(1, 8))
    excluded = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    keep = draw(st.integers(0, k - 1))
    excluded[keep] = False
    return excluded


@given(
    excluded=offers(),
    epsilon=st.floats(0.0, 1.0),
    min_propensity=st.floats(0.0, 1.0),
    max_exploration=st.none() | st.floats(0.0, 1.0),
)
def test_apprentice_pmf_honours_every_invariant_of_the_caps(
    excluded: list[bool], epsilon: float, min_propensity: float, max_exploration: float | None
) -> None:
    request = request_for(excluded, max_exploration=max_exploration)
    decision = served(request, apprentice(epsilon, min_propensity))
    pmf = decision.pmf
    budget = epsilon if max_exploration is None else min(epsilon, max_exploration)
    allowed = [i for i, ex in enumerate(excluded) if not ex]
    baseline = allowed[0]
    floor = propensity_floor(budget, len(allowed), min_propensity)
    # DESIGN §2.4: sums to 1, excluded get 0, at most ε off the greedy action, each ≥ floor.
    assert abs(math.fsum(pmf) - 1.0) <= 1e-6
    assert all(pmf[i] == 0.0 for i, ex in enumerate(excluded) if ex)
    off = math.fsum(p for i, p in enumerate(pmf) if i != decision.greedy_index)
    assert off <= budget + 1e-9
    assert all(pmf[i] >= floor * (1.0 - 1e-6) for i in allowed)
    assert pmf[decision.chosen_index] > 0.0
    assert decision.learning_mode is LearningMode.APPRENTICE
    if budget <= (len(allowed) - 1) / len(allowed):
        # The baseline stays the greedy action and gets exactly 1 − ε_a; the rest is even.
        assert decision.greedy_index == baseline
        assert pmf[baseline] == pytest.approx(1.0 - budget, abs=1e-9)
        for i in allowed[1:]:
            assert pmf[i] == pytest.approx(budget / (len(allowed) - 1), abs=1e-9)


@given(excluded=offers(), min_propensity=st.floats(0.0, 1.0))
def test_zero_apprentice_exploration_serves_the_baseline_with_probability_one(
    excluded: list[bool], min_propensity: float
) -> None:
    decision = served(request_for(excluded), apprentice(0.0, min_propensity))
    baseline = excluded.index(False)
    expected = tuple(1.0 if i == baseline else 0.0 for i in range(len(excluded)))
    assert decision.pmf == expected
    assert decision.chosen_index == decision.greedy_index == baseline


@given(excluded=offers(), epsilon=st.floats(0.0, 1.0))
def test_logging_only_ignores_apprentice_exploration(excluded: list[bool], epsilon: float) -> None:
    config = ServiceConfiguration(
        learning_mode=LearningMode.LOGGING_ONLY, apprentice_exploration=epsilon
    )
    decision = served(request_for(excluded), config)
    baseline = excluded.index(False)
    assert decision.pmf[baseline] == 1.0
    assert decision.chosen_index == baseline


def test_online_ignores_apprentice_exploration() -> None:
    plain = ServiceConfiguration(exploration_percentage=0.2)
    with_apprentice = plain.replace(apprentice_exploration=0.7)
    for i in range(50):
        request = request_for([False, i % 3 == 0, False, False], event_id=f"e{i}")
        a = decide(request, UniformPolicy(), config=plain, seed=SEED, model_version=1, now=0.0)
        b = decide(
            request, UniformPolicy(), config=with_apprentice, seed=SEED, model_version=1, now=0.0
        )
        assert a == b


def test_max_exploration_lowers_apprentice_exploration() -> None:
    request = request_for([False] * 5, max_exploration=0.08)
    decision = served(request, apprentice(0.4))
    assert decision.pmf[0] == pytest.approx(0.92, abs=1e-12)
    assert decision.pmf[1:] == pytest.approx([0.02] * 4, abs=1e-12)


def test_realized_apprentice_exploration_matches_epsilon() -> None:
    """4,000 seeded draws at ε_a = 0.3 leave the baseline 30% of the time (± 2 points)."""
    config, n = apprentice(0.3), 4_000
    explored = 0
    for i in range(n):
        decision = served(request_for([False] * 4, event_id=f"x{i}"), config)
        assert decision.greedy_index == 0
        explored += decision.explored
    assert abs(explored / n - 0.3) <= 0.02


def test_imitation_compares_with_the_baseline_not_the_action_served() -> None:
    """Regression: with apprentice exploration an explored event was never counted imitated."""
    explored = decision(
        "e", k=3, pmf=(0.8, 0.1, 0.1), chosen=2, learning_mode=LearningMode.APPRENTICE
    )
    event = joined(explored, 1.0, at=1.0)
    assert imitates(UniformPolicy(), event)  # uniform ties: greedy is the first, the baseline


def test_apprentice_pmf_rejects_every_action_excluded() -> None:
    with pytest.raises(ValueError, match="excluded"):
        apprentice_pmf([True, True], 0.2)


def test_the_apprentice_counts_doctests_pass() -> None:
    """The counts' examples (``bandit.events``, where the stored records live); the module's
    own pmf moved to ``bandit.exploration``, whose doctests run in test_exploration."""
    result = doctest.testmod(events_module)
    assert result.attempted > 0
    assert result.failed == 0
