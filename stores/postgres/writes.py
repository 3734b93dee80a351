"""SQL for the PostgreSQL store's write batches (decisions, activations, rewards), the reads
of decisions and rewards they share with the learner, and the running totals.

Each function runs inside the transaction that :class:`stores.postgres.store.PostgresStore`
opened for it (a group-commit batch is one). Rows become values through :mod:`stores.rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from bandit import join as rules
from bandit.events import (
    Activation,
    ActivationOutcome,
    Decision,
    Reward,
    RewardOutcome,
    WriteBatch,
    WriteResult,
)
from stores import rows
from stores.postgres.connection import Conn
from stores.postgres.schema import day_of

DECISION_TYPES = (
    "text",
    "float8",
    "text",
    "text",
    "int4",
    "int4",
    "int8",
    "text",
    "int4",
    "float8",
    "float8",
    "int4",
)
"""Array types of :data:`stores.rows.DECISION_COLUMNS`, for inserts from ``unnest``."""

DECISION_INSERT = (
    f"INSERT INTO decisions (day, {', '.join(rows.DECISION_COLUMNS)}) "
    f"SELECT * FROM unnest(%b::int4[], "
    + ", ".join(f"%b::{kind}[]" for kind in DECISION_TYPES)
    + ")"
)

ON_DAY = "d.day = {0}.day AND d.event_id = {0}.event_id"
"""How a decision row of ``d`` meets a row of another table with ``day`` and ``event_id``
(``format`` it with that table's alias)."""


def write_batch(conn: Conn, batch: WriteBatch, shard: int) -> WriteResult:
    decisions = put_decisions(conn, batch.decisions, shard)
    activations = tuple(activate(conn, a) for a in batch.activations)
    rewards = put_rewards(conn, batch.rewards, shard)
    return WriteResult(decisions=decisions, rewards=rewards, activations=activations)


def put_decisions(conn: Conn, decisions: Sequence[Decision], shard: int) -> tuple[Decision, ...]:
    if not decisions:
        return ()
    first: dict[str, Decision] = {}
    for d in decisions:
        first.setdefault(d.event_id, d)
    fresh = claim_event_ids(conn, first)
    new = [first[i] for i in sorted(first) if i in fresh]
    if new:
        insert_decisions(conn, new)
        add_counts(conn, shard, decisions=len(new), explored=sum(d.explored for d in new))
    stored = {d.event_id: d for d in new}
    for event_id in first.keys() - fresh:
        found = load_decision(conn, event_id)
        assert found is not None  # its id conflicted with it
        stored[event_id] = found
    return tuple(stored[d.event_id] for d in decisions)


def claim_event_ids(conn: Conn, decisions: dict[str, Decision]) -> set[str]:
    """Enter each decision's id and day in ``event_days`` unless the id is there already;
    returns the ids entered now. In code point order, so that two writers entering the same
    ids cannot deadlock."""
    ordered = sorted(decisions)
    return {
        row[0]
        for row in conn.execute(
            "INSERT INTO event_days (event_id, day) "
            "SELECT * FROM unnest(%b::text[], %b::int4[]) ON CONFLICT DO NOTHING "
            "RETURNING event_id",
            [ordered, [day_of(decisions[i].timestamp) for i in ordered]],
        )
    }


def insert_decisions(conn: Conn, decisions: Sequence[Decision]) -> None:
    params = [rows.decision_params(d) for d in decisions]
    conn.execute(
        DECISION_INSERT,
        [
            [day_of(d.timestamp) for d in decisions],
            *([p[column] for p in params] for column in rows.DECISION_COLUMNS),
        ],
    )
    windows = [
        (d.close_at, d.event_id, day_of(d.timestamp))
        for d in decisions
        if d.active and d.close_at is not None
    ]
    if windows:
        conn.execute(
            "INSERT INTO pending (close_at, event_id, day) "
            "SELECT * FROM unnest(%b::float8[], %b::text[], %b::int4[])",
            [list(column) for column in zip(*windows, strict=True)],
        )


def activate(conn: Conn, activation: Activation) -> ActivationOutcome:
    loaded = load_decision(conn, activation.event_id, lock=True)
    if loaded is None:
        return ActivationOutcome.UNKNOWN_EVENT
    updated, outcome = rules.activate(loaded, activation)
    if outcome is ActivationOutcome.ACTIVATED and updated.close_at is not None:
        day = day_of(updated.timestamp)
        conn.execute(
            "UPDATE decisions SET active = %s, activated_at = %s, close_at = %s "
            "WHERE day = %s AND event_id = %s",
            [
                int(updated.active),
                updated.activated_at,
                updated.close_at,
                day,
                updated.event_id,
            ],
        )
        joined = conn.execute(
            "SELECT 1 FROM joined WHERE day = %s AND event_id = %s", [day, updated.event_id]
        ).fetchone()
        if joined is None:
            conn.execute(
                "INSERT INTO pending (close_at, event_id, day) VALUES (%s, %s, %s) "
                "ON CONFLICT (event_id) DO UPDATE SET close_at = excluded.close_at",
                [updated.close_at, updated.event_id, day],
            )
    return outcome


def put_rewards(conn: Conn, rewards: Sequence[Reward], shard: int) -> tuple[RewardOutcome, ...]:
    if not rewards:
        return ()
    ids = sorted({r.event_id for r in rewards})
    # Lock the windows first (FOR SHARE, in id order): a join of one of these events waits
    # for this commit, and a join that came first is seen by the read below.
    conn.execute(
        "SELECT 1 FROM pending WHERE event_id = ANY(%b) ORDER BY event_id FOR SHARE", [ids]
    )
    windows = {
        event_id: (day, active, close_at, joined)
        for event_id, day, active, close_at, joined in conn.execute(
            "SELECT e.event_id, e.day, d.active, d.close_at, "
            "EXISTS (SELECT 1 FROM joined j WHERE j.day = e.day AND j.event_id = e.event_id) "
            "FROM event_days e JOIN decisions d ON d.day = e.day AND d.event_id = e.event_id "
            "WHERE e.event_id = ANY(%b)",
            [ids],
        )
    }
    outcomes: list[RewardOutcome] = []
    keyed: list[tuple[int, Reward]] = []
    values: list[tuple[Any, ...]] = []
    for r in rewards:
        window = windows.get(r.event_id)
        if window is None:
            outcomes.append(RewardOutcome.UNKNOWN_EVENT)
            continue
        day, active, close_at, joined = window
        late = rules.is_late(close_at, r.received_at, joined=bool(joined))
        if r.request_key is not None:
            keyed.append((len(outcomes), r))
        outcomes.append(rules.reward_outcome(active=bool(active), late=late))
        values.append((day, r.event_id, r.value, r.received_at, r.request_key, int(late)))
    if not values:
        return tuple(outcomes)
    # WITH ORDINALITY keeps the batch's order in the ids (arrival order); the first of equal
    # keys is the one inserted, as on SQLite.
    inserted_rows = conn.execute(
        "INSERT INTO rewards (day, id, event_id, value, received_at, request_key, late) "
        "SELECT v.day, nextval('reward_ids'), v.event_id, v.value, v.received_at, "
        "v.request_key, v.late FROM unnest(%b::int4[], %b::text[], %b::float8[], "
        "%b::float8[], %b::text[], %b::int4[]) WITH ORDINALITY "
        "AS v(day, event_id, value, received_at, request_key, late, n) ORDER BY v.n "
        "ON CONFLICT (day, event_id, request_key) DO NOTHING "
        "RETURNING event_id, request_key, late",
        [list(column) for column in zip(*values, strict=True)],
    ).fetchall()
    inserted: dict[tuple[str, str | None], int] = {}
    late_count = 0
    for event_id, key, late in inserted_rows:
        late_count += late
        if key is not None:
            inserted[(event_id, key)] = 1
    add_counts(conn, shard, rewards=len(inserted_rows), late_rewards=late_count)
    for position, r in keyed:  # NULL keys never conflict
        key = (r.event_id, r.request_key)
        if inserted.pop(key, None) is None:
            outcomes[position] = RewardOutcome.DUPLICATE
    return tuple(outcomes)


def load_decision(conn: Conn, event_id: str, *, lock: bool = False) -> Decision | None:
    """A decision by id (through ``event_days``, so one partition is read)."""
    found = conn.execute(
        f"SELECT {rows.DECISION_SELECT} FROM event_days e JOIN decisions d ON {ON_DAY.format('e')} "
        f"WHERE e.event_id = %s{' FOR UPDATE OF d' if lock else ''}",
        [event_id],
    ).fetchone()
    return rows.decision_from_row(found) if found is not None else None


def counted_rewards(conn: Conn, event_ids: list[str]) -> dict[str, list[Reward]]:
    """The non-late rewards of each event, in arrival order."""
    if not event_ids:
        return {}
    out: dict[str, list[Reward]] = {}
    for row in conn.execute(
        f"SELECT {', '.join('r.' + c.strip() for c in rows.REWARD_SELECT.split(','))} "
        "FROM event_days e JOIN rewards r ON r.day = e.day AND r.event_id = e.event_id "
        "WHERE e.event_id = ANY(%b) AND r.late = 0 ORDER BY r.id",
        [event_ids],
    ):
        out.setdefault(row[0], []).append(rows.reward_from_row(row))
    return out


def add_counts(conn: Conn, shard: int, **deltas: int) -> None:
    """Add to the totals of :class:`bandit.events.StoreCounts` in row ``shard`` of
    ``counters`` (each store handle has its own shard, so edges do not queue on one row)."""
    changes = {name: value for name, value in deltas.items() if value}
    if not changes:
        return
    assignments = sql.SQL(", ").join(
        sql.SQL("{0} = {0} + {1}").format(sql.Identifier(name), sql.Literal(value))
        for name, value in changes.items()
    )
    conn.execute(sql.SQL("UPDATE counters SET {} WHERE shard = %s").format(assignments), [shard])
