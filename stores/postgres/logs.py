"""SQL for the PostgreSQL store's joined events, retention, imports and restores.

Each function runs inside the transaction that :class:`stores.postgres.store.PostgresStore`
opened for it. Numbering (``seq``) is :func:`number`'s alone: it takes the numbers from the one
``seq_mark`` row, whose lock lasts to the end of the transaction, so they commit in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from bandit.events import Decision, JoinedEvent, StoredReward
from stores import rows
from stores.postgres.connection import Conn
from stores.postgres.schema import PARTITIONED, day_of, partition_name
from stores.postgres.writes import (
    DECISION_INSERT,
    ON_DAY,
    add_counts,
    claim_event_ids,
    counted_rewards,
    insert_decisions,
)


def append_joined(
    conn: Conn, events: list[JoinedEvent], counted_at_due: dict[str, int], shard: int
) -> list[JoinedEvent]:
    """Number and insert the joined events of unjoined decisions (the first of repeats), and
    take them out of ``pending``; an event whose counted rewards are not what ``due()`` read
    (``counted_at_due``: a reward committed since) is left for the next join."""
    first: dict[str, JoinedEvent] = {}
    for e in events:
        first.setdefault(e.decision.event_id, e)
    ids = sorted(first)
    conn.execute(
        "SELECT 1 FROM pending WHERE event_id = ANY(%b) ORDER BY event_id FOR UPDATE",
        [ids],
    )
    unjoined = {
        event_id: day
        for event_id, day in conn.execute(
            "SELECT e.event_id, e.day FROM event_days e WHERE e.event_id = ANY(%b) "
            "AND NOT EXISTS (SELECT 1 FROM joined j "
            "WHERE j.day = e.day AND j.event_id = e.event_id)",
            [ids],
        )
    }
    recount = [i for i in unjoined if i in counted_at_due]
    now_counted = {
        event_id: len(found) for event_id, found in counted_rewards(conn, recount).items()
    }
    fresh = []
    for e in events:
        event_id = e.decision.event_id
        if event_id not in unjoined or first[event_id] is not e:
            continue
        if (
            event_id in counted_at_due
            and now_counted.get(event_id, 0) != (counted_at_due[event_id])
        ):
            continue  # a reward landed since due() read it: the next join takes it
        fresh.append(e)
    if not fresh:
        return []
    numbered = number(conn, fresh)
    insert_joined(conn, numbered, [unjoined[e.decision.event_id] for e in numbered])
    conn.execute(
        "DELETE FROM pending WHERE event_id = ANY(%b)",
        [[e.decision.event_id for e in numbered]],
    )
    add_counts(
        conn,
        shard,
        joined=len(numbered),
        defaulted=sum(e.defaulted for e in numbered),
    )
    return numbered


def drop_day(conn: Conn, day: int, before: float | None, through_seq: int, shard: int) -> int:
    """Drop a day's three partitions if every decision in them may be deleted (as
    ``delete_logs`` would delete it row by row); returns how many decisions went, 0 when the
    day must wait. Its parents' locks are waited for briefly (a busy day raises, and its rows
    are deleted one chunk at a time instead)."""
    names = {t: sql.Identifier(partition_name(t, day)) for t in PARTITIONED}
    conn.execute("SELECT set_config('lock_timeout', '200ms', true)")
    kept = conn.execute(
        sql.SQL(
            "SELECT 1 FROM {d} d WHERE NOT (EXISTS (SELECT 1 FROM {j} j "
            "WHERE j.event_id = d.event_id AND j.seq <= %s) OR (%s AND d.active = 0)) "
            "LIMIT 1"
        ).format(d=names["decisions"], j=names["joined"]),
        [through_seq, before is not None],
    ).fetchone()
    if kept is not None:
        return 0
    totals = conn.execute(
        sql.SQL(
            "SELECT (SELECT COUNT(*) FROM {d}), (SELECT COALESCE(SUM(explored), 0) "
            "FROM {d}), (SELECT COUNT(*) FROM {r}), "
            "(SELECT COALESCE(SUM(late), 0) FROM {r})"
        ).format(d=names["decisions"], r=names["rewards"])
    ).fetchone()
    assert totals is not None
    conn.execute("DELETE FROM event_days WHERE day = %s", [day])
    conn.execute("DELETE FROM pending WHERE day = %s", [day])
    for table in PARTITIONED:
        conn.execute(sql.SQL("DROP TABLE {}").format(names[table]))
    conn.execute("DELETE FROM partitions WHERE day = %s", [day])
    add_counts(
        conn,
        shard,
        decisions=-int(totals[0]),
        explored=-int(totals[1]),
        rewards=-int(totals[2]),
        late_rewards=-int(totals[3]),
    )
    return int(totals[0])


def delete_chunk(
    conn: Conn, ids: list[str], before: float | None, through_seq: int, shard: int
) -> int:
    doomed = conn.execute(
        f"SELECT d.day, d.event_id, d.explored FROM event_days e JOIN decisions d "
        f"ON {ON_DAY.format('e')} WHERE e.event_id = ANY(%b) AND d.timestamp < %s "
        "AND (EXISTS (SELECT 1 FROM joined j WHERE j.day = d.day AND "
        "j.event_id = d.event_id AND j.seq <= %s) OR (%s AND d.active = 0)) "
        "ORDER BY d.event_id FOR UPDATE OF d",
        [ids, before_bound(before), through_seq, before is not None],
    ).fetchall()
    if not doomed:
        return 0
    days = [int(r[0]) for r in doomed]
    event_ids = [str(r[1]) for r in doomed]
    pairs = "(SELECT * FROM unnest(%b::int4[], %b::text[]) AS x(day, event_id))"
    removed = conn.execute(
        f"DELETE FROM rewards r USING {pairs} x WHERE r.day = x.day "
        "AND r.event_id = x.event_id RETURNING r.late",
        [days, event_ids],
    ).fetchall()
    conn.execute(
        f"DELETE FROM joined j USING {pairs} x WHERE j.day = x.day AND j.event_id = x.event_id",
        [days, event_ids],
    )
    conn.execute(
        f"DELETE FROM decisions d USING {pairs} x WHERE d.day = x.day AND d.event_id = x.event_id",
        [days, event_ids],
    )
    conn.execute("DELETE FROM pending WHERE event_id = ANY(%b)", [event_ids])
    conn.execute("DELETE FROM event_days WHERE event_id = ANY(%b)", [event_ids])
    add_counts(
        conn,
        shard,
        decisions=-len(doomed),
        explored=-sum(int(r[2]) for r in doomed),
        rewards=-len(removed),
        late_rewards=-sum(int(r[0]) for r in removed),
    )
    return len(doomed)


def import_joined(conn: Conn, events: list[JoinedEvent], shard: int) -> list[JoinedEvent]:
    """Insert each event's decision and joined row (no ``pending`` entry: it is joined), the
    first of repeats, skipping known ids; numbered after every joined event."""
    first: dict[str, JoinedEvent] = {}
    for e in events:
        first.setdefault(e.decision.event_id, e)
    fresh = claim_event_ids(conn, {i: e.decision for i, e in first.items()})
    new = [e for e in events if e.decision.event_id in fresh and first[e.decision.event_id] is e]
    if not new:
        return []
    decisions = [e.decision for e in new]
    # Imported decisions are joined already: no pending entry.
    params = [rows.decision_params(d) for d in decisions]
    conn.execute(
        DECISION_INSERT,
        [
            [day_of(d.timestamp) for d in decisions],
            *([p[column] for p in params] for column in rows.DECISION_COLUMNS),
        ],
    )
    numbered = number(conn, new)
    insert_joined(conn, numbered, [day_of(e.decision.timestamp) for e in numbered])
    add_counts(
        conn,
        shard,
        decisions=len(new),
        explored=sum(d.explored for d in decisions),
        joined=len(new),
        defaulted=sum(e.defaulted for e in new),
    )
    return numbered


def restore_rows(
    conn: Conn,
    decisions: Sequence[Decision],
    rewards: Sequence[StoredReward],
    joined: Sequence[JoinedEvent],
    shard: int,
) -> None:
    """Write rows read from another store as they were
    (:meth:`bandit.store.LoopCopy.restore_rows`); ``ValueError`` for a key stored already or a
    row whose decision is missing."""
    if decisions:
        ids = [d.event_id for d in decisions]
        taken = conn.execute(
            "INSERT INTO event_days (event_id, day) "
            "SELECT * FROM unnest(%b::text[], %b::int4[]) ON CONFLICT DO NOTHING "
            "RETURNING event_id",
            [ids, [day_of(d.timestamp) for d in decisions]],
        ).fetchall()
        if len(taken) != len(set(ids)) or len(ids) != len(set(ids)):
            raise ValueError("restore_rows: a decision's event id is stored already")
        insert_decisions(conn, decisions)
        add_counts(
            conn,
            shard,
            decisions=len(decisions),
            explored=sum(d.explored for d in decisions),
        )
    if rewards:
        ids = sorted({r.reward.event_id for r in rewards})
        days: dict[str, int] = dict(
            conn.execute(
                "SELECT event_id, day FROM event_days WHERE event_id = ANY(%b)", [ids]
            ).fetchall()
        )
        if len(days) != len(ids):
            raise ValueError("restore_rows: a reward's decision is not stored")
        conn.execute(
            "INSERT INTO rewards (day, id, event_id, value, received_at, request_key, "
            "late) SELECT v.day, nextval('reward_ids'), v.event_id, v.value, "
            "v.received_at, v.request_key, v.late FROM unnest(%b::int4[], %b::text[], "
            "%b::float8[], %b::float8[], %b::text[], %b::int4[]) WITH ORDINALITY "
            "AS v(day, event_id, value, received_at, request_key, late, n) ORDER BY v.n",
            [
                [days[r.reward.event_id] for r in rewards],
                [r.reward.event_id for r in rewards],
                [r.reward.value for r in rewards],
                [r.reward.received_at for r in rewards],
                [r.reward.request_key for r in rewards],
                [int(r.late) for r in rewards],
            ],
        )
        add_counts(
            conn,
            shard,
            rewards=len(rewards),
            late_rewards=sum(r.late for r in rewards),
        )
    if joined:
        ids = [e.decision.event_id for e in joined]
        days = dict(
            conn.execute(
                "SELECT event_id, day FROM event_days WHERE event_id = ANY(%b)", [ids]
            ).fetchall()
        )
        if len(days) != len(set(ids)):
            raise ValueError("restore_rows: a joined event's decision is not stored")
        insert_joined(conn, list(joined), [days[i] for i in ids])
        conn.execute("DELETE FROM pending WHERE event_id = ANY(%b)", [ids])
        conn.execute(
            "UPDATE seq_mark SET value = GREATEST(value, %s) WHERE id = 1",
            [max(e.seq for e in joined)],
        )
        add_counts(
            conn,
            shard,
            joined=len(joined),
            defaulted=sum(e.defaulted for e in joined),
        )


def number(conn: Conn, events: list[JoinedEvent]) -> list[JoinedEvent]:
    """Give ``events`` the next ``seq`` values from ``seq_mark`` (its row stays locked to the
    end of the transaction, so numbers commit in order)."""
    row = conn.execute(
        "UPDATE seq_mark SET value = value + %s WHERE id = 1 RETURNING value", [len(events)]
    ).fetchone()
    assert row is not None
    start = int(row[0]) - len(events) + 1
    return [
        JoinedEvent(
            decision=e.decision,
            reward=e.reward,
            reward_count=e.reward_count,
            defaulted=e.defaulted,
            joined_at=e.joined_at,
            seq=start + i,
        )
        for i, e in enumerate(events)
    ]


def insert_joined(conn: Conn, events: list[JoinedEvent], days: list[int]) -> None:
    conn.execute(
        "INSERT INTO joined (day, seq, event_id, reward, reward_count, defaulted, joined_at) "
        "SELECT * FROM unnest(%b::int4[], %b::int8[], %b::text[], %b::float8[], %b::int4[], "
        "%b::int4[], %b::float8[])",
        [
            days,
            [e.seq for e in events],
            [e.decision.event_id for e in events],
            [e.reward for e in events],
            [e.reward_count for e in events],
            [int(e.defaulted) for e in events],
            [e.joined_at for e in events],
        ],
    )


def before_bound(before: float | None) -> float:
    """``before`` as a bound for ``timestamp < …`` (None: no bound)."""
    return float("inf") if before is None else before
