"""The PostgreSQL store's schema: ordered migrations, applied only by ``banditd migrate``.

``banditd_schema`` holds how many of :data:`MIGRATIONS` the database has applied. Migrations
run in one transaction under an advisory lock, so two ``migrate`` runs never interleave; edges
and trainers never migrate: a process whose code is not at the database's version refuses to
start (:class:`SchemaMismatch`), so a rolling upgrade migrates first, then restarts processes.
Append new migrations; never edit or reorder released ones.

Tables (the same columns as the SQLite store's where they mean the same, so :mod:`stores.rows`
converts both):

* ``decisions``, ``rewards``, ``joined``: partitioned by ``day`` (days since the epoch of the
  decision's time; a reward and a joined row live in their decision's day), one partition per
  day and table, created on demand (:func:`ensure_days`), so retention drops a day's three
  tables whole. A partitioned table's unique keys must hold the partition key, so
  ``event_days`` (unpartitioned, narrow) makes event ids unique across days and tells which
  day holds an event.
* ``pending``: active, unjoined events with a window, by window close (as on SQLite).
* ``seq_mark``: the last ``seq`` given to a joined event. Taking numbers updates its one row,
  whose lock is held to the end of the transaction, so numbers commit in the order they were
  given: the learner reading ``seq > cursor`` never passes over a number that commits later.
* ``generation``: the number edges poll; every save they cache bumps it, and its transaction
  sends ``NOTIFY`` with the new number (:func:`channels`).
* ``counters``: the totals of :class:`bandit.events.StoreCounts`, one row per shard so that
  edges committing at once do not queue on one row; readers sum them.
* ``lease``: the trainer lease row, with the backend of the holder's session
  (:mod:`stores.postgres.coordination`).
* the rest as on SQLite: ``models``, ``checkpoint``, ``config``, ``policy``, ``guardrail``,
  ``watch_settings``, ``apprentice``, ``trainer_report``, ``times``, ``meta``, ``commands``,
  ``jobs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg import sql

Conn = psycopg.Connection[tuple[Any, ...]]

LOCK_SPACE = 0x62616E64
"""The first key of banditd's advisory locks (``'band'``); the second is derived from the
schema, so loops in different schemas of one database never share a lock."""

MIGRATE_LOCK = 1
TRAINER_LOCK = 2
PARTITION_LOCK = 3
"""Advisory lock kinds, combined with the schema into the second key (:func:`lock_key`)."""

CREATE_WAIT_MS = 100
"""Milliseconds a partition creation waits for its parent tables' locks before it gives up."""

DAYS_AHEAD = 3
"""Days of partitions the trainer keeps created ahead of today, so that edges never create
one while serving."""

SHARDS = 16
"""Rows of ``counters``."""

DAY = 86_400.0
"""Seconds per partition."""


class SchemaMismatch(RuntimeError):
    """The database's schema is not the one this banditd's code is written for."""


class SchemaTooNew(SchemaMismatch):
    """The database was migrated by a newer banditd than this one."""


