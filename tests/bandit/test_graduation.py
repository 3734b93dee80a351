"""The learned policy against the baseline on apprentice logs: SNIPS with a confidence sequence,
and the graduation rule, on seeded simulated streams with known values."""

from __future__ import annotations

import doctest
import math
import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from bandit import graduation as graduation_module
from bandit.config import LearningMode, ServiceConfiguration
from bandit.events import RankRequest
from bandit.graduation import ApprenticeEvaluation, evaluation_weights, graduates
from bandit.loop import decide
from tests.bandit.test_apprentice import NeverAsked
from tests.conftest import decision, joined, rank_request

K = 3
CONTEXTS = 4
MIN_EVENTS = 500

Means = Callable[[int, int], float]
"""μ(context, action): the probability that the action earns reward 1 in that context."""


def better_world(context: int, action: int) -> float:
    """The baseline a0 earns 0.3; a1 earns 0.7 in even contexts and a2 in odd ones."""
    if action == 0:
        return 0.3
    return 0.7 if action == 1 + context % 2 else 0.2


def worse_world(context: int, action: int) -> float:
    """The baseline a0 earns 0.5 everywhere; the others 0.35."""
    return 0.5 if action == 0 else 0.35


def value(means: Means, choose: Callable[[int], int]) -> float:
    """The true value of a deterministic policy: contexts are uniform."""
    return sum(means(x, choose(x)) for x in range(CONTEXTS)) / CONTEXTS


class TabularGreedy:
    """A learner that keeps an importance-weighted mean reward per (context, action) and picks
    the best; it starts at the baseline (ties go to the lowest index)."""

    def __init__(self) -> None:
        self.sums = [[0.0] * K for _ in range(CONTEXTS)]
        self.weights = [[0.0] * K for _ in range(CONTEXTS)]

    def choose(self, context: int) -> int:
        means = [
            s / w if w > 0 else 0.0
            for s, w in zip(self.sums[context], self.weights[context], strict=True)
        ]
        return max(range(K), key=lambda a: (means[a], -a))

    def learn(self, context: int, action: int, propensity: float, reward: float) -> None:
        self.sums[context][action] += reward / propensity
        self.weights[context][action] += 1.0 / propensity


def segment_request(i: int, context: int) -> RankRequest:
    """Event ``e{i}`` in ``context``: K actions without features (the learner here is tabular)."""
    return rank_request(f"e{i}", k=K, context=({"user": {"segment": context}},), features=None)


def stream(
    means: Means,
    n: int,
    *,
    seed: int,
    epsilon: float = 0.3,
    learner: TabularGreedy | None = None,
    fixed: int | None = None,
    check: Callable[[ApprenticeEvaluation, float, float], None] | None = None,
    every: int = 100,
) -> tuple[ApprenticeEvaluation, float, float]:
    """Serve ``n`` apprentice events through :func:`decide`, score each before learning it.

    The learned policy is either ``learner`` (progressive validation) or the fixed action
    ``fixed``. Returns the evaluation, the running true value of the learned policy (the mean
    over events of the value of the model that scored each) and the baseline's true value;
    ``check`` is called with the same every ``every`` events.
    """
    rng = random.Random(seed)
    config = ServiceConfiguration(
        learning_mode=LearningMode.APPRENTICE, apprentice_exploration=epsilon
    )
    evaluation = ApprenticeEvaluation()
    truth_sum = 0.0
    baseline_truth = value(means, lambda _x: 0)
    for i in range(n):
        context = rng.randrange(CONTEXTS)
        request = segment_request(i, context)
        decision = decide(request, NeverAsked(), config=config, seed=seed, model_version=1, now=0.0)
        reward = 1.0 if rng.random() < means(context, decision.chosen_index) else 0.0
        event = joined(decision, reward, at=0.0)
        if learner is not None:
            greedy = learner.choose(context)
            truth_sum += value(means, learner.choose)
        else:
            assert fixed is not None
            greedy = fixed
            truth_sum += value(means, lambda _x: fixed)
        assert evaluation.add(event, greedy)
        if learner is not None:
            learner.learn(context, decision.chosen_index, decision.propensity, reward)
        if check is not None and (i + 1) % every == 0:
            check(evaluation, truth_sum / (i + 1), baseline_truth)
    return evaluation, truth_sum / n, baseline_truth


def covers(low: float, high: float, truth: float) -> bool:
    """Whether an interval covers the truth; nan bounds (no estimate yet) cover everything."""
    return (math.isnan(low) or low <= truth) and (math.isnan(high) or truth <= high)


