"""The ``LogArchive`` contract: time windows of joined events, retention and imports."""

from __future__ import annotations

from typing import Protocol

from bandit.events import JoinedEvent, WriteBatch
from bandit.loop import join_due
from bandit.store import EventLog, LogArchive
from tests.stores.conftest import CONFIG, GRACE, T0, WAIT, decision, log_events


class Archive(EventLog, LogArchive, Protocol):
    """The archive's checks write and join the logs they read back through the event log."""


def test_joined_between_pages_by_decision_time(store: Archive) -> None:
    log_events(store, 10)
    window = store.joined_between(T0 + 2, T0 + 7, 0, 100)
    assert [e.decision.event_id for e in window] == [f"e{i}" for i in range(2, 7)]
    page = store.joined_between(T0 + 2, T0 + 7, 0, 2)
    rest = store.joined_between(T0 + 2, T0 + 7, page[-1].seq, 100)
    assert [e.seq for e in page + rest] == [e.seq for e in window]
    assert store.joined_between(T0 + 2, T0 + 7, 0, 0) == []


def test_log_range(store: Archive) -> None:
    assert store.log_range() is None
    log_events(store, 5)
    assert store.log_range() == (T0, T0 + 4)


def test_delete_logs_keeps_unlearned_and_never_reuses_seq(store: Archive) -> None:
    events = log_events(store, 6)
    pending = decision("late", at=T0 + 50)
    store.write(WriteBatch(decisions=(pending,)))
    deleted = store.delete_logs(before=None, through_seq=events[3].seq)
    assert deleted == 4
    assert [e.decision.event_id for e in store.joined_after(0, 100)] == ["e4", "e5"]
    assert store.get_decision("e0") is None and store.get_decision("late") is not None
    assert store.counts(T0).decisions == 3
    assert store.counts(T0).rewards == 1  # e4's reward; e0 and e2's went with their events
    assert store.last_seq() == events[-1].seq
    more = join_due(store, CONFIG, T0 + 50 + WAIT + GRACE + 1, 10)
    assert more[0].seq == events[-1].seq + 1
    assert [e.seq for e in store.joined_after(events[3].seq, 10)] == [
        events[4].seq,
        events[5].seq,
        more[0].seq,
    ]


def test_retention_deletes_old_learned_and_never_activated(store: Archive) -> None:
    events = log_events(store, 6)
    deferred = decision("deferred", at=T0 + 1, defer=True)
    store.write(WriteBatch(decisions=(deferred,)))
    deleted = store.delete_logs(before=T0 + 3, through_seq=events[-1].seq)
    assert deleted == 4  # e0, e1, e2 and the never-activated one
    assert store.get_decision("deferred") is None
    assert store.log_range() == (T0 + 3, T0 + 5)


def test_import_joined_appends_after_existing_and_skips_known_ids(store: Archive) -> None:
    events = log_events(store, 3)
    fresh = [
        JoinedEvent(
            decision=decision(f"imported{i}", at=T0 - 100 + i),
            reward=1.0,
            reward_count=1,
            defaulted=False,
            joined_at=T0 - 50,
        )
        for i in range(2)
    ]
    appended = store.import_joined([*fresh, events[0]])
    assert [e.seq for e in appended] == [events[-1].seq + 1, events[-1].seq + 2]
    assert store.get_decision("imported0") == fresh[0].decision
    learned = store.joined_after(events[-1].seq, 10)
    assert [(e.decision, e.reward, e.seq) for e in learned] == [
        (e.decision, e.reward, e.seq) for e in appended
    ]
    assert store.log_range() == (T0 - 100, T0 + 2)
    assert store.due(T0 + 10_000, 10) == []  # imported events are joined already
