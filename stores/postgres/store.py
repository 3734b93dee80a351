"""The PostgreSQL :class:`bandit.store.Store`: many edges and a trainer on one database.

Semantics are those of :class:`bandit.memory.MemoryStore`; the join, lateness and activation
rules come from :mod:`bandit.join`; rows become values through :mod:`stores.rows`. Every method
is one transaction (``delete_logs``: one per partition dropped or chunk deleted). Commits are
durable when they return (the server's ``synchronous_commit``), so :meth:`PostgresStore.sync`
has nothing to do, and the group-commit writer's batch is acknowledged after its commit.

**Exactly once across processes.** Only the trainer appends joined events, and it numbers them
from the one ``seq_mark`` row, whose lock it holds until commit: numbers commit in the order
they were given, so the learner's ``seq > cursor`` never skips one that commits late (a
sequence would give numbers that commit out of order). A reward and the join of its event
cannot pass each other either: a reward's transaction locks its event's ``pending`` row
``FOR SHARE`` before it decides lateness, and the join locks the rows ``FOR UPDATE`` and counts
the rewards again; an event that gained a reward since :meth:`PostgresStore.due` read it is left
for the next join, which includes it.

Schema, partitions and migrations: :mod:`stores.postgres.schema`; the lease, fencing and change
notices: :mod:`stores.postgres.coordination`; connections and errors:
:mod:`stores.postgres.connection`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from psycopg import errors, sql

from bandit import join as rules
from bandit.config import ServiceConfiguration
from bandit.errors import StoreUnavailable
from bandit.events import (
    ApprenticeRecord,
    Checkpoint,
    Command,
    Decision,
    GuardrailRecord,
    JobRecord,
    JoinedEvent,
    Lease,
    LoopTime,
    ModelRecord,
    PolicySettings,
    ReportRecord,
    Reward,
    StoreCounts,
    StoredReward,
    WatchSettingsRecord,
    WriteBatch,
    WriteResult,
)
from stores import rows
from stores.postgres import coordination, logs
from stores.postgres.connection import Conn, PGConnections
from stores.postgres.schema import (
    DAY,
    DAYS_AHEAD,
    SHARDS,
    SchemaMismatch,
    check_version,
    day_of,
    ensure_days,
)
from stores.postgres.writes import (
    ON_DAY,
    counted_rewards,
    load_decision,
    write_batch,
)

__all__ = ["PostgresStore", "SchemaMismatch"]

log = logging.getLogger(__name__)

_DUE_SLACK = 1.0
"""Seconds added to the indexed ``close_at`` bound of a due scan (as on SQLite)."""

_DUE = "p.close_at <= %(bound)s AND p.close_at + %(grace)s <= %(now)s"

_CREATE_ATTEMPTS = 20
"""Tries of a partition creation that gave up on its parents' locks (about 3 s in all)."""

_DELETE_CHUNK = 500
_FIND_PAGE = 5000
_WATCH_COLUMNS = tuple(WatchSettingsRecord.__dataclass_fields__)
_COMMAND_COLUMNS = (
    "generation, kind, payload, submitted_at, state, finished_at, result, error_code, error_message"
)


