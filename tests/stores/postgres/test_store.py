"""What the PostgreSQL store adds to the contract suites: migrations it refuses, partitions that
retention drops whole, a reward and a join that cannot pass each other, a lease that follows its
session, change notices, and recovery from terminated connections. Each test has a schema of
its own (:func:`tests.pg.fresh_schema`)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from bandit import join as rules
from bandit.errors import StoreUnavailable
from bandit.events import WriteBatch
from bandit.loop import join_due
from stores.postgres import schema as pg_schema
from stores.postgres.store import PostgresStore, SchemaMismatch
from tests import pg
from tests.stores.conftest import CONFIG, GRACE, T0, decision, log_events, reward

DAY = pg_schema.DAY


@pytest.fixture
def schema() -> Iterator[str]:
    with pg.fresh_schema() as name:
        yield name


def open_store(schema: str, **kwargs: object) -> PostgresStore:
    return PostgresStore(pg.URL, schema=schema, **kwargs)  # type: ignore[arg-type]


def admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg.URL, autocommit=True)


def test_a_schema_never_migrated_is_refused_with_what_to_do() -> None:
    pg.require()
    name = f"t_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        with pytest.raises(SchemaMismatch, match="banditd migrate"):
            open_store(name)
        assert pg_schema.migrate(pg.URL, schema=name) == (0, len(pg_schema.MIGRATIONS))
        assert pg_schema.migrate(pg.URL, schema=name) == (len(pg_schema.MIGRATIONS),) * 2
        open_store(name).close()
    finally:
        with admin() as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def test_a_newer_schema_is_refused_by_stores_and_by_migrate(schema: str) -> None:
    with admin() as conn:
        conn.execute(
            sql.SQL("UPDATE {}.banditd_schema SET version = version + 1").format(
                sql.Identifier(schema)
            )
        )
    with pytest.raises(pg_schema.SchemaTooNew, match="newer"):
        open_store(schema)
    with pytest.raises(pg_schema.SchemaTooNew):
        pg_schema.migrate(pg.URL, schema=schema)


def partitions(schema: str) -> set[str]:
    with admin() as conn:
        found = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename ~ '_d[0-9]+$'",
            [schema],
        ).fetchall()
    return {str(row[0]) for row in found}


def test_retention_drops_the_partitions_of_whole_days_and_keeps_the_totals(schema: str) -> None:
    store = open_store(schema)
    try:
        # Three days of events, 8 a day, all joined (log_events rewards the even ones).
        start = 10 * DAY
        events = log_events(store, 24, start=start, step=DAY / 8)
        assert len(events) == 24
        assert {f"decisions_d{d}" for d in (10, 11, 12)} <= partitions(schema)
        before = store.counts(start + 4 * DAY)

        deleted = store.delete_logs(before=start + 2 * DAY, through_seq=store.last_seq())

        assert deleted == 16
        left = partitions(schema)
        assert (
            not {f"{t}_d{d}" for t in ("decisions", "rewards", "joined") for d in (10, 11)} & left
        )
        assert "decisions_d12" in left
        after = store.counts(start + 4 * DAY)
        assert after.decisions == before.decisions - 16
        assert after.rewards == before.rewards - 8
        assert after.joined == before.joined  # a total, as the cursor counts in seq
        assert store.get_decision(events[0].decision.event_id) is None
        assert store.get_decision(events[-1].decision.event_id) == events[-1].decision
        # A day dropped can be written again (an import of old events, say).
        store.write(WriteBatch(decisions=(decision("late-import", at=start + 1),)))
        assert store.get_decision("late-import") is not None
    finally:
        store.close()


def test_a_day_with_an_unlearned_event_is_not_dropped(schema: str) -> None:
    store = open_store(schema)
    try:
        events = log_events(store, 4, start=5 * DAY, step=60)
        deleted = store.delete_logs(before=7 * DAY, through_seq=events[1].seq)
        assert deleted == 2  # rows, not the day: events[2:] are not learned yet
        assert "decisions_d5" in partitions(schema)
        assert [e.seq for e in store.joined_after(0, 10)] == [events[2].seq, events[3].seq]
    finally:
        store.close()


def test_a_reward_that_lands_after_the_join_read_its_event_waits_for_the_next_join(
    schema: str,
) -> None:
    store, edge = open_store(schema), open_store(schema)
    try:
        d = decision("e1")
        store.write(WriteBatch(decisions=(d,)))
        now = d.close_at + GRACE + 1  # type: ignore[operator]
        due = store.due(now, 10)
        assert [x.event_id for x, _ in due] == ["e1"]
        # Received before the window closed, committed by another edge after due() read it.
        edge.write(WriteBatch(rewards=(reward("e1", T0 + 1, 0.75),)))
        appended = store.append_joined(
            [
                rules.join(
                    x,
                    rs,
                    aggregation=CONFIG.reward_aggregation,
                    default_reward=CONFIG.default_reward,
                    now=now,
                )
                for x, rs in due
            ]
        )
        assert appended == []  # it would have been joined without its reward
        joined = join_due(store, CONFIG, now, 10)
        assert [(j.decision.event_id, j.reward, j.reward_count) for j in joined] == [
            ("e1", 0.75, 1)
        ]
    finally:
        edge.close()
        store.close()


def test_a_lease_whose_session_ended_is_taken_at_once_before_its_expiry(schema: str) -> None:
    name = f"lease-{uuid.uuid4().hex[:8]}"
    holder = open_store(schema, application_name=name)
    standby = open_store(schema)
    try:
        assert holder.acquire_lease("a", T0, 60.0)
        assert not standby.acquire_lease("b", T0 + 1, 60.0)
        with admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                [name],
            )
        assert standby.wait_lease(10.0)
        assert standby.acquire_lease("b", T0 + 2, 60.0)  # long before T0 + 60
        lease = standby.lease(T0 + 2)
        assert lease is not None and lease.holder == "b" and lease.acquired_at == T0 + 2
        assert not holder.acquire_lease("a", T0 + 3, 60.0)  # back, but the lease is b's
    finally:
        standby.close()
        holder.close()


def test_a_standby_waiting_on_the_lease_wakes_when_the_holder_releases_it(schema: str) -> None:
    holder, standby = open_store(schema), open_store(schema)
    try:
        assert holder.acquire_lease("a", T0, 60.0)
        woke = threading.Event()

        def wait() -> None:
            standby.wait_lease(30.0)
            woke.set()

        waiter = threading.Thread(target=wait)
        waiter.start()
        assert not woke.wait(0.5)  # blocked while a holds it
        holder.release_lease("a")
        waiter.join(timeout=30.0)
        assert woke.is_set()
        assert standby.acquire_lease("b", T0 + 1, 60.0)
    finally:
        standby.close()
        holder.close()


def test_a_change_made_through_another_handle_is_announced(schema: str) -> None:
    edge, trainer = open_store(schema), open_store(schema)
    try:
        seen = threading.Event()
        edge.watch_changes(seen.set)
        assert seen.wait(10.0)  # the first notice comes when the listener connects
        seen.clear()
        trainer.publish_model(
            created_at=T0,
            data=b"m",
            arguments="--cb_explore_adf",
            learned_count=0,
            cursor=0,
            keep=5,
        )
        assert seen.wait(10.0)
        assert edge.generation() == trainer.generation() > 0
    finally:
        trainer.close()
        edge.close()


def test_terminated_connections_fail_one_call_then_the_store_recovers(schema: str) -> None:
    name = f"edge-{uuid.uuid4().hex[:8]}"
    store = open_store(schema, application_name=name)
    try:
        store.write(WriteBatch(decisions=(decision("e1"),)))
        with admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                [name],
            )
        with pytest.raises(StoreUnavailable, match="PostgreSQL"):
            store.write(WriteBatch(decisions=(decision("e2"),)))
        assert store.failing_writes() is not None
        assert store.get_decision("e2") is None  # nothing of the failed write
        store.write(WriteBatch(decisions=(decision("e2"),)))
        assert store.failing_writes() is None
        assert store.get_decision("e2") is not None
    finally:
        store.close()


def test_partitions_follow_the_decision_day_and_rewards_live_with_their_decision(
    schema: str,
) -> None:
    store = open_store(schema)
    try:
        d = decision("late-night", at=3 * DAY - 1)
        store.write(WriteBatch(decisions=(d,)))
        store.write(WriteBatch(rewards=(reward("late-night", 3 * DAY + 1),)))
        with admin() as conn:
            days = conn.execute(
                sql.SQL("SELECT day FROM {}.rewards").format(sql.Identifier(schema))
            ).fetchall()
        assert days == [(2,)]
    finally:
        store.close()
