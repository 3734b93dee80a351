"""The loop on a virtual clock: replay, reward checks, exactly-once learning, modes, exploration."""

from __future__ import annotations

import doctest
import math
from typing import Any

import pytest

from bandit import loop as loop_module
from bandit.config import Aggregation, LearningMode, ServiceConfiguration
from bandit.errors import EventConflict, EventNotFound, InvalidRewardRequest
from bandit.events import RewardOutcome
from bandit.join import JOIN_GRACE
from bandit.loop import Learner, Loop, Schedule
from bandit.memory import MemoryStore
from bandit.policy import PolicyFactory
from policies import DEFAULT_ARGUMENTS, UniformPolicy, VWPolicy
from tests.conftest import rank_request

WAIT = 10.0
SEED = 4242


def uniform_factory(_data: bytes | None) -> UniformPolicy:
    return UniformPolicy()


def vw_factory(epsilon: float = 0.2) -> PolicyFactory:
    return lambda data: VWPolicy(DEFAULT_ARGUMENTS, epsilon=epsilon, model=data)


def make_loop(
    factory: PolicyFactory = uniform_factory, store: MemoryStore | None = None, **config: Any
) -> Loop:
    settings = ServiceConfiguration(reward_wait_time=WAIT, **config)
    return Loop(store=store or MemoryStore(), factory=factory, config=settings, seed=SEED, now=0.0)


def run_events(loop: Loop, n: int, *, start: float = 0.0, prefix: str = "e") -> float:
    """Rank ``n`` events one second apart, reward action a2 with 1, join and learn them all."""
    t = start
    for i in range(n):
        decision = loop.rank(rank_request(f"{prefix}{i}"), now=t)
        loop.reward(decision.event_id, 1.0 if decision.chosen_index == 2 else 0.0, now=t + 0.5)
        t += 1.0
    t += WAIT + JOIN_GRACE
    loop.step(now=t)
    return t


# --- rank replay -----------------------------------------------------------------------------


def test_replayed_rank_returns_the_stored_decision() -> None:
    loop = make_loop(vw_factory())
    first = loop.rank(rank_request("ev"), now=1.0)
    # The model changes before the retry: the retry must still get the logged decision.
    run_events(loop, 20, start=2.0)
    loop.publish(now=100.0)
    assert loop.serving_version != first.model_version
    again = loop.rank(rank_request("ev"), now=101.0)
    assert again == first
    assert again.chosen_index == first.chosen_index
    assert again.pmf == first.pmf


def test_same_event_id_with_a_different_body_conflicts() -> None:
    loop = make_loop()
    loop.rank(rank_request("ev"), now=0.0)
    silver = rank_request("ev", context=({"user": {"tier": "silver"}},))
    for other in (silver, rank_request("ev", k=3)):
        with pytest.raises(EventConflict) as info:
            loop.rank(other, now=1.0)
        assert info.value.event_id == "ev"
        assert info.value.code == "EventIdConflict"
    assert loop.store.counts(1.0).decisions == 1


# --- rewards ---------------------------------------------------------------------------------


def test_reward_for_unknown_event_raises_event_not_found() -> None:
    loop = make_loop()
    with pytest.raises(EventNotFound) as info:
        loop.reward("missing", 0.5, now=1.0)
    assert info.value.event_id == "missing"


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 1.0001, -1.5, True, False, "0.5", None, [0.5]],
    ids=repr,
)
def test_invalid_reward_values_are_rejected(value: Any) -> None:
    loop = make_loop()
    loop.rank(rank_request("ev"), now=0.0)
    with pytest.raises(InvalidRewardRequest) as info:
        loop.reward("ev", value, now=1.0)
    assert info.value.target == "value"
    assert loop.store.counts(1.0).rewards == 0


@pytest.mark.parametrize("value", [-1.0, 1.0, 0, 1, 0.25])
def test_rewards_within_range_are_stored(value: float) -> None:
    loop = make_loop()
    loop.rank(rank_request("ev"), now=0.0)
    assert loop.reward("ev", value, now=1.0) is RewardOutcome.STORED