class PostgresStore:
    """A :class:`bandit.store.Store` on one PostgreSQL database (and schema).

    Args:
        url: a libpq URL or connection string.
        schema: the schema of the loop's tables; None for the server's default (``public``).
            Several loops (or test runs) can share a database in schemas of their own.
        lock_timeout: seconds a statement waits on a lock before the call answers
            unavailable.
        application_name: the sessions' name in ``pg_stat_activity``.

    Raises:
        SchemaMismatch: the schema is not at this code's version (run ``banditd migrate``).
        bandit.errors.StoreUnavailable: the server cannot be reached.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        lock_timeout: float = 5.0,
        application_name: str = "banditd",
    ) -> None:
        self._db = PGConnections(
            url, schema=schema, lock_timeout=lock_timeout, application_name=application_name
        )
        try:
            current = self._db.run(self._open, atomic=False)
        except BaseException:
            self._db.close()
            raise
        self._shard = random.randrange(SHARDS)
        self._days: set[int] = set()
        self._days_guard = threading.Lock()
        self._fence: str | None = None
        self._due_counts: dict[str, int] = {}
        self._channels = coordination.Channels(f"banditd.{current}")
        self._lease = coordination.LeaseSession(self._db)
        self._listener = coordination.Listener(self._db, self._channels)

    def _open(self, conn: Conn) -> str:
        row = conn.execute("SELECT current_schema(), current_database()").fetchone()
        assert row is not None
        schema, database = str(row[0]), str(row[1])
        check_version(conn, f"{database!r} (schema {schema!r})")
        return schema

    def close(self) -> None:
        self._listener.stop()
        self._lease.close()
        self._db.close()

    def failing_writes(self) -> str | None:
        return self._db.write_failure

    # -- partitions ----------------------------------------------------------------------------

    def _ensure(self, days: Iterable[int]) -> None:
        """Make sure every day in ``days`` has its partitions (cached; created once)."""
        missing = set(days) - self._days
        if not missing:
            return
        with self._days_guard:
            for attempt in range(_CREATE_ATTEMPTS):
                try:
                    self._days = self._db.run(
                        lambda conn: ensure_days(conn, missing), atomic=False, write=True
                    )
                    return
                except StoreUnavailable:
                    if attempt + 1 == _CREATE_ATTEMPTS:
                        raise
                    time.sleep(0.05)

    def _forget_days(self) -> None:
        """Another process dropped partitions: read which exist again before writing."""
        self._days = set()

    def _writing(
        self, work: Callable[[Conn], Any], days: Iterable[int], *, pipeline: bool = False
    ) -> Any:
        """``work`` in a write transaction after the partitions of ``days`` exist; once more if
        a partition it needed was dropped meanwhile (retention in another process)."""
        days = set(days)
        self._ensure(days)
        try:
            return self._db.run(work, write=True, pipeline=pipeline)
        except errors.CheckViolation as exc:
            if "no partition" not in str(exc):
                raise
            self._forget_days()
            self._ensure(days)
            return self._db.run(work, write=True, pipeline=pipeline)

    # -- decisions, rewards, activations -------------------------------------------------------

    def write(self, batch: WriteBatch) -> WriteResult:
        days = {day_of(d.timestamp) for d in batch.decisions}
        result: WriteResult = self._writing(
            lambda conn: write_batch(conn, batch, self._shard), days, pipeline=True
        )
        return result

    def try_write(self, batch: WriteBatch) -> WriteResult | None:
        return None  # a network round trip: never on the event loop

    def sync(self) -> None:
        pass  # commits are durable when they return

    def get_decision(self, event_id: str) -> Decision | None:
        return self._db.run(lambda conn: load_decision(conn, event_id), atomic=False)

    def due(
        self, now: float, limit: int, *, raw_features: bool = False
    ) -> list[tuple[Decision, list[Reward]]]:
        if limit <= 0:
            return []
        today = day_of(now)  # the trainer keeps the next days' partitions ready for the edges
        self._ensure(range(today, today + DAYS_AHEAD + 1))

        def read(conn: Conn) -> list[tuple[Decision, list[Reward]]]:
            found = conn.execute(
                f"SELECT {rows.DECISION_SELECT} FROM pending p JOIN decisions d "
                f"ON {ON_DAY.format('p')} WHERE {_DUE} "
                "ORDER BY p.close_at, p.event_id LIMIT %(limit)s",
                _due_params(now) | {"limit": limit},
            ).fetchall()
            decisions = [rows.decision_from_row(row, raw_features=raw_features) for row in found]
            rewards = counted_rewards(conn, [d.event_id for d in decisions])
            return [(d, rewards.get(d.event_id, [])) for d in decisions]

        # One snapshot for both reads (REPEATABLE READ is not needed: rewards are re-counted
        # under lock when appended).
        due = self._db.run(read)
        self._due_counts = {d.event_id: len(rewards) for d, rewards in due}
        return due

    # -- joined events -------------------------------------------------------------------------

    def append_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        if not events:
            return []
        counted_at_due = self._due_counts

        def append(conn: Conn) -> list[JoinedEvent]:
            coordination.check_fence(conn, self._fence)
            return logs.append_joined(conn, events, counted_at_due, self._shard)

        appended: list[JoinedEvent] = self._db.run(append, write=True, pipeline=True)
        return appended

    def joined_after(
        self, cursor: int, limit: int, *, raw_features: bool = False
    ) -> list[JoinedEvent]:
        if limit <= 0:
            return []
        found = self._db.read(
            f"SELECT {rows.JOINED_SELECT} FROM joined j JOIN decisions d ON {ON_DAY.format('j')} "
            "WHERE j.seq > %s ORDER BY j.seq LIMIT %s",
            [cursor, limit],
        )
        return [rows.joined_from_row(row, raw_features=raw_features) for row in found]

    def last_seq(self) -> int:
        row = self._db.first("SELECT COALESCE(MAX(seq), 0) FROM joined")
        return int(row[0]) if row is not None else 0

    def counts(self, now: float) -> StoreCounts:
        def read(conn: Conn) -> StoreCounts:
            totals = conn.execute(
                "SELECT COALESCE(SUM(decisions), 0), COALESCE(SUM(rewards), 0), "
                "COALESCE(SUM(late_rewards), 0), COALESCE(SUM(joined), 0), "
                "COALESCE(SUM(defaulted), 0), COALESCE(SUM(explored), 0) FROM counters"
            ).fetchone()
            pending = conn.execute(
                f"SELECT COUNT(*), MIN(p.close_at) FROM pending p WHERE {_DUE}", _due_params(now)
            ).fetchone()
            first = conn.execute("SELECT MIN(close_at) FROM pending").fetchone()
            assert totals is not None and pending is not None and first is not None
            return StoreCounts(
                decisions=int(totals[0]),
                rewards=int(totals[1]),
                late_rewards=int(totals[2]),
                joined=int(totals[3]),
                defaulted=int(totals[4]),
                explored=int(totals[5]),
                pending_join=int(pending[0]),
                oldest_pending_close_at=pending[1],
                next_close_at=first[0],
            )

        return self._db.run(read)

    def counted_rewards(self, event_ids: list[str]) -> dict[str, list[Reward]]:
        return self._db.run(lambda conn: counted_rewards(conn, event_ids), atomic=False)

    # -- learner state and models --------------------------------------------------------------

    def load_checkpoint(self) -> Checkpoint | None:
        found = self._dict("SELECT * FROM checkpoint WHERE id = 1")
        return rows.checkpoint_from_row(found[0]) if found else None

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        retrain = checkpoint.retrain

        def save(conn: Conn) -> None:
            coordination.check_fence(conn, self._fence)
            conn.execute(
                "INSERT INTO checkpoint (id, model, arguments, cursor, learned_count, updated_at, "
                "retrain_generation, retrain_cursor, retrain_since, retrain_settings) "
                "VALUES (1, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "model = excluded.model, arguments = excluded.arguments, "
                "cursor = excluded.cursor, learned_count = excluded.learned_count, "
                "updated_at = excluded.updated_at, "
                "retrain_generation = excluded.retrain_generation, "
                "retrain_cursor = excluded.retrain_cursor, "
                "retrain_since = excluded.retrain_since, "
                "retrain_settings = excluded.retrain_settings",
                [
                    checkpoint.model,
                    checkpoint.arguments,
                    checkpoint.cursor,
                    checkpoint.learned_count,
                    checkpoint.updated_at,
                    *(
                        (None, None, None, None)
                        if retrain is None
                        else (retrain.generation, retrain.cursor, retrain.since, retrain.settings)
                    ),
                ],
            )

        self._db.run(save, write=True)

    def publish_model(
        self,
        *,
        created_at: float,
        data: bytes,
        arguments: str,
        learned_count: int,
        cursor: int,
        keep: int,
    ) -> ModelRecord:
        def publish(conn: Conn) -> int:
            coordination.check_fence(conn, self._fence)
            row = conn.execute(
                "INSERT INTO models (created_at, data, arguments, learned_count, cursor) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING version",
                [created_at, data, arguments, learned_count, cursor],
            ).fetchone()
            assert row is not None
            version = int(row[0])
            if keep > 0:
                conn.execute(
                    "DELETE FROM models WHERE version NOT IN "
                    "(SELECT version FROM models ORDER BY version DESC LIMIT %s)",
                    [keep],
                )
            self._channels.bump(conn)
            self._channels.announce_model(conn, version)
            return version

        version: int = self._db.run(publish, write=True)
        return ModelRecord(
            version=version,
            created_at=created_at,
            data=data,
            arguments=arguments,
            learned_count=learned_count,
            cursor=cursor,
        )

    def latest_model(self) -> ModelRecord | None:
        found = self._dict("SELECT * FROM models ORDER BY version DESC LIMIT 1")
        return rows.model_from_row(found[0]) if found else None

    def get_model(self, version: int) -> ModelRecord | None:
        found = self._dict("SELECT * FROM models WHERE version = %s", [version])
        return rows.model_from_row(found[0]) if found else None

    def list_models(self) -> list[ModelRecord]:
        found = self._dict(
            "SELECT version, created_at, arguments, learned_count, cursor, restored_from "
            "FROM models ORDER BY version DESC"
        )
        return [rows.model_from_row(row) for row in found]

    def mark_restored(self, version: int, restored_from: int) -> None:
        self._execute(
            "UPDATE models SET restored_from = %s WHERE version = %s", [restored_from, version]
        )

    # -- settings ------------------------------------------------------------------------------

    def _dict(self, query: Any, params: Any = None) -> list[dict[str, Any]]:
        def read(conn: Conn) -> list[dict[str, Any]]:
            cursor = conn.execute(query, params)
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return self._db.run(read, atomic=False)

    def _execute(self, query: Any, params: Any = None, *, announce: bool = False) -> None:
        def run(conn: Conn) -> None:
            conn.execute(query, params)
            if announce:
                self._channels.bump(conn)

        self._db.run(run, write=True)

    def load_config(self) -> ServiceConfiguration | None:
        row = self._db.first("SELECT data FROM config WHERE id = 1")
        return rows.config_from_json(row[0]) if row is not None else None

    def save_config(self, config: ServiceConfiguration) -> None:
        self._execute(
            "INSERT INTO config (id, data) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            [rows.config_to_json(config)],
            announce=True,
        )

    def load_policy(self) -> PolicySettings | None:
        found = self._dict("SELECT name, arguments FROM policy WHERE id = 1")
        return rows.policy_from_row(found[0]) if found else None

    def save_policy(self, policy: PolicySettings) -> None:
        self._execute(
            "INSERT INTO policy (id, name, arguments) VALUES (1, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, arguments = excluded.arguments",
            [policy.name, policy.arguments],
            announce=True,
        )

    def load_guardrail(self) -> GuardrailRecord | None:
        found = self._dict("SELECT * FROM guardrail WHERE id = 1")
        return rows.guardrail_from_row(found[0]) if found else None

    def save_guardrail(self, record: GuardrailRecord) -> None:
        self._execute(
            "INSERT INTO guardrail (id, state, since, reason, trips, recoveries) "
            "VALUES (1, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            "state = excluded.state, since = excluded.since, reason = excluded.reason, "
            "trips = excluded.trips, recoveries = excluded.recoveries",
            [record.state.value, record.since, record.reason, record.trips, record.recoveries],
            announce=True,
        )

    def load_watch_settings(self) -> WatchSettingsRecord | None:
        found = self._dict("SELECT * FROM watch_settings WHERE id = 1")
        return rows.watch_settings_from_row(found[0]) if found else None

    def save_watch_settings(self, record: WatchSettingsRecord) -> None:
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in _WATCH_COLUMNS)
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in _WATCH_COLUMNS
        )
        query = sql.SQL(
            "INSERT INTO watch_settings (id, {}) VALUES (1, {}) ON CONFLICT (id) DO UPDATE SET {}"
        ).format(columns, sql.SQL(", ").join(sql.Placeholder() * len(_WATCH_COLUMNS)), updates)
        self._execute(
            query,
            [
                int(getattr(record, c)) if c == "guardrail_enabled" else getattr(record, c)
                for c in _WATCH_COLUMNS
            ],
            announce=True,
        )

    def load_apprentice(self) -> ApprenticeRecord | None:
        found = self._dict("SELECT * FROM apprentice WHERE id = 1")
        return rows.apprentice_from_row(found[0]) if found else None

    def save_apprentice(self, record: ApprenticeRecord) -> None:
        params = rows.apprentice_params(record)
        names = list(params)
        query = sql.SQL(
            "INSERT INTO apprentice (id, {}) VALUES (1, {}) ON CONFLICT (id) DO UPDATE SET {}"
        ).format(
            sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.SQL(", ").join(sql.Placeholder(n) for n in names),
            sql.SQL(", ").join(
                sql.SQL("{0} = excluded.{0}").format(sql.Identifier(n)) for n in names
            ),
        )
        self._execute(query, params)

    def load_report(self) -> ReportRecord | None:
        row = self._db.first("SELECT at, holder, body FROM trainer_report WHERE id = 1")
        if row is None:
            return None
        return ReportRecord(at=float(row[0]), holder=str(row[1]), body=bytes(row[2]))

    def save_report(self, record: ReportRecord) -> None:
        self._execute(
            "INSERT INTO trainer_report (id, at, holder, body) VALUES (1, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET at = excluded.at, holder = excluded.holder, "
            "body = excluded.body",
            [record.at, record.holder, record.body],
        )

    def get_time(self, name: LoopTime) -> float | None:
        row = self._db.first("SELECT at FROM times WHERE name = %s", [name.value])
        return float(row[0]) if row is not None else None

    def set_time(self, name: LoopTime, at: float) -> None:
        self._execute(
            "INSERT INTO times (name, at) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET at = excluded.at",
            [name.value, at],
        )

    def set_time_if_absent(self, name: LoopTime, at: float) -> float:
        def put(conn: Conn) -> float:
            conn.execute(
                "INSERT INTO times (name, at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [name.value, at],
            )
            row = conn.execute("SELECT at FROM times WHERE name = %s", [name.value]).fetchone()
            assert row is not None
            return float(row[0])

        stored: float = self._db.run(put, write=True)
        return stored

    def get_meta(self, key: str) -> str | None:
        row = self._db.first("SELECT value FROM meta WHERE key = %s", [key])
        return str(row[0]) if row is not None else None

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    def set_meta_if_absent(self, key: str, value: str) -> str:
        def put(conn: Conn) -> str:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [key, value],
            )
            row = conn.execute("SELECT value FROM meta WHERE key = %s", [key]).fetchone()
            assert row is not None
            return str(row[0])

        stored: str = self._db.run(put, write=True)
        return stored

    # -- trainer lease and control channel (coordination) --------------------------------------

    def acquire_lease(self, holder: str, now: float, ttl: float) -> bool:
        return self._lease.acquire(holder, now, ttl)

    def release_lease(self, holder: str) -> None:
        self._lease.release(holder)

    def lease(self, now: float) -> Lease | None:
        return self._db.run(lambda conn: coordination.lease(conn, now), atomic=False)

    def wait_lease(self, timeout: float) -> bool:
        return self._lease.wait(timeout)

    def fence(self, holder: str | None) -> None:
        self._fence = holder

    def generation(self) -> int:
        row = self._db.first("SELECT value FROM generation WHERE id = 1")
        return int(row[0]) if row is not None else 0

    def watch_changes(self, notify: Callable[[], None]) -> None:
        self._listener.add(notify)

    def submit_command(self, kind: str, payload: bytes, now: float) -> int:
        def submit(conn: Conn) -> int:
            number = self._channels.bump(conn)
            conn.execute(
                "INSERT INTO commands (generation, kind, payload, submitted_at, state) "
                "VALUES (%s, %s, %s, %s, 'pending')",
                [number, kind, payload, now],
            )
            return number

        number: int = self._db.run(submit, write=True)
        return number

    def _move(self, generation: int, source: str, target: str, **changes: Any) -> bool:
        assignments = sql.SQL("").join(
            sql.SQL(", {} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in changes
        )
        query = sql.SQL(
            "UPDATE commands SET state = %(target)s{} "
            "WHERE generation = %(generation)s AND state = %(source)s"
        ).format(assignments)
        params = {"target": target, "generation": generation, "source": source, **changes}
        moved: bool = self._db.run(
            lambda conn: conn.execute(query, params).rowcount == 1, write=True
        )
        return moved

    def claim_command(self, generation: int, now: float) -> bool:
        return self._move(generation, "pending", "claimed")

    def finish_command(
        self,
        generation: int,
        *,
        now: float,
        result: bytes = b"",
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        finished = self._move(
            generation,
            "claimed",
            "done" if error_code is None else "failed",
            finished_at=now,
            result=result,
            error_code=error_code,
            error_message=error_message,
        )
        if not finished:
            raise ValueError(f"command {generation} is not claimed")

    def cancel_command(self, generation: int, now: float) -> bool:
        return self._move(generation, "pending", "cancelled", finished_at=now)

    def get_command(self, generation: int) -> Command | None:
        found = self._db.read(
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE generation = %s", [generation]
        )
        return _command(found[0]) if found else None

    def pending_commands(self, after: int, limit: int) -> list[Command]:
        if limit <= 0:
            return []
        found = self._db.read(
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE state = 'pending' AND generation > %s "
            "ORDER BY generation LIMIT %s",
            [after, limit],
        )
        return [_command(row) for row in found]

    def fail_claimed(self, *, now: float, error_code: str, error_message: str) -> int:
        failed: int = self._db.run(
            lambda conn: (
                conn.execute(
                    "UPDATE commands SET state = 'failed', finished_at = %s, error_code = %s, "
                    "error_message = %s WHERE state = 'claimed'",
                    [now, error_code, error_message],
                ).rowcount
            ),
            write=True,
        )
        return failed

    # -- logs, retention, imports, jobs --------------------------------------------------------

    def joined_between(
        self, start: float, end: float, after_seq: int, limit: int
    ) -> list[JoinedEvent]:
        if limit <= 0:
            return []
        found = self._db.read(
            f"SELECT {rows.JOINED_SELECT} FROM joined j JOIN decisions d ON {ON_DAY.format('j')} "
            "WHERE j.seq > %s AND d.timestamp >= %s AND d.timestamp < %s "
            "AND j.day >= %s AND j.day <= %s ORDER BY j.seq LIMIT %s",
            [after_seq, start, end, _day_floor(start), _day_ceiling(end), limit],
        )
        return [rows.joined_from_row(row) for row in found]

    def log_range(self) -> tuple[float, float] | None:
        row = self._db.first(
            "SELECT MIN(d.timestamp), MAX(d.timestamp) FROM joined j "
            f"JOIN decisions d ON {ON_DAY.format('j')}"
        )
        if row is None or row[0] is None:
            return None
        return float(row[0]), float(row[1])

    def delete_logs(self, *, before: float | None, through_seq: int) -> int:
        deleted = 0
        for day in self._days_to_drop(before):
            deleted += self._drop_day(day, before, through_seq)
        after_seq = 0
        while True:
            page = self._db.read(
                "SELECT j.seq, j.event_id FROM joined j JOIN decisions d "
                f"ON {ON_DAY.format('j')} WHERE j.seq > %s AND j.seq <= %s "
                "AND d.timestamp < %s ORDER BY j.seq LIMIT %s",
                [after_seq, through_seq, logs.before_bound(before), _FIND_PAGE],
            )
            if not page:
                break
            after_seq = int(page[-1][0])
            deleted += self._delete_events([str(r[1]) for r in page], before, through_seq)
        while before is not None:
            ids = [
                str(r[0])
                for r in self._db.read(
                    "SELECT event_id FROM decisions WHERE active = 0 AND timestamp < %s LIMIT %s",
                    [before, _FIND_PAGE],
                )
            ]
            if not ids:
                break
            deleted += self._delete_events(ids, before, through_seq)
        if deleted:
            self._forget_days()
        return deleted

    def _days_to_drop(self, before: float | None) -> list[int]:
        """Days whose partitions lie wholly before ``before`` (every day when None)."""
        found = self._db.read("SELECT day FROM partitions ORDER BY day")
        return [int(r[0]) for r in found if before is None or (int(r[0]) + 1) * DAY <= before]

    def _drop_day(self, day: int, before: float | None, through_seq: int) -> int:
        """Drop a day's three partitions if every decision in them may be deleted; returns how
        many decisions went (0 when the day must wait, or its tables are busy)."""
        try:
            dropped: int = self._db.run(
                lambda conn: logs.drop_day(conn, day, before, through_seq, self._shard),
                write=True,
            )
        except errors.UndefinedTable:
            return 0  # another process dropped it meanwhile
        except Exception as exc:  # busy tables: the rows are deleted one by one instead
            if "lock" not in str(exc):
                raise
            log.info("retention: day %d is busy; deleting its rows instead", day)
            return 0
        with self._days_guard:
            self._days.discard(day)
        return dropped

    def _delete_events(self, ids: list[str], before: float | None, through_seq: int) -> int:
        deleted = 0
        for start in range(0, len(ids), _DELETE_CHUNK):
            chunk = ids[start : start + _DELETE_CHUNK]

            def delete(conn: Conn, chunk: list[str] = chunk) -> int:
                return logs.delete_chunk(conn, chunk, before, through_seq, self._shard)

            deleted += self._db.run(delete, write=True)
        return deleted

    def import_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        if not events:
            return []
        days = {day_of(e.decision.timestamp) for e in events}
        imported: list[JoinedEvent] = self._writing(
            lambda conn: logs.import_joined(conn, events, self._shard), days
        )
        return imported

    def save_job(self, job: JobRecord) -> None:
        self._execute(
            "INSERT INTO jobs (kind, id, created_at, data) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (kind, id) DO UPDATE SET created_at = excluded.created_at, "
            "data = excluded.data",
            [job.kind, job.id, job.created_at, job.data],
        )

    def get_job(self, kind: str, job_id: str) -> JobRecord | None:
        found = self._db.read(
            "SELECT kind, id, created_at, data FROM jobs WHERE kind = %s AND id = %s",
            [kind, job_id],
        )
        return _job(found[0]) if found else None

    def list_jobs(self, kind: str) -> list[JobRecord]:
        found = self._db.read(
            "SELECT kind, id, created_at, data FROM jobs WHERE kind = %s ORDER BY created_at, id",
            [kind],
        )
        return [_job(row) for row in found]

    def delete_job(self, kind: str, job_id: str) -> bool:
        deleted: bool = self._db.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM jobs WHERE kind = %s AND id = %s", [kind, job_id]
                ).rowcount
                > 0
            ),
            write=True,
        )
        return deleted

    # -- copying a loop (LoopCopy) --------------------------------------------------------------

    def copy_decisions(self, after: str, limit: int) -> list[Decision]:
        if limit <= 0:
            return []
        found = self._db.read(
            f"SELECT {rows.DECISION_SELECT} FROM event_days e JOIN decisions d "
            f"ON {ON_DAY.format('e')} WHERE e.event_id > %s ORDER BY e.event_id LIMIT %s",
            [after, limit],
        )
        return [rows.decision_from_row(row) for row in found]

    def copy_rewards(self, after: int, limit: int) -> list[tuple[int, StoredReward]]:
        if limit <= 0:
            return []
        found = self._db.read(
            "SELECT id, event_id, value, received_at, request_key, late FROM rewards "
            "WHERE id > %s ORDER BY id LIMIT %s",
            [after, limit],
        )
        return [
            (int(row[0]), StoredReward(reward=rows.reward_from_row(row[1:5]), late=bool(row[5])))
            for row in found
        ]

    def copy_meta(self) -> dict[str, str]:
        return {str(key): str(value) for key, value in self._db.read("SELECT key, value FROM meta")}

    def restore_rows(
        self,
        *,
        decisions: Sequence[Decision] = (),
        rewards: Sequence[StoredReward] = (),
        joined: Sequence[JoinedEvent] = (),
    ) -> None:
        days = {day_of(d.timestamp) for d in decisions}
        try:
            self._writing(
                lambda conn: logs.restore_rows(conn, decisions, rewards, joined, self._shard), days
            )
        except errors.UniqueViolation as exc:
            raise ValueError(f"restore_rows: a row's key is stored already ({exc})") from exc

    def restore_model(self, record: ModelRecord) -> None:
        def restore(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO models (version, created_at, data, arguments, learned_count, "
                "cursor, restored_from) VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
            conn.execute(
                "SELECT setval(pg_get_serial_sequence('models', 'version'), "
                "(SELECT MAX(version) FROM models))"
            )
            self._channels.bump(conn)

        try:
            self._db.run(restore, write=True)
        except errors.UniqueViolation as exc:
            raise ValueError(f"restore_model: version {record.version} is stored already") from exc

    def restore_totals(self, *, joined: int, defaulted: int) -> None:
        self._execute(
            "UPDATE counters SET joined = CASE WHEN shard = 0 THEN %s ELSE 0 END, "
            "defaulted = CASE WHEN shard = 0 THEN %s ELSE 0 END",
            [joined, defaulted],
        )

    def restore_seq(self, last_seq: int) -> None:
        self._execute("UPDATE seq_mark SET value = GREATEST(value, %s) WHERE id = 1", [last_seq])


def _command(row: Sequence[Any]) -> Command:
    return Command(
        generation=row[0],
        kind=row[1],
        payload=bytes(row[2]),
        submitted_at=row[3],
        state=row[4],
        finished_at=row[5],
        result=bytes(row[6]),
        error_code=row[7],
        error_message=row[8],
    )


def _job(row: Sequence[Any]) -> JobRecord:
    return JobRecord(kind=row[0], id=row[1], created_at=row[2], data=row[3])


def _due_params(now: float) -> dict[str, float]:
    return {"now": now, "grace": rules.JOIN_GRACE, "bound": now - rules.JOIN_GRACE + _DUE_SLACK}


def _day_floor(start: float) -> int:
    return day_of(start) if start > -1e15 else -(2**31)


def _day_ceiling(end: float) -> int:
    return day_of(end) if end < 1e15 else 2**31 - 1