_INITIAL = (
    """
    CREATE TABLE event_days (
        event_id text COLLATE "C" PRIMARY KEY,
        day integer NOT NULL
    )
    """,
    "CREATE INDEX event_days_day ON event_days (day)",
    """
    CREATE TABLE decisions (
        day integer NOT NULL,
        event_id text COLLATE "C" NOT NULL,
        timestamp double precision NOT NULL,
        request text NOT NULL,
        pmf text NOT NULL,
        chosen_index integer NOT NULL,
        greedy_index integer NOT NULL,
        model_version bigint NOT NULL,
        learning_mode text NOT NULL,
        active integer NOT NULL CHECK (active IN (0, 1)),
        activated_at double precision,
        close_at double precision,
        explored integer NOT NULL CHECK (explored IN (0, 1)),
        PRIMARY KEY (day, event_id)
    ) PARTITION BY RANGE (day)
    """,
    "CREATE INDEX decisions_inactive ON decisions (timestamp) WHERE active = 0",
    "CREATE SEQUENCE reward_ids",
    """
    CREATE TABLE rewards (
        day integer NOT NULL,
        id bigint NOT NULL DEFAULT nextval('reward_ids'),
        event_id text COLLATE "C" NOT NULL,
        value double precision NOT NULL,
        received_at double precision NOT NULL,
        request_key text,
        late integer NOT NULL CHECK (late IN (0, 1)),
        PRIMARY KEY (day, id),
        UNIQUE (day, event_id, request_key)
    ) PARTITION BY RANGE (day)
    """,
    "CREATE INDEX rewards_id ON rewards (id)",
    """
    CREATE TABLE joined (
        day integer NOT NULL,
        seq bigint NOT NULL,
        event_id text COLLATE "C" NOT NULL,
        reward double precision NOT NULL,
        reward_count integer NOT NULL,
        defaulted integer NOT NULL CHECK (defaulted IN (0, 1)),
        joined_at double precision NOT NULL,
        PRIMARY KEY (day, seq),
        UNIQUE (day, event_id)
    ) PARTITION BY RANGE (day)
    """,
    "CREATE INDEX joined_seq ON joined (seq)",
    "CREATE TABLE partitions (day integer PRIMARY KEY)",
    """
    CREATE TABLE pending (
        close_at double precision NOT NULL,
        event_id text COLLATE "C" NOT NULL,
        day integer NOT NULL,
        PRIMARY KEY (close_at, event_id)
    )
    """,
    "CREATE UNIQUE INDEX pending_event ON pending (event_id)",
    "CREATE TABLE seq_mark (id integer PRIMARY KEY CHECK (id = 1), value bigint NOT NULL)",
    "INSERT INTO seq_mark VALUES (1, 0)",
    "CREATE TABLE generation (id integer PRIMARY KEY CHECK (id = 1), value bigint NOT NULL)",
    "INSERT INTO generation VALUES (1, 0)",
    """
    CREATE TABLE counters (
        shard integer PRIMARY KEY,
        decisions bigint NOT NULL DEFAULT 0,
        rewards bigint NOT NULL DEFAULT 0,
        late_rewards bigint NOT NULL DEFAULT 0,
        joined bigint NOT NULL DEFAULT 0,
        defaulted bigint NOT NULL DEFAULT 0,
        explored bigint NOT NULL DEFAULT 0
    )
    """,
    f"INSERT INTO counters (shard) SELECT generate_series(0, {SHARDS - 1})",
    """
    CREATE TABLE models (
        version bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        created_at double precision NOT NULL,
        data bytea NOT NULL,
        arguments text NOT NULL,
        learned_count bigint NOT NULL,
        cursor bigint NOT NULL,
        restored_from bigint
    )
    """,
    """
    CREATE TABLE checkpoint (
        id integer PRIMARY KEY CHECK (id = 1),
        model bytea NOT NULL,
        arguments text NOT NULL,
        cursor bigint NOT NULL,
        learned_count bigint NOT NULL,
        updated_at double precision NOT NULL,
        retrain_generation bigint,
        retrain_cursor bigint,
        retrain_since double precision,
        retrain_settings text
    )
    """,
    "CREATE TABLE config (id integer PRIMARY KEY CHECK (id = 1), data text NOT NULL)",
    """
    CREATE TABLE policy (
        id integer PRIMARY KEY CHECK (id = 1),
        name text NOT NULL,
        arguments text NOT NULL
    )
    """,
    """
    CREATE TABLE guardrail (
        id integer PRIMARY KEY CHECK (id = 1),
        state text NOT NULL CHECK (state IN ('serving', 'tripped')),
        since double precision NOT NULL,
        reason text NOT NULL,
        trips bigint NOT NULL,
        recoveries bigint NOT NULL
    )
    """,
    """
    CREATE TABLE watch_settings (
        id integer PRIMARY KEY CHECK (id = 1),
        "window" bigint NOT NULL,
        alpha double precision NOT NULL,
        guardrail_enabled integer NOT NULL CHECK (guardrail_enabled IN (0, 1)),
        margin double precision NOT NULL,
        min_events bigint NOT NULL,
        drift_delta double precision NOT NULL,
        drift_threshold double precision NOT NULL,
        drift_min_events bigint NOT NULL,
        "interval" double precision NOT NULL,
        batch bigint NOT NULL,
        history bigint NOT NULL
    )
    """,
    """
    CREATE TABLE apprentice (
        id integer PRIMARY KEY CHECK (id = 1),
        start_time double precision NOT NULL,
        last_processed_event_time double precision NOT NULL,
        total_events bigint NOT NULL,
        total_rewards double precision NOT NULL,
        total_imitated_events bigint NOT NULL,
        total_imitated_rewards double precision NOT NULL,
        batch_events bigint NOT NULL,
        batch_rewards double precision NOT NULL,
        batch_imitated_events bigint NOT NULL,
        batch_imitated_rewards double precision NOT NULL,
        evaluated_events bigint NOT NULL,
        reward_min double precision NOT NULL,
        reward_max double precision NOT NULL,
        wmax bytea NOT NULL,
        sw bytea NOT NULL,
        swr bytea NOT NULL,
        sww bytea NOT NULL,
        swwr bytea NOT NULL,
        swwrr bytea NOT NULL
    )
    """,
    """
    CREATE TABLE trainer_report (
        id integer PRIMARY KEY CHECK (id = 1),
        at double precision NOT NULL,
        holder text NOT NULL,
        body bytea NOT NULL
    )
    """,
    "CREATE TABLE times (name text PRIMARY KEY, at double precision NOT NULL)",
    "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
    """
    CREATE TABLE lease (
        id integer PRIMARY KEY CHECK (id = 1),
        holder text NOT NULL,
        acquired_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        pid integer NOT NULL,
        backend_start timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE commands (
        generation bigint PRIMARY KEY,
        kind text NOT NULL,
        payload bytea NOT NULL,
        submitted_at double precision NOT NULL,
        state text NOT NULL
            CHECK (state IN ('pending', 'claimed', 'done', 'failed', 'cancelled')),
        finished_at double precision,
        result bytea NOT NULL DEFAULT '',
        error_code text,
        error_message text
    )
    """,
    "CREATE INDEX commands_pending ON commands (generation) WHERE state = 'pending'",
    """
    CREATE TABLE jobs (
        kind text NOT NULL,
        id text NOT NULL,
        created_at double precision NOT NULL,
        data text NOT NULL,
        PRIMARY KEY (kind, id)
    )
    """,
)


