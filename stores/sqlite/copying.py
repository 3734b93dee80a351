"""SQL for copying a loop out of and into the SQLite store (:class:`bandit.store.LoopCopy`).

Rows are read in pages by their keys and written back with their stored columns: decisions with
their window, rewards with ``late``, joined events with ``seq``, models with ``version``. The
schema's triggers do the rest, as for rows written the usual way: ``counters`` counts each row
inserted, and ``pending`` takes an active decision with a window when it is inserted and lets it
go when its joined row is. Each function runs inside the transaction its
:class:`stores.sqlite.store.SQLiteStore` method opened.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlite_utils import Database

from bandit.events import Decision, JoinedEvent, ModelRecord, Reward, StoredReward
from stores import rows
from stores.sqlite.connection import select_tuples

_DECISION_RESTORE = (
    f"INSERT INTO decisions ({', '.join(rows.DECISION_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in rows.DECISION_COLUMNS)})"
)
"""Insert a decision; an event id stored already is an ``IntegrityError``."""


def copy_decisions(db: Database, after: str, limit: int) -> list[Decision]:
    """Decisions with ``event_id > after`` in event id order (UTF-8 bytes compare in code point
    order, as Python's strings do)."""
    found = select_tuples(
        db,
        f"SELECT {rows.DECISION_SELECT} FROM decisions d WHERE event_id > ? "
        "ORDER BY event_id LIMIT ?",
        [after, limit],
    )
    return [rows.decision_from_row(row) for row in found]


def copy_rewards(db: Database, after: int, limit: int) -> list[tuple[int, StoredReward]]:
    """Rewards with ``id > after`` in ``id`` (arrival) order, each with its ``id``."""
    found = select_tuples(
        db,
        f"SELECT id, late, {rows.REWARD_SELECT} FROM rewards WHERE id > ? ORDER BY id LIMIT ?",
        [after, limit],
    )
    return [
        (int(row[0]), StoredReward(reward=rows.reward_from_row(row[2:]), late=bool(row[1])))
        for row in found
    ]


def copy_meta(db: Database) -> dict[str, str]:
    """Every ``meta`` row, by key."""
    return {str(key): str(value) for key, value in select_tuples(db, "SELECT key, value FROM meta")}


def restore_rows(
    db: Database,
    decisions: Sequence[Decision],
    rewards: Sequence[StoredReward],
    joined: Sequence[JoinedEvent],
) -> None:
    """Insert the rows as given; a key held already, or a row of an unknown decision (a foreign
    key), is an ``IntegrityError`` and the caller's transaction rolls back."""
    for d in decisions:
        db.conn.execute(_DECISION_RESTORE, rows.decision_params(d))
    for stored in rewards:
        r: Reward = stored.reward
        db.conn.execute(
            "INSERT INTO rewards (event_id, value, received_at, request_key, late) "
            "VALUES (?, ?, ?, ?, ?)",
            [r.event_id, r.value, r.received_at, r.request_key, int(stored.late)],
        )
    for e in joined:
        if e.seq < 1:
            raise ValueError(f"joined event {e.decision.event_id!r} has no seq")
        db.conn.execute(
            "INSERT INTO joined (seq, event_id, reward, reward_count, defaulted, joined_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [e.seq, e.decision.event_id, e.reward, e.reward_count, int(e.defaulted), e.joined_at],
        )


def restore_model(db: Database, record: ModelRecord) -> None:
    """Insert a model with its version; ``AUTOINCREMENT`` moves the next version past it."""
    db.conn.execute(
        "INSERT INTO models (version, created_at, data, arguments, learned_count, cursor, "
        "restored_from) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            record.version,
            record.created_at,
            record.data,
            record.arguments,
            record.learned_count,
            record.cursor,
            record.restored_from,
        ],
    )


def restore_seq(db: Database, last_seq: int) -> None:
    """Raise the ``AUTOINCREMENT`` mark of ``joined`` (its ``sqlite_sequence`` row, absent
    until the first insert) to ``last_seq``, so later inserts number after it."""
    raised = db.conn.execute(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'joined'", [last_seq]
    )
    if raised.rowcount == 0:
        db.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('joined', ?)", [last_seq])


def restore_totals(db: Database, *, joined: int, defaulted: int) -> None:
    """Set the ``counters`` that deletions leave alone."""
    db.conn.execute(
        "UPDATE counters SET joined = ?, defaulted = ? WHERE id = 1", [joined, defaulted]
    )
