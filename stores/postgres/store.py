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
    Activation,
    ActivationOutcome,
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
    RewardOutcome,
    StoreCounts,
    StoredReward,
    WatchSettingsRecord,
    WriteBatch,
    WriteResult,
)
from stores import rows
from stores.postgres import coordination
from stores.postgres.connection import Conn, PGConnections
from stores.postgres.schema import (
    DAY,
    DAYS_AHEAD,
    PARTITIONED,
    SHARDS,
    SchemaMismatch,
    check_version,
    day_of,
    ensure_days,
    partition_name,
)

__all__ = ["PostgresStore", "SchemaMismatch"]

log = logging.getLogger(__name__)

_DECISION_TYPES = (
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

_DECISION_INSERT = (
    f"INSERT INTO decisions (day, {', '.join(rows.DECISION_COLUMNS)}) "
    f"SELECT * FROM unnest(%s::int4[], "
    + ", ".join(f"%s::{kind}[]" for kind in _DECISION_TYPES)
    + ")"
)

_DECISION_SELECT = rows.DECISION_SELECT
_JOINED_SELECT = rows.JOINED_SELECT
_ON_DAY = "d.day = {0}.day AND d.event_id = {0}.event_id"

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

    def _writing(self, work: Callable[[Conn], Any], days: Iterable[int]) -> Any:
        """``work`` in a write transaction after the partitions of ``days`` exist; once more if
        a partition it needed was dropped meanwhile (retention in another process)."""
        days = set(days)
        self._ensure(days)
        try:
            return self._db.run(work, write=True)
        except errors.CheckViolation as exc:
            if "no partition" not in str(exc):
                raise
            self._forget_days()
            self._ensure(days)
            return self._db.run(work, write=True)

    def _add_counts(self, conn: Conn, **deltas: int) -> None:
        changes = {name: value for name, value in deltas.items() if value}
        if not changes:
            return
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = {0} + {1}").format(sql.Identifier(name), sql.Literal(value))
            for name, value in changes.items()
        )
        conn.execute(
            sql.SQL("UPDATE counters SET {} WHERE shard = %s").format(assignments), [self._shard]
        )

    # -- decisions, rewards, activations -------------------------------------------------------

    def write(self, batch: WriteBatch) -> WriteResult:
        days = {day_of(d.timestamp) for d in batch.decisions}
        result: WriteResult = self._writing(lambda conn: self._write_batch(conn, batch), days)
        return result

    def try_write(self, batch: WriteBatch) -> WriteResult | None:
        return None  # a network round trip: never on the event loop

    def sync(self) -> None:
        pass  # commits are durable when they return

    def _write_batch(self, conn: Conn, batch: WriteBatch) -> WriteResult:
        decisions = self._put_decisions(conn, batch.decisions)
        activations = tuple(self._activate(conn, a) for a in batch.activations)
        rewards = self._put_rewards(conn, batch.rewards)
        return WriteResult(decisions=decisions, rewards=rewards, activations=activations)

    def _put_decisions(self, conn: Conn, decisions: Sequence[Decision]) -> tuple[Decision, ...]:
        if not decisions:
            return ()
        # Ids claimed in code point order, so two edges inserting the same ids cannot deadlock.
        first: dict[str, Decision] = {}
        for d in decisions:
            first.setdefault(d.event_id, d)
        ordered = sorted(first)
        fresh = {
            row[0]
            for row in conn.execute(
                "INSERT INTO event_days (event_id, day) "
                "SELECT * FROM unnest(%s::text[], %s::int4[]) ON CONFLICT DO NOTHING "
                "RETURNING event_id",
                [ordered, [day_of(first[i].timestamp) for i in ordered]],
            )
        }
        new = [first[i] for i in ordered if i in fresh]
        if new:
            self._insert_decisions(conn, new)
            self._add_counts(conn, decisions=len(new), explored=sum(d.explored for d in new))
        stored = {d.event_id: d for d in new}
        for event_id in first.keys() - fresh:
            found = _load_decision(conn, event_id)
            assert found is not None  # its id conflicted with it
            stored[event_id] = found
        return tuple(stored[d.event_id] for d in decisions)

    def _insert_decisions(self, conn: Conn, decisions: Sequence[Decision]) -> None:
        params = [rows.decision_params(d) for d in decisions]
        conn.execute(
            _DECISION_INSERT,
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
                "SELECT * FROM unnest(%s::float8[], %s::text[], %s::int4[])",
                [list(column) for column in zip(*windows, strict=True)],
            )

    def _activate(self, conn: Conn, activation: Activation) -> ActivationOutcome:
        loaded = _load_decision(conn, activation.event_id, lock=True)
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

    def _put_rewards(self, conn: Conn, rewards: Sequence[Reward]) -> tuple[RewardOutcome, ...]:
        if not rewards:
            return ()
        ids = sorted({r.event_id for r in rewards})
        # Lock the windows first (FOR SHARE, in id order): a join of one of these events waits
        # for this commit, and a join that came first is seen by the read below.
        conn.execute(
            "SELECT 1 FROM pending WHERE event_id = ANY(%s) ORDER BY event_id FOR SHARE", [ids]
        )
        windows = {
            event_id: (day, active, close_at, joined)
            for event_id, day, active, close_at, joined in conn.execute(
                "SELECT e.event_id, e.day, d.active, d.close_at, "
                "EXISTS (SELECT 1 FROM joined j WHERE j.day = e.day AND j.event_id = e.event_id) "
                "FROM event_days e JOIN decisions d ON d.day = e.day AND d.event_id = e.event_id "
                "WHERE e.event_id = ANY(%s)",
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
            outcomes.append(
                RewardOutcome.LATE
                if late
                else RewardOutcome.STORED
                if active
                else RewardOutcome.INACTIVE
            )
            values.append((day, r.event_id, r.value, r.received_at, r.request_key, int(late)))
        if not values:
            return tuple(outcomes)
        # WITH ORDINALITY keeps the batch's order in the ids (arrival order); the first of equal
        # keys is the one inserted, as on SQLite.
        inserted_rows = conn.execute(
            "INSERT INTO rewards (day, id, event_id, value, received_at, request_key, late) "
            "SELECT v.day, nextval('reward_ids'), v.event_id, v.value, v.received_at, "
            "v.request_key, v.late FROM unnest(%s::int4[], %s::text[], %s::float8[], "
            "%s::float8[], %s::text[], %s::int4[]) WITH ORDINALITY "
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
        self._add_counts(conn, rewards=len(inserted_rows), late_rewards=late_count)
        for position, r in keyed:  # NULL keys never conflict
            key = (r.event_id, r.request_key)
            if inserted.pop(key, None) is None:
                outcomes[position] = RewardOutcome.DUPLICATE
        return tuple(outcomes)

    def get_decision(self, event_id: str) -> Decision | None:
        return self._db.run(lambda conn: _load_decision(conn, event_id), atomic=False)

    def due(
        self, now: float, limit: int, *, raw_features: bool = False
    ) -> list[tuple[Decision, list[Reward]]]:
        if limit <= 0:
            return []
        today = day_of(now)  # the trainer keeps the next days' partitions ready for the edges
        self._ensure(range(today, today + DAYS_AHEAD + 1))

        def read(conn: Conn) -> list[tuple[Decision, list[Reward]]]:
            found = conn.execute(
                f"SELECT {_DECISION_SELECT} FROM pending p JOIN decisions d "
                f"ON {_ON_DAY.format('p')} WHERE {_DUE} "
                "ORDER BY p.close_at, p.event_id LIMIT %(limit)s",
                _due_params(now) | {"limit": limit},
            ).fetchall()
            decisions = [rows.decision_from_row(row, raw_features=raw_features) for row in found]
            rewards = _counted_rewards(conn, [d.event_id for d in decisions])
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
            first: dict[str, JoinedEvent] = {}
            for e in events:
                first.setdefault(e.decision.event_id, e)
            ids = sorted(first)
            conn.execute(
                "SELECT 1 FROM pending WHERE event_id = ANY(%s) ORDER BY event_id FOR UPDATE",
                [ids],
            )
            unjoined = {
                event_id: day
                for event_id, day in conn.execute(
                    "SELECT e.event_id, e.day FROM event_days e WHERE e.event_id = ANY(%s) "
                    "AND NOT EXISTS (SELECT 1 FROM joined j "
                    "WHERE j.day = e.day AND j.event_id = e.event_id)",
                    [ids],
                )
            }
            recount = [i for i in unjoined if i in counted_at_due]
            now_counted = {
                event_id: len(found) for event_id, found in _counted_rewards(conn, recount).items()
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
            numbered = _number(conn, fresh)
            _insert_joined(conn, numbered, [unjoined[e.decision.event_id] for e in numbered])
            conn.execute(
                "DELETE FROM pending WHERE event_id = ANY(%s)",
                [[e.decision.event_id for e in numbered]],
            )
            self._add_counts(
                conn, joined=len(numbered), defaulted=sum(e.defaulted for e in numbered)
            )
            return numbered

        appended: list[JoinedEvent] = self._db.run(append, write=True)
        return appended

    def joined_after(
        self, cursor: int, limit: int, *, raw_features: bool = False
    ) -> list[JoinedEvent]:
        if limit <= 0:
            return []
        found = self._db.read(
            f"SELECT {_JOINED_SELECT} FROM joined j JOIN decisions d ON {_ON_DAY.format('j')} "
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
            assert totals is not None and pending is not None
            return StoreCounts(
                decisions=int(totals[0]),
                rewards=int(totals[1]),
                late_rewards=int(totals[2]),
                joined=int(totals[3]),
                defaulted=int(totals[4]),
                explored=int(totals[5]),
                pending_join=int(pending[0]),
                oldest_pending_close_at=pending[1],
            )

        return self._db.run(read)

    def counted_rewards(self, event_ids: list[str]) -> dict[str, list[Reward]]:
        return self._db.run(lambda conn: _counted_rewards(conn, event_ids), atomic=False)

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
            f"SELECT {_JOINED_SELECT} FROM joined j JOIN decisions d ON {_ON_DAY.format('j')} "
            "WHERE j.seq > %s AND d.timestamp >= %s AND d.timestamp < %s "
            "AND j.day >= %s AND j.day <= %s ORDER BY j.seq LIMIT %s",
            [after_seq, start, end, _day_floor(start), _day_ceiling(end), limit],
        )
        return [rows.joined_from_row(row) for row in found]

    def log_range(self) -> tuple[float, float] | None:
        row = self._db.first(
            "SELECT MIN(d.timestamp), MAX(d.timestamp) FROM joined j "
            f"JOIN decisions d ON {_ON_DAY.format('j')}"
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
                f"ON {_ON_DAY.format('j')} WHERE j.seq > %s AND j.seq <= %s "
                "AND d.timestamp < %s ORDER BY j.seq LIMIT %s",
                [after_seq, through_seq, _before(before), _FIND_PAGE],
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
        names = {t: sql.Identifier(partition_name(t, day)) for t in PARTITIONED}

        def drop(conn: Conn) -> int:
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
            self._add_counts(
                conn,
                decisions=-int(totals[0]),
                explored=-int(totals[1]),
                rewards=-int(totals[2]),
                late_rewards=-int(totals[3]),
            )
            return int(totals[0])

        try:
            dropped: int = self._db.run(drop, write=True)
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
                return self._delete_chunk(conn, chunk, before, through_seq)

            deleted += self._db.run(delete, write=True)
        return deleted

    def _delete_chunk(
        self, conn: Conn, ids: list[str], before: float | None, through_seq: int
    ) -> int:
        doomed = conn.execute(
            f"SELECT d.day, d.event_id, d.explored FROM event_days e JOIN decisions d "
            f"ON {_ON_DAY.format('e')} WHERE e.event_id = ANY(%s) AND d.timestamp < %s "
            "AND (EXISTS (SELECT 1 FROM joined j WHERE j.day = d.day AND "
            "j.event_id = d.event_id AND j.seq <= %s) OR (%s AND d.active = 0)) "
            "ORDER BY d.event_id FOR UPDATE OF d",
            [ids, _before(before), through_seq, before is not None],
        ).fetchall()
        if not doomed:
            return 0
        days = [int(r[0]) for r in doomed]
        event_ids = [str(r[1]) for r in doomed]
        pairs = "(SELECT * FROM unnest(%s::int4[], %s::text[]) AS x(day, event_id))"
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
            f"DELETE FROM decisions d USING {pairs} x "
            "WHERE d.day = x.day AND d.event_id = x.event_id",
            [days, event_ids],
        )
        conn.execute("DELETE FROM pending WHERE event_id = ANY(%s)", [event_ids])
        conn.execute("DELETE FROM event_days WHERE event_id = ANY(%s)", [event_ids])
        self._add_counts(
            conn,
            decisions=-len(doomed),
            explored=-sum(int(r[2]) for r in doomed),
            rewards=-len(removed),
            late_rewards=-sum(int(r[0]) for r in removed),
        )
        return len(doomed)

    def import_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        if not events:
            return []
        first: dict[str, JoinedEvent] = {}
        for e in events:
            first.setdefault(e.decision.event_id, e)

        def store(conn: Conn) -> list[JoinedEvent]:
            ordered = sorted(first)
            fresh = {
                row[0]
                for row in conn.execute(
                    "INSERT INTO event_days (event_id, day) "
                    "SELECT * FROM unnest(%s::text[], %s::int4[]) ON CONFLICT DO NOTHING "
                    "RETURNING event_id",
                    [ordered, [day_of(first[i].decision.timestamp) for i in ordered]],
                )
            }
            new = [
                e
                for e in events
                if e.decision.event_id in fresh and first[e.decision.event_id] is e
            ]
            if not new:
                return []
            decisions = [e.decision for e in new]
            # Imported decisions are joined already: no pending entry.
            params = [rows.decision_params(d) for d in decisions]
            conn.execute(
                _DECISION_INSERT,
                [
                    [day_of(d.timestamp) for d in decisions],
                    *([p[column] for p in params] for column in rows.DECISION_COLUMNS),
                ],
            )
            numbered = _number(conn, new)
            _insert_joined(conn, numbered, [day_of(e.decision.timestamp) for e in numbered])
            self._add_counts(
                conn,
                decisions=len(new),
                explored=sum(d.explored for d in decisions),
                joined=len(new),
                defaulted=sum(e.defaulted for e in new),
            )
            return numbered

        days = {day_of(e.decision.timestamp) for e in events}
        imported: list[JoinedEvent] = self._writing(store, days)
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
            f"SELECT {_DECISION_SELECT} FROM event_days e JOIN decisions d "
            f"ON {_ON_DAY.format('e')} WHERE e.event_id > %s ORDER BY e.event_id LIMIT %s",
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
        def restore(conn: Conn) -> None:
            if decisions:
                ids = [d.event_id for d in decisions]
                taken = conn.execute(
                    "INSERT INTO event_days (event_id, day) "
                    "SELECT * FROM unnest(%s::text[], %s::int4[]) ON CONFLICT DO NOTHING "
                    "RETURNING event_id",
                    [ids, [day_of(d.timestamp) for d in decisions]],
                ).fetchall()
                if len(taken) != len(set(ids)) or len(ids) != len(set(ids)):
                    raise ValueError("restore_rows: a decision's event id is stored already")
                self._insert_decisions(conn, decisions)
                self._add_counts(
                    conn, decisions=len(decisions), explored=sum(d.explored for d in decisions)
                )
            if rewards:
                ids = sorted({r.reward.event_id for r in rewards})
                days: dict[str, int] = dict(
                    conn.execute(
                        "SELECT event_id, day FROM event_days WHERE event_id = ANY(%s)", [ids]
                    ).fetchall()
                )
                if len(days) != len(ids):
                    raise ValueError("restore_rows: a reward's decision is not stored")
                conn.execute(
                    "INSERT INTO rewards (day, id, event_id, value, received_at, request_key, "
                    "late) SELECT v.day, nextval('reward_ids'), v.event_id, v.value, "
                    "v.received_at, v.request_key, v.late FROM unnest(%s::int4[], %s::text[], "
                    "%s::float8[], %s::float8[], %s::text[], %s::int4[]) WITH ORDINALITY "
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
                self._add_counts(
                    conn, rewards=len(rewards), late_rewards=sum(r.late for r in rewards)
                )
            if joined:
                ids = [e.decision.event_id for e in joined]
                days = dict(
                    conn.execute(
                        "SELECT event_id, day FROM event_days WHERE event_id = ANY(%s)", [ids]
                    ).fetchall()
                )
                if len(days) != len(set(ids)):
                    raise ValueError("restore_rows: a joined event's decision is not stored")
                _insert_joined(conn, list(joined), [days[i] for i in ids])
                conn.execute("DELETE FROM pending WHERE event_id = ANY(%s)", [ids])
                conn.execute(
                    "UPDATE seq_mark SET value = GREATEST(value, %s) WHERE id = 1",
                    [max(e.seq for e in joined)],
                )
                self._add_counts(
                    conn, joined=len(joined), defaulted=sum(e.defaulted for e in joined)
                )

        days = {day_of(d.timestamp) for d in decisions}
        try:
            self._writing(restore, days)
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

    def restore_seq(self, last_seq: int) -> None:
        self._execute("UPDATE seq_mark SET value = GREATEST(value, %s) WHERE id = 1", [last_seq])


def _load_decision(conn: Conn, event_id: str, *, lock: bool = False) -> Decision | None:
    """A decision by id (through ``event_days``, so one partition is read)."""
    found = conn.execute(
        f"SELECT {_DECISION_SELECT} FROM event_days e JOIN decisions d ON {_ON_DAY.format('e')} "
        f"WHERE e.event_id = %s{' FOR UPDATE OF d' if lock else ''}",
        [event_id],
    ).fetchone()
    return rows.decision_from_row(found) if found is not None else None


def _counted_rewards(conn: Conn, event_ids: list[str]) -> dict[str, list[Reward]]:
    """The non-late rewards of each event, in arrival order."""
    if not event_ids:
        return {}
    out: dict[str, list[Reward]] = {}
    for row in conn.execute(
        f"SELECT {', '.join('r.' + c.strip() for c in rows.REWARD_SELECT.split(','))} "
        "FROM event_days e JOIN rewards r ON r.day = e.day AND r.event_id = e.event_id "
        "WHERE e.event_id = ANY(%s) AND r.late = 0 ORDER BY r.id",
        [event_ids],
    ):
        out.setdefault(row[0], []).append(rows.reward_from_row(row))
    return out


def _number(conn: Conn, events: list[JoinedEvent]) -> list[JoinedEvent]:
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


def _insert_joined(conn: Conn, events: list[JoinedEvent], days: list[int]) -> None:
    conn.execute(
        "INSERT INTO joined (day, seq, event_id, reward, reward_count, defaulted, joined_at) "
        "SELECT * FROM unnest(%s::int4[], %s::int8[], %s::text[], %s::float8[], %s::int4[], "
        "%s::int4[], %s::float8[])",
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


def _before(before: float | None) -> float:
    return float("inf") if before is None else before


def _day_floor(start: float) -> int:
    return day_of(start) if start > -1e15 else -(2**31)


def _day_ceiling(end: float) -> int:
    return day_of(end) if end < 1e15 else 2**31 - 1
