"""Feature importance per feature: in a seeded world where two of ten context features carry
all the signal, the ranking puts those two first (after the action's id, without which no
policy can tell the actions apart), and the ranking is stable between the halves of the logs."""

from __future__ import annotations

import doctest

import pytest

from bandit import importance as importance_module
from bandit.evaluation import Candidate, PolicySource
from bandit.importance import IMPORTANT_SCORE, Feature, Importance, features, importance
from policies import DEFAULT_ARGUMENTS, make_factory
from tests.bandit import feature_world

N = 2000


def online() -> Candidate:
    return Candidate(
        name="Online",
        arguments=DEFAULT_ARGUMENTS,
        source=PolicySource.ONLINE,
        factory=make_factory(DEFAULT_ARGUMENTS, epsilon=0.2),
        epsilon=0.2,
        min_propensity=0.0,
    )


@pytest.fixture(scope="module")
def result() -> Importance:
    events = feature_world.draw(N, seed=3)
    names = features(events)
    assert sorted(f.label for f in names) == sorted((*feature_world.CONTEXT_FEATURES, "item.id"))
    return importance(lambda: events, online(), names)


def test_the_two_signal_features_rank_first_among_the_ten(result: Importance) -> None:
    singles = [s for s in result.scores if len(s.features) == 1]
    context = [s for s in singles if s.label != "item.id"]
    assert len(context) == 10
    assert {s.label for s in context[:2]} == set(feature_world.SIGNAL)
    weakest_signal = min(context[0].score, context[1].score)
    assert weakest_signal >= IMPORTANT_SCORE
    assert all(s.score < weakest_signal / 3 for s in context[2:])
    assert singles[0].label == "item.id" and singles[0].score == 100.0
    assert all(0.0 <= s.score <= 100.0 for s in result.scores)
    assert [s.score for s in result.scores] == sorted(
        (s.score for s in result.scores), reverse=True
    )


def test_interactions_pair_the_three_most_important(result: Importance) -> None:
    pairs = {s.label: s for s in result.scores if len(s.features) == 2}
    assert set(pairs) == {"item.id^user.tier", "item.id^user.visits", "user.tier^user.visits"}
    # The tier's and the visits' value lies in their combination with the action's id; the
    # world adds their effects, so the two users' features barely interact with each other.
    assert pairs["item.id^user.tier"].score >= IMPORTANT_SCORE
    assert pairs["user.tier^user.visits"].score < pairs["item.id^user.tier"].score / 3
    for s in pairs.values():
        singles = {x.label: x.drop for x in result.scores if len(x.features) == 1}
        a, b = s.label.split("^")
        assert s.interaction == pytest.approx(singles[a] + singles[b] - s.drop)


def test_the_stability_figure_is_high_for_this_world(result: Importance) -> None:
    st = result.stability
    assert st is not None
    assert st.events == (N // 2, N - N // 2)
    assert st.k == 3  # item.id, user.tier, user.visits
    assert st.top_k_overlap == 1.0
    assert st.rank_correlation is not None and st.rank_correlation > 0.7
    assert result.replays == 1 + 11 + 3 + 2 * (1 + 11)
    assert all(s.halves is not None for s in result.scores if len(s.features) == 1)


def test_a_ranking_that_flips_between_halves_has_low_stability() -> None:
    # The signal feature of the first half is noise in the second and the other way round.
    first = feature_world.draw(600, seed=5)
    second = feature_world.draw(600, seed=6, start=1_700_001_000.0)
    swapped = [importance_module.without(e, [Feature("user", "tier")]) for e in first] + [
        importance_module.without(e, [Feature("user", "visits")]) for e in second
    ]
    names = [Feature("user", "tier"), Feature("user", "visits"), Feature("device", "os")]
    result = importance(lambda: swapped, online(), names, interactions=False)
    assert result.stability is not None
    assert result.stability.rank_correlation is not None
    assert result.stability.rank_correlation < 0.0
    halves = next(s.halves for s in result.scores if s.label == "user.tier")
    assert halves is not None
    one, two = halves
    assert one < 0.01 < two  # without the tier in the first half, it is worth nothing there


def test_module_doctests_pass() -> None:
    outcome = doctest.testmod(importance_module)
    assert outcome.failed == 0 and outcome.attempted > 0
