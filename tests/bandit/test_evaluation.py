"""Offline evaluation: on logs from a world with known expected rewards, each policy's 95%
interval covers its true value (fixed seeds)."""

from __future__ import annotations

import doctest
from collections.abc import Sequence

import numpy as np
import pytest

from bandit import estimators
from bandit import evaluation as evaluation_module
from bandit.evaluation import (
    Candidate,
    PolicySource,
    best,
    buckets,
    combine,
    evaluate,
    optimization_grid,
    replay,
)
from bandit.events import JoinedEvent
from bandit.importance import Feature, features, importance
from policies import BaselinePolicy, UniformPolicy, make_factory
from tests.server import world

ONLINE = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
CUSTOM = "--cb_explore_adf --cb_type mtr --power_t 0 -l 0.05 -q ::"


def candidates() -> list[Candidate]:
    return [
        Candidate(
            name="Online",
            arguments=ONLINE,
            source=PolicySource.ONLINE,
            factory=make_factory(ONLINE, epsilon=0.2),
            epsilon=0.2,
            min_propensity=0.01,
        ),
        Candidate(
            name="Baseline",
            arguments="baseline",
            source=PolicySource.BASELINE,
            factory=lambda _: BaselinePolicy(),
        ),
        Candidate(
            name="Random",
            arguments="uniform",
            source=PolicySource.RANDOM,
            factory=lambda _: UniformPolicy(),
        ),
        Candidate(
            name="custom",
            arguments=CUSTOM,
            source=PolicySource.CUSTOM,
            factory=make_factory(CUSTOM, epsilon=0.1),
            epsilon=0.1,
            min_propensity=0.01,
        ),
    ]


@pytest.fixture(scope="module")
def logs() -> world.Logs:
    return world.draw(4000, seed=7)


@pytest.mark.parametrize("index", range(4), ids=["online", "baseline", "random", "custom"])
def test_interval_covers_the_true_value(logs: world.Logs, index: int) -> None:
    candidate = candidates()[index]
    truth: list[float] = []

    def expected(event: JoinedEvent, pmf: Sequence[float]) -> None:
        means = world.MEANS[world.kind_of(event.decision.request)]
        truth.append(float(np.dot(pmf, means)))

    _, weights, rewards = replay(logs.events, candidate, on_step=expected)
    true_value = float(np.mean(truth))
    for estimate in (estimators.ips(rewards, weights), estimators.snips(rewards, weights)):
        assert estimate.ci_low <= true_value <= estimate.ci_high, (estimate, true_value)
        assert estimate.ci_high - estimate.ci_low < 0.12
    if candidate.source is PolicySource.BASELINE:
        assert true_value == pytest.approx(np.mean(world.MEANS[logs.kinds, 0]))


def test_learning_policies_beat_baseline_and_random(logs: world.Logs) -> None:
    results = evaluate(lambda: logs.events, candidates())
    values = {r.name: r.snips.estimate for r in results}
    assert values["Online"] > values["Baseline"] + 0.1
    assert values["custom"] > values["Random"] + 0.1
    chosen = best(results, [PolicySource.ONLINE, PolicySource.CUSTOM])
    assert chosen is not None and chosen.name in {"Online", "custom"}


def test_bucket_sums_rebuild_the_estimators_exactly(logs: world.Logs) -> None:
    times, weights, rewards = replay(logs.events[:1500], candidates()[0])
    parts = buckets(times, weights, rewards)
    assert len(parts) == 6 and sum(b.n for b in parts) == 1500
    combined = combine(parts)
    assert combined is not None
    for got, want in zip(
        combined,
        (estimators.ips(rewards, weights), estimators.snips(rewards, weights)),
        strict=True,
    ):
        assert got.estimate == pytest.approx(want.estimate, abs=1e-9)
        assert got.ci_low == pytest.approx(want.ci_low, abs=1e-9)
        assert got.ci_high == pytest.approx(want.ci_high, abs=1e-9)
    assert combine(()) is None


def test_optimization_grid_builds_valid_policies(logs: world.Logs) -> None:
    grid = optimization_grid()
    assert len({name for name, _ in grid}) == len(grid)
    for _, arguments in grid:
        make_factory(arguments, epsilon=0.2)(None)
    few = [
        Candidate(
            name=name,
            arguments=arguments,
            source=PolicySource.OPTIMIZED,
            factory=make_factory(arguments, epsilon=0.2),
            epsilon=0.2,
        )
        for name, arguments in grid[:2]
    ]
    results = evaluate(lambda: logs.events[:300], few)
    assert [r.name for r in results] == ["Hyper1", "Hyper2"]


def test_stopping_interrupts_a_replay(logs: world.Logs) -> None:
    with pytest.raises(InterruptedError):
        replay(logs.events, candidates()[1], should_stop=lambda: True)


def test_feature_importance_ranks_the_informative_features(logs: world.Logs) -> None:
    events = logs.events[:1500]
    names = features(events)
    assert names == [Feature("device", "mobile"), Feature("item", "id"), Feature("user", "kind")]
    result = importance(lambda: events, candidates()[3], names, stability=False)
    scores = [s for s in result.scores if len(s.features) == 1]
    by_name = {s.label: s for s in scores}
    assert scores[0].score == 100.0
    assert {scores[0].label, scores[1].label} == {"item.id", "user.kind"}
    assert by_name["device.mobile"].score < by_name["user.kind"].score
    assert all(0.0 <= s.score <= 100.0 for s in result.scores)
    assert result.stability is None


def test_module_doctests_pass() -> None:
    result = doctest.testmod(evaluation_module)
    assert result.failed == 0 and result.attempted > 0
