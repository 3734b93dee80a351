"""The ``EventLog`` contract: decisions, rewards, activations, due events and joined events."""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.config import Aggregation
from bandit.events import Activation, ActivationOutcome, RewardOutcome, WriteBatch, WriteResult
from bandit.loop import join_due
from bandit.memory import MemoryStore
from bandit.store import EventLog, Store
from stores.sqlite import writes as sqlite_writes
from stores.sqlite.store import SQLiteStore
from tests.stores.conftest import (
    CONFIG,
    GRACE,
    T0,
    WAIT,
    decision,
    joined,
    log_events,
    reward,
    write,
)

# -- decisions ----------------------------------------------------------------------------


def test_written_decision_reads_back_equal(store: EventLog) -> None:
    d = decision("e1", chosen=1)
    result = write(store, d)
    assert result.decisions == (d,)
    assert store.get_decision("e1") == d
    assert store.get_decision("e1").request == d.request  # type: ignore[union-attr]
    assert store.get_decision("missing") is None


def test_try_write_without_other_writers_commits_as_write_does(store: EventLog) -> None:
    d = decision("e1")
    batch = WriteBatch(decisions=(d, decision("e1", at=T0 + 1)), rewards=(reward("e1", T0 + 1),))
    result = store.try_write(batch)
    if result is None:  # a store that never writes on the caller's thread (PostgreSQL)
        assert store.get_decision("e1") is None
        result = store.write(batch)
    assert result == WriteResult(decisions=(d, d), rewards=(RewardOutcome.STORED,))
    store.sync()
    assert store.get_decision("e1") == d
    assert store.counts(T0).rewards == 1


def test_repeated_event_id_returns_the_stored_decision(store: EventLog) -> None:
    first = decision("e1", pmf=(0.9, 0.1, 0.0))
    second = decision("e1", at=T0 + 5, pmf=(0.5, 0.5, 0.0), chosen=1)
    assert write(store, first).decisions == (first,)
    assert write(store, second).decisions == (first,)
    assert store.get_decision("e1") == first
    assert store.counts(T0).decisions == 1


def test_repeated_event_id_within_one_batch_returns_the_first(store: EventLog) -> None:
    first, second = decision("e1"), decision("e1", at=T0 + 1)
    assert write(store, first, second).decisions == (first, first)


def test_repeated_event_id_returns_the_activated_decision(store: EventLog) -> None:
    write(store, decision("e1", defer=True))
    write(store, activations=(Activation(event_id="e1", at=T0 + 3, wait=WAIT),))
    stored = write(store, decision("e1", defer=True)).decisions[0]
    assert stored.active and stored.activated_at == T0 + 3
    assert stored.close_at == T0 + 3 + WAIT


# -- rewards --------------------------------------------------------------------------------


def test_reward_for_unknown_event_is_not_stored(store: EventLog) -> None:
    result = write(store, rewards=(reward("nope", T0),))
    assert result.rewards == (RewardOutcome.UNKNOWN_EVENT,)
    assert store.counts(T0).rewards == 0


def test_reward_within_window_is_stored_and_counted(store: EventLog) -> None:
    d = decision("e1")
    result = write(store, d, rewards=(reward("e1", T0 + 1, 0.5), reward("e1", T0 + WAIT, 0.25)))
    assert result.rewards == (RewardOutcome.STORED, RewardOutcome.STORED)
    [(due, rewards)] = store.due(T0 + WAIT + GRACE, 10)
    assert due == d
    assert rewards == [reward("e1", T0 + 1, 0.5), reward("e1", T0 + WAIT, 0.25)]


def test_repeated_request_key_is_applied_once(store: EventLog) -> None:
    write(store, decision("e1"), decision("e2"))
    result = write(
        store,
        rewards=(
            reward("e1", T0 + 1, 0.5, key="k1"),
            reward("e1", T0 + 2, 0.9, key="k1"),
            reward("e2", T0 + 2, 0.7, key="k1"),  # same key, other event: not a retry
            reward("e1", T0 + 3, 0.1),
            reward("e1", T0 + 4, 0.2),  # no key: never a duplicate
        ),
    )
    assert result.rewards == (
        RewardOutcome.STORED,
        RewardOutcome.DUPLICATE,
        RewardOutcome.STORED,
        RewardOutcome.STORED,
        RewardOutcome.STORED,
    )
    assert write(store, rewards=(reward("e1", T0 + 5, key="k1"),)).rewards == (
        RewardOutcome.DUPLICATE,
    )
    due = dict((d.event_id, rs) for d, rs in store.due(T0 + WAIT + GRACE, 10))
    assert [r.value for r in due["e1"]] == [0.5, 0.1, 0.2]
    assert store.counts(T0).rewards == 4


