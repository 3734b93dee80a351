"""Join rules (DESIGN §2.7–2.9), driven through the loop on a virtual clock."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from bandit import join as rules
from bandit.config import Aggregation, ServiceConfiguration
from bandit.errors import EventNotFound
from bandit.events import Activation, ActivationOutcome, JoinedEvent, RewardOutcome
from bandit.join import JOIN_GRACE
from bandit.loop import Loop
from bandit.memory import MemoryStore
from policies import UniformPolicy
from tests.conftest import decision, rank_request

WAIT = 10.0


def make_loop(**config: Any) -> Loop:
    """A loop with a uniform policy, an in-memory store and a 10 s reward wait, at t = 0."""
    settings = ServiceConfiguration(reward_wait_time=WAIT, **config)
    return Loop(
        store=MemoryStore(),
        factory=lambda _d: UniformPolicy(),
        config=settings,
        seed=11,
        now=0.0,
    )


@pytest.fixture
def loop() -> Loop:
    return make_loop()


def joined_events(loop: Loop) -> list[JoinedEvent]:
    return loop.store.joined_after(0, 1_000)


def only_joined(loop: Loop) -> JoinedEvent:
    events = joined_events(loop)
    assert len(events) == 1
    return events[0]


def test_earliest_keeps_the_first_counted_reward(loop: Loop) -> None:
    loop.rank(rank_request("e"), now=0.0)
    assert loop.reward("e", 0.3, now=1.0) is RewardOutcome.STORED
    assert loop.reward("e", 0.9, now=5.0) is RewardOutcome.STORED
    loop.step(now=WAIT + JOIN_GRACE)
    event = only_joined(loop)
    assert event.reward == 0.3
    assert event.reward_count == 2
    assert not event.defaulted


def test_sum_adds_the_counted_rewards() -> None:
    loop = make_loop(reward_aggregation=Aggregation.SUM)
    loop.rank(rank_request("e"), now=0.0)
    for t, value in ((1.0, 0.25), (2.0, 0.5), (9.0, -0.125)):
        loop.reward("e", value, now=t)
    loop.step(now=WAIT + JOIN_GRACE)
    event = only_joined(loop)
    assert event.reward == pytest.approx(0.625, abs=1e-12)
    assert event.reward_count == 3


def test_no_reward_joins_with_the_default_reward() -> None:
    loop = make_loop(default_reward=-0.5)
    loop.rank(rank_request("e"), now=0.0)
    loop.step(now=WAIT + JOIN_GRACE)
    event = only_joined(loop)
    assert event.reward == -0.5
    assert event.defaulted
    assert event.reward_count == 0


def test_reward_at_close_is_counted_and_after_close_is_late(loop: Loop) -> None:
    loop.rank(rank_request("e"), now=0.0)
    assert loop.reward("e", 1.0, now=WAIT + 0.5) is RewardOutcome.LATE
    assert loop.reward("e", 0.5, now=WAIT) is RewardOutcome.STORED
    loop.step(now=WAIT + JOIN_GRACE)
    event = only_joined(loop)
    assert event.reward == 0.5
    assert event.reward_count == 1
    assert loop.store.counts(WAIT + JOIN_GRACE).late_rewards == 1


def test_late_reward_alone_leaves_the_default(loop: Loop) -> None:
    loop.rank(rank_request("e"), now=0.0)
    assert loop.reward("e", 1.0, now=WAIT + 1.0) is RewardOutcome.LATE
    loop.step(now=WAIT + JOIN_GRACE)
    event = only_joined(loop)
    assert event.defaulted
    assert event.reward == 0.0


def test_reward_after_join_is_late_and_never_learned(loop: Loop) -> None:
    loop.rank(rank_request("e"), now=0.0)
    loop.step(now=WAIT + JOIN_GRACE)
    assert only_joined(loop).defaulted
    assert loop.reward("e", 1.0, now=WAIT + JOIN_GRACE + 1.0) is RewardOutcome.LATE
    step = loop.step(now=WAIT + JOIN_GRACE + 100.0)
    assert step.joined == 0
    assert only_joined(loop).reward == 0.0
    assert loop.learner.learned_count == 1


def test_every_event_waits_its_full_window(loop: Loop) -> None:
    loop.rank(rank_request("fast"), now=0.0)
    loop.reward("fast", 1.0, now=0.1)
    assert loop.step(now=WAIT + JOIN_GRACE - 0.001).joined == 0
    assert loop.step(now=WAIT + JOIN_GRACE).joined == 1


def test_deferred_event_window_starts_at_activation(loop: Loop) -> None:
    decision = loop.rank(rank_request("d", defer=True), now=0.0)
    assert not decision.active
    assert decision.close_at is None
    assert loop.activate("d", now=5.0) is ActivationOutcome.ACTIVATED
    stored = loop.store.get_decision("d")
    assert stored is not None
    assert stored.active
    assert stored.activated_at == 5.0
    assert stored.close_at == 5.0 + WAIT
    # Within the window opened at activation, though past timestamp + wait: counted.
    assert loop.reward("d", 0.75, now=14.0) is RewardOutcome.STORED
    assert loop.reward("d", 0.25, now=15.5) is RewardOutcome.LATE
    assert loop.step(now=5.0 + WAIT + JOIN_GRACE - 0.001).joined == 0
    assert loop.step(now=5.0 + WAIT + JOIN_GRACE).joined == 1
    event = only_joined(loop)
    assert event.reward == 0.75
    assert event.reward_count == 1


def test_activation_at_the_last_moment_is_accepted(loop: Loop) -> None:
    loop.rank(rank_request("d", defer=True), now=0.0)
    assert loop.activate("d", now=WAIT) is ActivationOutcome.ACTIVATED


def test_activation_after_the_would_be_window_expires_and_is_never_due(loop: Loop) -> None:
    loop.rank(rank_request("d", defer=True), now=0.0)
    assert loop.activate("d", now=WAIT + 0.001) is ActivationOutcome.EXPIRED
    stored = loop.store.get_decision("d")
    assert stored is not None
    assert not stored.active
    assert not rules.is_due(stored, now=1e9)
    assert loop.step(now=1e6).joined == 0
    assert joined_events(loop) == []
    # A later attempt cannot revive it.
    assert loop.activate("d", now=WAIT + 1.0) is ActivationOutcome.EXPIRED
    assert loop.step(now=2e6).joined == 0


def test_never_activated_event_is_never_due(loop: Loop) -> None:
    decision = loop.rank(rank_request("d", defer=True), now=0.0)
    loop.reward("d", 1.0, now=1.0)
    assert not rules.is_due(decision, now=1e12)
    assert loop.step(now=1e6).joined == 0
    assert loop.learner.learned_count == 0
    assert loop.store.counts(1e6).pending_join == 0


def test_is_due_honours_the_join_grace(loop: Loop) -> None:
    decision = loop.rank(rank_request("e"), now=100.0)
    assert decision.close_at == 100.0 + WAIT
    close = 100.0 + WAIT
    assert not rules.is_due(decision, now=close)
    assert not rules.is_due(decision, now=close + JOIN_GRACE - 1e-6)
    assert rules.is_due(decision, now=close + JOIN_GRACE)
    assert rules.is_due(decision, now=close + 0.5, grace=0.5)
    assert loop.step(now=close + JOIN_GRACE - 1e-6).joined == 0
    assert loop.step(now=close + JOIN_GRACE).joined == 1


def test_activation_is_idempotent(loop: Loop) -> None:
    loop.rank(rank_request("d", defer=True), now=0.0)
    assert loop.activate("d", now=3.0) is ActivationOutcome.ACTIVATED
    first = loop.store.get_decision("d")
    assert loop.activate("d", now=4.0) is ActivationOutcome.ALREADY_ACTIVE
    assert loop.store.get_decision("d") == first
    loop.step(now=3.0 + WAIT + JOIN_GRACE)
    assert len(joined_events(loop)) == 1


def test_activating_an_event_that_was_not_deferred_changes_nothing(loop: Loop) -> None:
    decision = loop.rank(rank_request("e"), now=0.0)
    assert loop.activate("e", now=1.0) is ActivationOutcome.ALREADY_ACTIVE
    assert loop.store.get_decision("e") == decision


def test_activating_an_unknown_event_raises(loop: Loop) -> None:
    with pytest.raises(EventNotFound):
        loop.activate("nope", now=1.0)


def test_pure_activate_is_idempotent() -> None:
    deferred = decision("d", k=3, pmf=(0.5, 0.25, 0.25), defer=True)
    once, outcome = rules.activate(deferred, Activation(event_id="d", at=2.0, wait=WAIT))
    assert outcome is ActivationOutcome.ACTIVATED
    twice, again = rules.activate(once, Activation(event_id="d", at=7.0, wait=WAIT))
    assert again is ActivationOutcome.ALREADY_ACTIVE
    assert twice == once
    assert twice.close_at == 2.0 + WAIT


def test_aggregate_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        rules.aggregate([], Aggregation.SUM)


def test_module_doctests_pass() -> None:
    result = doctest.testmod(rules)
    assert result.attempted > 0
    assert result.failed == 0