def test_a_better_learned_policy_is_covered_and_graduates() -> None:
    """The truth stays inside every interval at every look; the LCB clears 0 after enough."""
    looks: list[bool] = []

    def check(evaluation: ApprenticeEvaluation, policy_truth: float, baseline_truth: float) -> None:
        v = evaluation.value(MIN_EVENTS)
        assert covers(v.policy.ci_low, v.policy.ci_high, policy_truth)
        assert covers(v.baseline.ci_low, v.baseline.ci_high, baseline_truth)
        improvement = policy_truth - baseline_truth
        assert covers(v.improvement.ci_low, v.improvement.ci_high, improvement)
        looks.append(graduates(v, MIN_EVENTS))

    evaluation, policy_truth, baseline_truth = stream(
        better_world, 3_000, seed=11, learner=TabularGreedy(), check=check
    )
    v = evaluation.value(MIN_EVENTS)
    assert baseline_truth == pytest.approx(0.3)
    assert policy_truth > 0.65  # the learner found the best actions early
    assert v.evaluated_events == 3_000
    assert v.improvement.ci_low > 0.0
    assert graduates(v, MIN_EVENTS)
    # Never before the minimum number of events, and for good once the evidence is in.
    first = looks.index(True)
    assert (first + 1) * 100 >= MIN_EVENTS
    assert all(looks[first:])


def test_a_worse_policy_never_graduates_however_often_it_is_checked() -> None:
    def check(evaluation: ApprenticeEvaluation, _p: float, _b: float) -> None:
        assert not graduates(evaluation.value(MIN_EVENTS), MIN_EVENTS)

    for seed in range(3):
        evaluation, policy_truth, baseline_truth = stream(
            worse_world, 3_000, seed=seed, fixed=1, check=check, every=10
        )
        v = evaluation.value(MIN_EVENTS)
        assert policy_truth - baseline_truth == pytest.approx(-0.15)
        assert v.improvement.ci_high < 0.0  # confidently worse by the end


def test_the_improvement_interval_covers_at_every_look_at_least_nominally() -> None:
    """Anytime validity, measured: over 60 seeded streams looked at every 10 events, the
    share in which the interval ever misses the true improvement stays near α = 5% (≤ 10%)."""
    misses = 0
    for seed in range(100, 160):
        missed = False

        def check(evaluation: ApprenticeEvaluation, policy: float, baseline: float) -> None:
            nonlocal missed
            v = evaluation.value(MIN_EVENTS).improvement
            missed = missed or not covers(v.ci_low, v.ci_high, policy - baseline)

        stream(worse_world, 1_500, seed=seed, fixed=2, check=check, every=10)
        misses += missed
    assert misses / 60 <= 0.10


def test_a_policy_as_good_as_the_baseline_does_not_graduate() -> None:
    def check(evaluation: ApprenticeEvaluation, _p: float, _b: float) -> None:
        assert not graduates(evaluation.value(MIN_EVENTS), MIN_EVENTS)

    for seed in range(3):
        stream(lambda _x, _a: 0.4, 3_000, seed=seed, fixed=2, check=check, every=10)


def test_events_without_full_support_are_not_evaluated() -> None:
    """Logs of Personalizer's Apprentice (ε_a = 0) cannot value another action."""
    config = ServiceConfiguration(learning_mode=LearningMode.APPRENTICE)
    served = decide(
        segment_request(0, 0), NeverAsked(), config=config, seed=1, model_version=1, now=0.0
    )
    event = joined(served, 1.0, at=0.0)
    assert evaluation_weights(event, greedy=1) is None
    evaluation = ApprenticeEvaluation()
    assert not evaluation.add(event, greedy=0)
    assert evaluation.n == 0
    v = evaluation.value(MIN_EVENTS)
    assert math.isnan(v.improvement.estimate)
    assert not graduates(v, 1)


def test_excluded_actions_do_not_break_support() -> None:
    excluded = replace(segment_request(0, 0), event_id="x", excluded_action_ids=("a0",))
    served = decision(
        "x",
        request=excluded,
        pmf=(0.0, 0.75, 0.25),
        chosen=1,
        learning_mode=LearningMode.APPRENTICE,
    )
    event = joined(served, 1.0, at=0.0)
    # The baseline is a1, the first action not excluded.
    weights = evaluation_weights(event, greedy=2)
    assert weights is not None
    assert weights[0] == 0.0
    assert weights[1] == pytest.approx(1 / 0.75)


def test_running_sums_survive_a_round_trip_through_their_record() -> None:
    evaluation, _, _ = stream(better_world, 300, seed=5, learner=TabularGreedy())
    restored = ApprenticeEvaluation.from_sums(evaluation.sums())
    assert restored.value(MIN_EVENTS) == evaluation.value(MIN_EVENTS)
    assert restored.sums() == evaluation.sums()
    empty = ApprenticeEvaluation.from_sums(ApprenticeEvaluation().sums())
    assert empty.n == 0 and empty.sums() == ApprenticeEvaluation().sums()


def test_module_doctests_pass() -> None:
    result = doctest.testmod(graduation_module)
    assert result.attempted > 0
    assert result.failed == 0