def test_reward_range_comes_from_the_configuration() -> None:
    loop = make_loop(reward_min=0.0, reward_max=5.0)
    loop.rank(rank_request("ev"), now=0.0)
    assert loop.reward("ev", 4.5, now=1.0) is RewardOutcome.STORED
    with pytest.raises(InvalidRewardRequest):
        loop.reward("ev", -0.5, now=1.0)


def test_retried_reward_with_the_same_key_is_counted_once() -> None:
    loop = make_loop(reward_aggregation=Aggregation.SUM)
    loop.rank(rank_request("ev"), now=0.0)
    assert loop.reward("ev", 0.5, now=1.0, request_key="k1") is RewardOutcome.STORED
    assert loop.reward("ev", 0.5, now=2.0, request_key="k1") is RewardOutcome.DUPLICATE
    assert loop.reward("ev", 0.25, now=3.0, request_key="k2") is RewardOutcome.STORED
    loop.step(now=WAIT + JOIN_GRACE)
    (event,) = loop.store.joined_after(0, 10)
    assert event.reward == pytest.approx(0.75, abs=1e-12)
    assert event.reward_count == 2


# --- learner: exactly once -------------------------------------------------------------------


def test_learner_learns_each_joined_event_exactly_once() -> None:
    store = MemoryStore()
    loop = make_loop(vw_factory(), store=store)
    n = 40
    t = run_events(loop, n)
    assert store.last_seq() == n
    assert loop.learner.cursor == store.last_seq()
    assert loop.learner.learned_count == n
    # Nothing new: further steps learn nothing.
    for extra in range(3):
        step = loop.step(now=t + 100.0 * (extra + 1))
        assert step.learned == 0
    assert loop.learner.learned_count == n


def test_learner_in_small_batches_still_learns_each_event_once() -> None:
    store = MemoryStore()
    loop = make_loop(store=store)
    t = 0.0
    for i in range(25):
        loop.rank(rank_request(f"e{i}"), now=t)
    t += WAIT + JOIN_GRACE + 25
    steps = [loop.learner.step(loop.config, now=t, limit=7) for _ in range(6)]
    assert [s.learned for s in steps] == [7, 7, 7, 4, 0, 0]
    assert loop.learner.cursor == store.last_seq() == 25
    assert loop.learner.learned_count == 25


def test_new_learner_resumes_from_the_checkpoint() -> None:
    store = MemoryStore()
    factory = vw_factory()
    loop = make_loop(factory, store=store)
    n = 30
    t = run_events(loop, n)
    original = loop.learner
    resumed = Learner(store, factory, now=t + 1.0)
    assert resumed.cursor == original.cursor == n
    assert resumed.learned_count == original.learned_count == n
    probe = rank_request("probe")
    assert resumed.policy.predict_one(probe) == pytest.approx(
        original.policy.predict_one(probe), abs=1e-6
    )
    # Resuming relearns nothing; new events are learned once by the resumed learner.
    assert resumed.step(loop.config, now=t + 2.0).learned == 0
    assert resumed.learned_count == n
    for i in range(5):
        loop.rank(rank_request(f"late{i}"), now=t + 3.0)
    step = resumed.step(loop.config, now=t + 3.0 + WAIT + JOIN_GRACE)
    assert step.learned == 5
    assert resumed.learned_count == n + 5
    assert resumed.cursor == store.last_seq() == n + 5


def test_new_loop_on_the_same_store_serves_the_published_model() -> None:
    store = MemoryStore()
    factory = vw_factory()
    loop = make_loop(factory, store=store)
    t = run_events(loop, 30)
    record = loop.publish(now=t)
    again = make_loop(factory, store=store)
    assert again.serving_version == record.version
    probe = rank_request("probe")
    assert again.serving.predict_one(probe) == pytest.approx(
        loop.serving.predict_one(probe), abs=1e-6
    )
    assert again.learner.learned_count == loop.learner.learned_count


def test_logging_only_learns_nothing_but_advances_the_cursor() -> None:
    store = MemoryStore()
    loop = make_loop(vw_factory(), store=store, learning_mode=LearningMode.LOGGING_ONLY)
    before = loop.learner.policy.to_bytes()
    n = 15
    t = 0.0
    for i in range(n):
        loop.rank(rank_request(f"e{i}"), now=t)
        loop.reward(f"e{i}", 1.0, now=t)
    step = loop.step(now=WAIT + JOIN_GRACE)
    assert step.joined == n
    assert step.learned == 0
    assert loop.learner.learned_count == 0
    assert loop.learner.cursor == store.last_seq() == n
    assert loop.learner.policy.to_bytes() == before