def _create_initial_schema(conn: Conn) -> None:
    """Version 1: every table, index and single row."""
    for statement in _INITIAL:
        conn.execute(statement)


Migration = Callable[[Conn], None]
"""A schema step; it runs inside the migrating transaction and must not commit."""

MIGRATIONS: tuple[Migration, ...] = (_create_initial_schema,)
"""Every schema version in order; the database's version is how many it has applied."""


def lock_key(conn: Conn, kind: int) -> tuple[int, int]:
    """The two keys of banditd's advisory lock ``kind`` for the connection's schema."""
    row = conn.execute(
        "SELECT hashtext(current_schema() || '/' || %s::text)", [str(kind)]
    ).fetchone()
    assert row is not None
    return LOCK_SPACE, int(row[0])


def _require_schema(conn: Conn) -> None:
    """Raise :class:`SchemaMismatch` when no schema of the session's ``search_path`` exists
    (a URL naming one that was never created): there is nowhere to put the tables."""
    row = conn.execute("SELECT current_schema(), current_setting('search_path')").fetchone()
    if row is not None and row[0] is None:
        raise SchemaMismatch(
            f"no schema of the search_path ({row[1]}) exists in this database; create it "
            "(CREATE SCHEMA) or fix the URL"
        )


def schema_version(conn: Conn) -> int | None:
    """The applied version, or None when banditd never migrated this schema."""
    found = conn.execute("SELECT to_regclass('banditd_schema') IS NOT NULL").fetchone()
    if not found or not found[0]:
        return None
    row = conn.execute("SELECT version FROM banditd_schema WHERE id = 1").fetchone()
    return int(row[0]) if row is not None else None