def test_reward_after_window_is_late_and_never_counted(store: EventLog) -> None:
    write(store, decision("e1"))
    result = write(store, rewards=(reward("e1", T0 + WAIT + 0.001, key="k"),))
    assert result.rewards == (RewardOutcome.LATE,)
    [(_, rewards)] = store.due(T0 + WAIT + GRACE, 10)
    assert rewards == []
    counts = store.counts(T0)
    assert (counts.rewards, counts.late_rewards) == (1, 1)
    # a late reward's key still deduplicates its retries
    assert write(store, rewards=(reward("e1", T0 + 20, key="k"),)).rewards == (
        RewardOutcome.DUPLICATE,
    )


def test_reward_after_join_is_late(store: EventLog) -> None:
    d = decision("e1")
    write(store, d)
    assert store.append_joined([joined(d, defaulted=True)])
    # still inside the window, but the event is joined already
    result = write(store, rewards=(reward("e1", T0 + 1),))
    assert result.rewards == (RewardOutcome.LATE,)
    assert store.counts(T0).late_rewards == 1


def test_reward_for_deferred_event_is_inactive_until_activated(store: EventLog) -> None:
    write(store, decision("e1", defer=True))
    assert write(store, rewards=(reward("e1", T0 + 1, 0.3),)).rewards == (RewardOutcome.INACTIVE,)
    assert store.due(T0 + 1_000, 10) == []
    write(store, activations=(Activation(event_id="e1", at=T0 + 2, wait=WAIT),))
    # the reward stored while inactive is counted once the window opens
    [(_, rewards)] = store.due(T0 + 2 + WAIT + GRACE, 10)
    assert [r.value for r in rewards] == [0.3]


def test_batch_applies_decisions_then_activations_then_rewards(store: EventLog) -> None:
    result = write(
        store,
        decision("new"),
        decision("deferred", defer=True),
        rewards=(reward("new", T0 + 1), reward("deferred", T0 + 1)),
        activations=(Activation(event_id="deferred", at=T0 + 1, wait=WAIT),),
    )
    assert result.activations == (ActivationOutcome.ACTIVATED,)
    assert result.rewards == (RewardOutcome.STORED, RewardOutcome.STORED)