def test_apprentice_learns_from_the_real_rewards() -> None:
    store = MemoryStore()
    loop = make_loop(vw_factory(), store=store, learning_mode=LearningMode.APPRENTICE)
    run_events(loop, 12)
    assert loop.learner.learned_count == 12
    assert loop.learner.cursor == store.last_seq() == 12


@pytest.mark.parametrize("mode", [LearningMode.APPRENTICE, LearningMode.LOGGING_ONLY])
def test_non_online_modes_serve_the_baseline_with_probability_one(mode: LearningMode) -> None:
    loop = make_loop(vw_factory(), learning_mode=mode)
    for i in range(50):
        excluded = ("a0",) if i % 2 else ()
        decision = loop.rank(rank_request(f"e{i}", excluded=excluded), now=float(i))
        baseline = 1 if excluded else 0
        assert decision.chosen_index == baseline
        assert decision.pmf[baseline] == 1.0
        assert sum(decision.pmf) == 1.0
        assert not decision.explored
        assert decision.learning_mode is mode


def test_max_exploration_lowers_epsilon_for_one_request() -> None:
    loop = make_loop(exploration_percentage=0.2, min_propensity=0.01)
    plain = loop.rank(rank_request("plain"), now=0.0)
    lowered = loop.rank(rank_request("lowered", max_exploration=0.05), now=0.0)
    raised = loop.rank(rank_request("raised", max_exploration=0.9), now=0.0)

    def off_greedy(pmf: tuple[float, ...], greedy: int) -> float:
        return math.fsum(p for i, p in enumerate(pmf) if i != greedy)

    # Uniform over 4 actions wants 0.75 off the greedy action; the cap binds at ε.
    assert off_greedy(plain.pmf, plain.greedy_index) == pytest.approx(0.2, abs=1e-9)
    assert off_greedy(lowered.pmf, lowered.greedy_index) == pytest.approx(0.05, abs=1e-9)
    assert off_greedy(raised.pmf, raised.greedy_index) == pytest.approx(0.2, abs=1e-9)
    assert min(lowered.pmf) >= 0.01 - 1e-12


def test_decisions_log_the_model_version_that_served_them() -> None:
    loop = make_loop(model_export_frequency=60.0)
    first = loop.rank(rank_request("a"), now=0.0)
    loop.step(now=61.0)
    second = loop.rank(rank_request("b"), now=62.0)
    assert second.model_version == first.model_version + 1 == loop.serving_version


# --- realized exploration --------------------------------------------------------------------


def test_realized_exploration_of_vw_epsilon_greedy_matches_epsilon() -> None:
    """VW ε-greedy puts ε·(K−1)/K off its greedy action; the caps (ε = 0.2) leave it unchanged.

    A VW model that has learned nothing ties every action and returns a uniform pmf, so the
    policy first learns one rewarded event (which breaks the tie), then serves 4,000 events.
    Expected off-greedy mass: 0.2 · 3/4 = 0.15, per decision and in realized frequency.
    """
    epsilon, k, n = 0.2, 4, 4_000
    loop = make_loop(vw_factory(epsilon), exploration_percentage=epsilon, min_propensity=0.01)
    decision = loop.rank(rank_request("warmup"), now=0.0)
    loop.reward("warmup", 1.0, now=1.0)
    loop.step(now=WAIT + JOIN_GRACE)
    loop.publish(now=WAIT + JOIN_GRACE)
    assert loop.learner.learned_count == 1
    expected = epsilon * (k - 1) / k
    explored = 0
    for i in range(n):
        decision = loop.rank(rank_request(f"x{i}"), now=100.0)
        off = math.fsum(p for j, p in enumerate(decision.pmf) if j != decision.greedy_index)
        assert off == pytest.approx(expected, abs=1e-6)
        assert decision.pmf[decision.greedy_index] == pytest.approx(1 - expected, abs=1e-6)
        explored += decision.explored
    assert abs(explored / n - expected) <= 0.02