def check_version(conn: Conn, where: str) -> None:
    """Raise :class:`SchemaMismatch` unless the schema is at ``len(MIGRATIONS)``."""
    _require_schema(conn)
    version = schema_version(conn)
    current = len(MIGRATIONS)
    if version == current:
        return
    if version is not None and version > current:
        raise SchemaTooNew(
            f"the database {where} has schema version {version}, newer than this banditd's "
            f"{current}; run a banditd at least as new as the one that migrated it."
        )
    raise SchemaMismatch(
        f"the database {where} has schema version {version or 0}, this banditd needs "
        f"{current}; run banditd migrate --store URL first."
    )


def migrate_connection(conn: Conn) -> tuple[int, int]:
    """Apply the missing migrations in one transaction; returns (version before, after).

    Raises:
        SchemaTooNew: the schema is newer than :data:`MIGRATIONS` (nothing changed).
    """
    with conn.transaction():
        _require_schema(conn)
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", lock_key(conn, MIGRATE_LOCK))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS banditd_schema "
            "(id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)"
        )
        conn.execute("INSERT INTO banditd_schema VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
        version = schema_version(conn) or 0
        if version > len(MIGRATIONS):
            raise SchemaTooNew(
                f"schema version {version} is newer than this banditd's {len(MIGRATIONS)}"
            )
        for migration in MIGRATIONS[version:]:
            migration(conn)
        conn.execute("UPDATE banditd_schema SET version = %s WHERE id = 1", [len(MIGRATIONS)])
    return version, len(MIGRATIONS)


def migrate(url: str, *, schema: str | None = None) -> tuple[int, int]:
    """Bring the database at ``url`` (the loop in ``schema``; None: the default) to this code's
    schema version; returns (version before, after). Creates ``schema`` if it is missing.

    Raises:
        SchemaTooNew: the schema is newer than this code's (nothing changed).
        psycopg.OperationalError: the server cannot be reached.
    """
    conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
    try:
        if schema is not None:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        return migrate_connection(conn)
    finally:
        conn.close()


def partition_name(table: str, day: int) -> str:
    """The partition of ``table`` holding ``day``.

    >>> partition_name("decisions", 20_000), partition_name("joined", -3)
    ('decisions_d20000', 'joined_dm3')
    """
    return f"{table}_d{day}" if day >= 0 else f"{table}_dm{-day}"


PARTITIONED = ("decisions", "rewards", "joined")


def ensure_days(conn: Conn, days: Iterable[int]) -> set[int]:
    """Create the partitions of ``days`` that do not exist yet, in one transaction of their own
    under an advisory lock (so processes creating the same day at once do not collide);
    returns every day that has partitions now."""
    wanted = sorted(set(days))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", lock_key(conn, PARTITION_LOCK))
        # Creating a partition locks its parent exclusively; a reader holding one parent and
        # waiting for another would deadlock with it. Give up quickly instead (the caller
        # tries again), so readers and writers wait at most this long behind a creation.
        conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{CREATE_WAIT_MS}ms"])
        have = {int(row[0]) for row in conn.execute("SELECT day FROM partitions")}
        for day in wanted:
            if day in have:
                continue
            for table in PARTITIONED:
                conn.execute(
                    sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(partition_name(table, day)),
                        sql.Identifier(table),
                        sql.Literal(day),
                        sql.Literal(day + 1),
                    )
                )
            conn.execute("INSERT INTO partitions (day) VALUES (%s)", [day])
            have.add(day)
    return have


def day_of(timestamp: float) -> int:
    """The partition day of a decision made at ``timestamp`` (seconds since the epoch).

    >>> day_of(0.0), day_of(86_399.9), day_of(86_400.0), day_of(-1.0)
    (0, 0, 1, -1)
    """
    return int(timestamp // DAY)