_REWARD_CASES = st.lists(
    st.tuples(
        st.sampled_from(["open", "other", "joined", "deferred", "ghost"]),
        st.sampled_from([None, "k1", "k2"]),
        st.sampled_from([1.0, WAIT, WAIT + 0.5]),  # seconds after T0: in, at, past the window
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(first=_REWARD_CASES, second=_REWARD_CASES)
def test_reward_batches_match_the_memory_store_reward_by_reward(
    first: list[tuple[str, str | None, float]], second: list[tuple[str, str | None, float]]
) -> None:
    """Whatever a batch mixes (unknown, joined, deferred events; keys repeated within it or
    from an earlier batch; on time and late), each reward's outcome, the counts and the rewards
    counted for joining are the specification's (MemoryStore's). SQLite stores a batch in
    chunks of statements; chunks of 7 here put repeats on both sides of a chunk boundary."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(sqlite_writes, "REWARD_CHUNK", 7),
    ):
        stores: list[Store] = [MemoryStore(), SQLiteStore(Path(tmp) / "r.db")]
        try:
            seen = []
            for store in stores:
                early = decision("joined", at=T0 - 100)
                write(store, early, decision("open"), decision("other"))
                write(store, decision("deferred", defer=True))
                assert join_due(store, CONFIG, T0 - 100 + WAIT + GRACE, 10)  # "joined" only
                outcomes = [
                    write(
                        store,
                        rewards=tuple(
                            reward(event, T0 + after, value=n / 10, key=key)
                            for n, (event, key, after) in enumerate(batch)
                        ),
                    ).rewards
                    for batch in (first, second)
                ]
                ids = ["open", "other", "joined", "deferred", "ghost"]
                seen.append((outcomes, store.counts(T0), store.counted_rewards(ids)))
            assert seen[1] == seen[0]
        finally:
            for store in stores:
                store.close()


def test_counted_rewards(store: EventLog) -> None:
    log_events(store, 3)
    found = store.counted_rewards(["e0", "e1", "e2", "missing"])
    assert sorted(found) == ["e0", "e2"]
    assert [r.value for r in found["e0"]] == [0.5]


# -- activations ------------------------------------------------------------------------


def test_activation_outcomes(store: EventLog) -> None:
    write(store, decision("active"), decision("d1", defer=True), decision("d2", defer=True))
    result = write(
        store,
        activations=(
            Activation(event_id="d1", at=T0 + 4, wait=WAIT),
            Activation(event_id="d1", at=T0 + 5, wait=WAIT),
            Activation(event_id="active", at=T0 + 1, wait=WAIT),
            Activation(event_id="d2", at=T0 + WAIT + 0.5, wait=WAIT),
            Activation(event_id="ghost", at=T0, wait=WAIT),
        ),
    )
    assert result.activations == (
        ActivationOutcome.ACTIVATED,
        ActivationOutcome.ALREADY_ACTIVE,
        ActivationOutcome.ALREADY_ACTIVE,
        ActivationOutcome.EXPIRED,
        ActivationOutcome.UNKNOWN_EVENT,
    )
    d1 = store.get_decision("d1")
    assert d1 is not None
    assert (d1.active, d1.activated_at, d1.close_at) == (True, T0 + 4, T0 + 4 + WAIT)
    d2 = store.get_decision("d2")
    assert d2 is not None and not d2.active and d2.close_at is None
    assert store.get_decision("active") == decision("active")


def test_activated_event_is_due_a_window_after_activation(store: EventLog) -> None:
    write(store, decision("d", defer=True))
    write(store, activations=(Activation(event_id="d", at=T0 + 7, wait=WAIT),))
    close = T0 + 7 + WAIT
    assert store.due(close + GRACE - 0.01, 10) == []
    assert store.counts(close + GRACE - 0.01).pending_join == 0
    [(due, _)] = store.due(close + GRACE, 10)
    assert due.event_id == "d" and due.close_at == close
    assert write(store, rewards=(reward("d", close + 0.5),)).rewards == (RewardOutcome.LATE,)


def test_expired_event_is_never_due(store: EventLog) -> None:
    write(store, decision("d", defer=True))
    write(store, activations=(Activation(event_id="d", at=T0 + WAIT + 1, wait=WAIT),))
    assert store.due(T0 + 1_000, 10) == []


# -- due --------------------------------------------------------------------------------


def test_due_orders_by_window_close_then_event_id_and_honours_limit(store: EventLog) -> None:
    write(
        store,
        decision("c", at=T0 + 2),
        decision("b", at=T0),
        decision("a", at=T0 + 2),
        decision("late-comer", at=T0 + 50),
        decision("z", at=T0 + 1),
    )
    now = T0 + 2 + WAIT + GRACE
    assert [d.event_id for d, _ in store.due(now, 10)] == ["b", "z", "a", "c"]
    assert [d.event_id for d, _ in store.due(now, 2)] == ["b", "z"]
    assert store.due(now, 0) == []
    assert [d.event_id for d, _ in store.due(T0 + WAIT + GRACE, 10)] == ["b"]
    assert store.due(T0 + WAIT + GRACE - 1e-6, 10) == []


def test_due_skips_joined_events(store: EventLog) -> None:
    a, b = decision("a"), decision("b", at=T0 + 1)
    write(store, a, b)
    store.append_joined([joined(a)])
    assert [d.event_id for d, _ in store.due(T0 + 100, 10)] == ["b"]


# -- joined events ----------------------------------------------------------------------


def test_append_joined_numbers_events_and_is_idempotent(store: EventLog) -> None:
    ds = [decision(f"e{i}", at=T0 + i) for i in range(4)]
    write(store, *ds)
    assert store.last_seq() == 0
    first = store.append_joined([joined(ds[0]), joined(ds[1], 0.5)])
    assert [e.seq for e in first] == [1, 2]
    assert [e.decision.event_id for e in first] == ["e0", "e1"]
    again = store.append_joined(
        [joined(ds[1]), joined(ds[2], defaulted=True), joined(ds[2]), joined(decision("ghost"))]
    )
    assert [(e.decision.event_id, e.seq, e.defaulted) for e in again] == [("e2", 3, True)]
    assert store.append_joined([joined(ds[0])]) == []
    assert store.last_seq() == 3
    assert [d.event_id for d, _ in store.due(T0 + 100, 10)] == ["e3"]


def test_append_joined_keeps_order_over_many_events(store: EventLog) -> None:
    # More events than one statement of the SQLite store appends.
    ds = [decision(f"m{i}", at=T0 + i / 1000) for i in range(450)]
    write(store, *ds)
    appended = store.append_joined([joined(d) for d in ds])
    assert [e.seq for e in appended] == list(range(1, 451))
    assert [e.decision.event_id for e in appended] == [d.event_id for d in ds]
    assert store.joined_after(0, 1000) == appended


def test_joined_after_pages_by_cursor(store: EventLog) -> None:
    ds = [decision(f"e{i}", at=T0 + i) for i in range(5)]
    write(store, *ds)
    appended = store.append_joined([joined(d, value=i / 10) for i, d in enumerate(ds)])
    assert store.joined_after(0, 2) == appended[:2]
    assert store.joined_after(2, 2) == appended[2:4]
    assert store.joined_after(4, 2) == appended[4:]
    assert store.joined_after(5, 2) == []
    assert store.joined_after(1, 0) == []
    page = store.joined_after(0, 100)
    assert [e.seq for e in page] == [1, 2, 3, 4, 5]
    assert [e.reward for e in page] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert page[3].decision == ds[3]


def test_join_due_joins_each_event_once_with_its_rewards(store: EventLog) -> None:
    config = CONFIG.replace(reward_aggregation=Aggregation.SUM, default_reward=-0.5)
    write(
        store,
        decision("a"),
        decision("b", at=T0 + 1),
        rewards=(reward("a", T0 + 1, 0.25), reward("a", T0 + 2, 0.5)),
    )
    now = T0 + 1 + WAIT + GRACE
    appended = join_due(store, config, now, 10)
    assert [
        (e.seq, e.decision.event_id, e.reward, e.reward_count, e.defaulted) for e in appended
    ] == [
        (1, "a", 0.75, 2, False),
        (2, "b", -0.5, 0, True),
    ]
    assert join_due(store, config, now + 100, 10) == []
    assert store.joined_after(0, 10) == appended


# -- counts -------------------------------------------------------------------------------


def test_counts(store: EventLog) -> None:
    a, b, c = decision("a"), decision("b", at=T0 + 1, chosen=1), decision("c", at=T0 + 30)
    write(
        store,
        a,
        b,
        c,
        decision("deferred", defer=True, chosen=1),
        rewards=(reward("a", T0 + 1), reward("a", T0 + 99), reward("ghost", T0)),
    )
    counts = store.counts(T0 + 1 + WAIT + GRACE)
    assert counts.decisions == 4
    assert counts.explored == 2
    assert (counts.rewards, counts.late_rewards) == (2, 1)
    assert (counts.joined, counts.defaulted) == (0, 0)
    assert (counts.pending_join, counts.oldest_pending_close_at) == (2, T0 + WAIT)
    assert counts.next_close_at == T0 + WAIT  # a's window: due or not, the earliest
    store.append_joined([joined(a), joined(b, defaulted=True)])
    counts = store.counts(T0 + 1 + WAIT + GRACE)
    assert (counts.joined, counts.defaulted) == (2, 1)
    assert (counts.pending_join, counts.oldest_pending_close_at) == (0, None)
    assert counts.next_close_at == T0 + 30 + WAIT  # c's, not yet due (the deferred has none)
    assert store.counts(T0 + 1_000).pending_join == 1