def test_untrained_vw_ties_every_action_and_the_cap_binds_at_epsilon() -> None:
    """An untrained VW model returns a uniform pmf; the caps then put exactly ε off greedy."""
    epsilon, n = 0.2, 4_000
    loop = make_loop(vw_factory(epsilon), exploration_percentage=epsilon, min_propensity=0.01)
    explored = 0
    for i in range(n):
        decision = loop.rank(rank_request(f"x{i}"), now=0.0)
        assert decision.greedy_index == 0
        off = math.fsum(p for j, p in enumerate(decision.pmf) if j != 0)
        assert off == pytest.approx(epsilon, abs=1e-6)
        explored += decision.explored
    assert abs(explored / n - epsilon) <= 0.02


# --- one publish and checkpoint schedule -----------------------------------------------------


def test_schedule_is_due_once_the_period_passed_with_progress_it_did_not_cover() -> None:
    schedule = Schedule(at=100.0, progress=7)
    assert not schedule.due(500.0, 7, every=10.0)  # nothing new, however long
    assert not schedule.due(109.9, 8, every=10.0)  # something new, too soon
    assert schedule.due(110.0, 8, every=10.0)
    schedule.done(110.0, 8)
    assert (schedule.at, schedule.progress) == (110.0, 8)
    assert not schedule.due(200.0, 8, every=10.0)
    assert schedule.due(110.0, 9, every=0.0)


def test_loop_publishes_nothing_while_nothing_new_was_learned() -> None:
    loop = make_loop(model_export_frequency=10.0)
    version = loop.serving_version
    for t in (20.0, 40.0, 60.0):
        loop.step(now=t)
    assert loop.serving_version == version
    assert [m.version for m in loop.store.list_models()] == [version]


def test_first_learning_after_an_idle_spell_is_published_at_once_and_then_every_period() -> None:
    """The simulator used to publish unchanged models on the clock, which restarted the period:
    a model that learned just after such a publication waited a full period more than the
    trainer's."""
    loop = make_loop(model_export_frequency=10.0)
    first = loop.serving_version
    loop.step(now=15.0)  # idle: nothing to learn, nothing published
    loop.rank(rank_request("a"), now=15.0)
    loop.rank(rank_request("b"), now=16.0)
    loop.step(now=15.0 + WAIT + JOIN_GRACE)  # learns "a", 27 s after the last publication
    assert loop.serving_version == first + 1
    loop.step(now=16.0 + WAIT + JOIN_GRACE)  # learns "b" 1 s later: not yet
    assert loop.serving_version == first + 1
    loop.step(now=37.0)  # a period after the last publication, with "b" unpublished
    assert loop.serving_version == first + 2
    latest = loop.store.latest_model()
    assert latest is not None and latest.learned_count == 2


def test_logging_only_checkpoints_the_cursor_and_publishes_nothing() -> None:
    loop = make_loop(learning_mode=LearningMode.LOGGING_ONLY, model_export_frequency=10.0)
    version = loop.serving_version
    t = run_events(loop, 5)
    loop.step(now=t + 100.0)
    checkpoint = loop.store.load_checkpoint()
    assert checkpoint is not None and checkpoint.cursor == 5 and checkpoint.learned_count == 0
    assert loop.serving_version == version


def test_learner_checkpoints_once_the_interval_passed_and_the_cursor_moved() -> None:
    store = MemoryStore()
    config = ServiceConfiguration(reward_wait_time=WAIT)
    loop = Loop(
        store=store,
        factory=uniform_factory,
        config=config,
        seed=SEED,
        now=0.0,
        checkpoint_interval=30.0,
    )

    def saved() -> tuple[int, float]:
        checkpoint = store.load_checkpoint()
        assert checkpoint is not None
        return checkpoint.cursor, checkpoint.updated_at

    loop.rank(rank_request("a"), now=0.0)
    loop.step(now=WAIT + JOIN_GRACE)  # learned, but within the interval
    assert loop.learner.cursor == 1 and saved() == (0, 0.0)
    loop.step(now=31.0)  # nothing new to learn; the unsaved cursor is saved
    assert saved() == (1, 31.0)
    loop.step(now=100.0)  # nothing moved since: no checkpoint
    assert saved() == (1, 31.0)


def test_module_doctests_pass() -> None:
    result = doctest.testmod(loop_module)
    assert result.failed == 0 and result.attempted > 0
