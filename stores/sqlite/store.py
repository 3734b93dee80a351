"""The SQLite :class:`bandit.store.Store`: one file, WAL mode, versioned schema.

Semantics are those of :class:`bandit.memory.MemoryStore`; the join, lateness and activation
rules come from :mod:`bandit.join`. Every method is one transaction, except ``delete_logs``,
which deletes in short transactions so writers never wait long (connections, transactions and
durability: :mod:`stores.sqlite.connection`).

Durability: decisions, rewards and activations are durable before their request is answered
(the group commit's sync). The learner's joined events and checkpoints commit without an fsync
of their own. They are derived state: after a power loss that drops them, the learner joins and
learns the same events again from the decisions and rewards, exactly once, from the last
checkpoint that survived. SQLite in WAL mode loses only a suffix of commits (each WAL frame's
checksum chains over the frames before it), so a checkpoint never survives without the appends
before it, and any request's sync makes every earlier commit durable too. Their own fsyncs
only queued against the request path's: one file is synced by one caller at a time, and a
learner fsync behind a busy WAL took up to 130 ms.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlite_utils import Database

from bandit import join as rules
from bandit.config import ServiceConfiguration
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
from stores.sqlite import coordination, copying
from stores.sqlite import logs as logs
from stores.sqlite import writes as writes
from stores.sqlite.connection import (
    DEFAULT_LOCK_TIMEOUT,
    SQLiteConnections,
    select,
    select_tuples,
)
from stores.sqlite.schema import MIGRATIONS, WATCH_SETTINGS_COLUMNS

log = logging.getLogger(__name__)

_JOIN_CHUNK = 200
"""Events per statement when appending joined events (5 parameters each: 1,000 of SQLite's
at least 32,766)."""

_DELETE_CHUNK = 500
"""Events deleted per write transaction by ``delete_logs`` (a few ms of the write lock each)."""

_DUE_SLACK = 1.0
"""Seconds added to the indexed ``close_at`` bound of a due scan. The exact test
``close_at + grace <= now`` is repeated beside it, so rounding in ``now - grace`` never drops or
adds an event; the slack only lets the index range include every candidate."""

_DUE = "p.close_at <= :bound AND p.close_at + :grace <= :now"
"""Due entries of ``pending p`` (a range scan of its primary key)."""


SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes (``PRAGMA user_version`` of an up-to-date file)."""


class SchemaTooNew(RuntimeError):
    """The database file was written by a newer banditd than this one."""


def schema_version(path: str | os.PathLike[str]) -> int:
    """The schema version of the file at ``path`` (0 for a missing or empty one), read without
    creating it or changing what it holds: what ``banditd migrate`` reports it migrated from."""
    if not os.path.exists(path):
        return 0
    uri = Path(path).resolve().as_uri() + "?mode=rw"  # never creates the file
    conn = sqlite3.connect(uri, uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


class SQLiteStore(SQLiteConnections):
    """A :class:`bandit.store.Store` on one SQLite file (see :class:`SQLiteConnections`).

    Args:
        path: the database file; migrated to the current schema when opened, and created
            first if missing (unless not ``create``).
        create: whether a missing file is created; when False it is a ``FileNotFoundError``
            (for readers such as ``banditd export``, where a mistyped path would otherwise
            read as an empty loop).
        synchronous: SQLite's ``PRAGMA synchronous`` level. ``FULL`` makes every commit durable
            across power loss; ``NORMAL`` may lose the last commits on power loss (not on a
            process crash) and is faster.
        lock_timeout: seconds a write waits for the database's write lock before raising
            :class:`bandit.errors.StoreUnavailable`.

    Raises:
        ValueError: ``synchronous`` is not one of :data:`SYNCHRONOUS_LEVELS`.
        SchemaTooNew: the file's schema version is newer than :data:`MIGRATIONS` knows.
        FileNotFoundError: the file is missing and not ``create``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        background_checkpoint: float | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        create: bool = True,
    ) -> None:
        if not create and not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, "no such database file", os.fspath(path))
        super().__init__(
            path,
            migrate=_migrate,
            synchronous=synchronous,
            background_checkpoint=background_checkpoint,
            lock_timeout=lock_timeout,
        )
        self._fence: str | None = None

    def failing_writes(self) -> str | None:
        return self.write_failure

    # -- decisions, rewards, activations ---------------------------------------------------

    def write(self, batch: WriteBatch) -> WriteResult:
        with self._write(deferred_sync=True) as db:
            return writes.write_batch(db, batch)

    def try_write(self, batch: WriteBatch) -> WriteResult | None:
        with self._try_write() as db:
            return writes.write_batch(db, batch) if db is not None else None

    def get_decision(self, event_id: str) -> Decision | None:
        found = self._all_tuples(
            f"SELECT {rows.DECISION_SELECT} FROM decisions d WHERE event_id = ?", [event_id]
        )
        return rows.decision_from_row(found[0]) if found else None

    def due(
        self, now: float, limit: int, *, raw_features: bool = False
    ) -> list[tuple[Decision, list[Reward]]]:
        if limit <= 0:
            return []
        with self._read() as db:
            found = select_tuples(
                db,
                f"SELECT {rows.DECISION_SELECT} FROM pending p "
                f"JOIN decisions d ON d.event_id = p.event_id WHERE {_DUE} "
                "ORDER BY p.close_at, p.event_id LIMIT :limit",
                _due_params(now) | {"limit": limit},
            )
            decisions = [rows.decision_from_row(row, raw_features=raw_features) for row in found]
            rewards = logs.counted_rewards(db, [d.event_id for d in decisions])
        return [(d, rewards.get(d.event_id, [])) for d in decisions]

    # -- joined events ---------------------------------------------------------------------

    def append_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        # Two statements per chunk rather than two per event: the learner appends every event.
        # No fsync of its own (module docstring, durability).
        appended: list[JoinedEvent] = []
        with self._write(deferred_sync=True) as db:
            coordination.check_fence(db, self._fence)
            for start in range(0, len(events), _JOIN_CHUNK):
                appended += logs.append_joined(db, events[start : start + _JOIN_CHUNK])
        return appended

    def joined_after(
        self, cursor: int, limit: int, *, raw_features: bool = False
    ) -> list[JoinedEvent]:
        if limit <= 0:
            return []
        found = self._all_tuples(
            f"SELECT {rows.JOINED_SELECT} "
            "FROM joined j JOIN decisions d ON d.event_id = j.event_id "
            "WHERE j.seq > ? ORDER BY j.seq LIMIT ?",
            [cursor, limit],
        )
        return [rows.joined_from_row(row, raw_features=raw_features) for row in found]

    def last_seq(self) -> int:
        row = self._first("SELECT COALESCE(MAX(seq), 0) AS seq FROM joined")
        return int(row["seq"]) if row is not None else 0

    # -- learner state and models ----------------------------------------------------------

    def load_checkpoint(self) -> Checkpoint | None:
        row = self._first("SELECT * FROM checkpoint WHERE id = 1")
        return rows.checkpoint_from_row(row) if row is not None else None

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        # No fsync of its own (module docstring, durability).
        with self._write(deferred_sync=True) as db:
            coordination.check_fence(db, self._fence)
            retrain = checkpoint.retrain
            db.execute(
                "INSERT OR REPLACE INTO checkpoint "
                "(id, model, arguments, cursor, learned_count, updated_at, retrain_generation, "
                "retrain_cursor, retrain_since, retrain_settings) "
                "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        with self._write() as db:
            coordination.check_fence(db, self._fence)
            inserted = db.execute(
                "INSERT INTO models (created_at, data, arguments, learned_count, cursor) "
                "VALUES (?, ?, ?, ?, ?)",
                [created_at, data, arguments, learned_count, cursor],
            )
            version = _rowid(inserted)
            if keep > 0:  # as MemoryStore, keep <= 0 prunes nothing
                db.execute(
                    "DELETE FROM models WHERE version NOT IN "
                    "(SELECT version FROM models ORDER BY version DESC LIMIT ?)",
                    [keep],
                )
        return ModelRecord(
            version=version,
            created_at=created_at,
            data=data,
            arguments=arguments,
            learned_count=learned_count,
            cursor=cursor,
        )

    def latest_model(self) -> ModelRecord | None:
        row = self._first("SELECT * FROM models ORDER BY version DESC LIMIT 1")
        return rows.model_from_row(row) if row is not None else None

    def get_model(self, version: int) -> ModelRecord | None:
        row = self._first("SELECT * FROM models WHERE version = ?", [version])
        return rows.model_from_row(row) if row is not None else None

    def list_models(self) -> list[ModelRecord]:
        found = self._all(
            "SELECT version, created_at, arguments, learned_count, cursor, restored_from "
            "FROM models ORDER BY version DESC"
        )
        return [rows.model_from_row(row) for row in found]

    def mark_restored(self, version: int, restored_from: int) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE models SET restored_from = ? WHERE version = ?", [restored_from, version]
            )

    # -- settings --------------------------------------------------------------------------

    def load_config(self) -> ServiceConfiguration | None:
        row = self._first("SELECT data FROM config WHERE id = 1")
        return rows.config_from_json(row["data"]) if row is not None else None

    def save_config(self, config: ServiceConfiguration) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO config (id, data) VALUES (1, ?)",
                [rows.config_to_json(config)],
            )

    def load_policy(self) -> PolicySettings | None:
        row = self._first("SELECT name, arguments FROM policy WHERE id = 1")
        return rows.policy_from_row(row) if row is not None else None

    def save_policy(self, policy: PolicySettings) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO policy (id, name, arguments) VALUES (1, ?, ?)",
                [policy.name, policy.arguments],
            )

    def load_guardrail(self) -> GuardrailRecord | None:
        row = self._first("SELECT * FROM guardrail WHERE id = 1")
        return rows.guardrail_from_row(row) if row is not None else None

    def save_guardrail(self, record: GuardrailRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO guardrail (id, state, since, reason, trips, recoveries) "
                "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
                "since = excluded.since, reason = excluded.reason, trips = excluded.trips, "
                "recoveries = excluded.recoveries",
                [
                    record.state.value,
                    record.since,
                    record.reason,
                    record.trips,
                    record.recoveries,
                ],
            )

    def load_watch_settings(self) -> WatchSettingsRecord | None:
        row = self._first("SELECT * FROM watch_settings WHERE id = 1")
        return rows.watch_settings_from_row(row) if row is not None else None

    def save_watch_settings(self, record: WatchSettingsRecord) -> None:
        columns = ", ".join(WATCH_SETTINGS_COLUMNS)
        with self._write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO watch_settings (id, {columns}) "
                f"VALUES (1, {', '.join('?' * len(WATCH_SETTINGS_COLUMNS))})",
                [getattr(record, name) for name in WATCH_SETTINGS_COLUMNS],
            )

    def load_apprentice(self) -> ApprenticeRecord | None:
        row = self._first("SELECT * FROM apprentice WHERE id = 1")
        return rows.apprentice_from_row(row) if row is not None else None

    def save_apprentice(self, record: ApprenticeRecord) -> None:
        with self._write() as db:
            db.execute(rows.APPRENTICE_SAVE, rows.apprentice_params(record))

    def load_report(self) -> ReportRecord | None:
        row = self._first("SELECT at, holder, body FROM trainer_report WHERE id = 1")
        if row is None:
            return None
        return ReportRecord(at=float(row["at"]), holder=str(row["holder"]), body=bytes(row["body"]))

    def save_report(self, record: ReportRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO trainer_report (id, at, holder, body) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at, holder = excluded.holder, "
                "body = excluded.body",
                [record.at, record.holder, record.body],
            )

    def get_time(self, name: LoopTime) -> float | None:
        row = self._first("SELECT at FROM times WHERE name = ?", [name.value])
        return float(row["at"]) if row is not None else None

    def set_time(self, name: LoopTime, at: float) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO times (name, at) VALUES (?, ?)", [name.value, at])

    def set_time_if_absent(self, name: LoopTime, at: float) -> float:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO times (name, at) VALUES (?, ?)", [name.value, at])
            return float(select(db, "SELECT at FROM times WHERE name = ?", [name.value])[0]["at"])

    def get_meta(self, key: str) -> str | None:
        row = self._first("SELECT value FROM meta WHERE key = ?", [key])
        return str(row["value"]) if row is not None else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])

    def set_meta_if_absent(self, key: str, value: str) -> str:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", [key, value])
            return str(select(db, "SELECT value FROM meta WHERE key = ?", [key])[0]["value"])

    def counts(self, now: float) -> StoreCounts:
        with self._read() as db:
            totals = select(db, "SELECT * FROM counters WHERE id = 1")[0]
            pending = select(
                db,
                f"SELECT COUNT(*) AS n, MIN(p.close_at) AS oldest FROM pending p WHERE {_DUE}",
                _due_params(now),
            )[0]
            first = select(db, "SELECT MIN(close_at) AS at FROM pending")[0]
        return StoreCounts(
            decisions=totals["decisions"],
            rewards=totals["rewards"],
            late_rewards=totals["late_rewards"],
            joined=totals["joined"],
            defaulted=totals["defaulted"],
            explored=totals["explored"],
            pending_join=pending["n"],
            oldest_pending_close_at=pending["oldest"],
            next_close_at=first["at"],
        )

    # -- trainer lease and control channel (SQL in stores.sqlite.coordination) -----------------

    def acquire_lease(self, holder: str, now: float, ttl: float) -> bool:
        with self._write() as db:
            return coordination.acquire_lease(db, holder, now, ttl)

    def release_lease(self, holder: str) -> None:
        with self._write() as db:
            coordination.release_lease(db, holder)

    def wait_lease(self, timeout: float) -> bool:
        return False  # a lease row with an expiry: standbys poll it

    def fence(self, holder: str | None) -> None:
        self._fence = holder

    def lease(self, now: float) -> Lease | None:
        with self._use() as db:
            return coordination.lease(db, now)

    def generation(self) -> int:
        with self._use() as db:
            return coordination.generation(db)

    def watch_changes(self, notify: Callable[[], None]) -> None:
        pass  # other processes' commits announce nothing: edges poll the generation

    def submit_command(self, kind: str, payload: bytes, now: float) -> int:
        with self._write() as db:
            return coordination.submit_command(db, kind, payload, now)

    def claim_command(self, generation: int, now: float) -> bool:
        with self._write() as db:
            return coordination.move_command(db, generation, source="pending", target="claimed")

    def finish_command(
        self,
        generation: int,
        *,
        now: float,
        result: bytes = b"",
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        with self._write() as db:
            finished = coordination.move_command(
                db,
                generation,
                source="claimed",
                target="done" if error_code is None else "failed",
                finished_at=now,
                result=result,
                error_code=error_code,
                error_message=error_message,
            )
        if not finished:
            raise ValueError(f"command {generation} is not claimed")

    def cancel_command(self, generation: int, now: float) -> bool:
        with self._write() as db:
            return coordination.move_command(
                db, generation, source="pending", target="cancelled", finished_at=now
            )

    def get_command(self, generation: int) -> Command | None:
        with self._use() as db:
            return coordination.get_command(db, generation)

    def fail_claimed(self, *, now: float, error_code: str, error_message: str) -> int:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE commands SET state = 'failed', finished_at = ?, error_code = ?, "
                "error_message = ? WHERE state = 'claimed'",
                [now, error_code, error_message],
            )
            return int(cursor.rowcount)

    def pending_commands(self, after: int, limit: int) -> list[Command]:
        if limit <= 0:
            return []
        with self._use() as db:
            return coordination.pending_commands(db, after, limit)

    # -- logs, retention and jobs (SQL in stores.sqlite.logs) ----------------------------------

    def joined_between(
        self, start: float, end: float, after_seq: int, limit: int
    ) -> list[JoinedEvent]:
        if limit <= 0:
            return []
        with self._use() as db:
            return logs.joined_between(db, start, end, after_seq, limit)

    def log_range(self) -> tuple[float, float] | None:
        with self._use() as db:
            return logs.log_range(db)

    def delete_logs(self, *, before: float | None, through_seq: int) -> int:
        # Found by reads, deleted a chunk per write transaction: as one transaction, retention
        # over a store of 200,000 events held the write lock for 230 ms with nothing to delete,
        # and every rank and reward waited behind it.
        deleted = 0
        after_seq = 0
        while True:
            with self._read() as db:
                page = logs.learned_before(
                    db, before=before, through_seq=through_seq, after_seq=after_seq
                )
            if not page:
                break
            after_seq = page[-1][0]
            deleted += self._delete_events([event_id for _, event_id in page], before, through_seq)
        while before is not None:
            with self._read() as db:
                ids = logs.never_activated_before(db, before)
            if not ids:  # each one found is deleted, or was activated and is found no more
                break
            deleted += self._delete_events(ids, before, through_seq)
        if deleted:
            self.sync()  # deleted logs stay deleted across a power loss once this returns
        return deleted

    def _delete_events(self, ids: list[str], before: float | None, through_seq: int) -> int:
        deleted = 0
        for start in range(0, len(ids), _DELETE_CHUNK):
            with self._write(deferred_sync=True) as db:
                chunk = ids[start : start + _DELETE_CHUNK]
                deleted += logs.delete_events(db, chunk, before=before, through_seq=through_seq)
        return deleted

    def counted_rewards(self, event_ids: list[str]) -> dict[str, list[Reward]]:
        with self._read() as db:
            return logs.counted_rewards(db, event_ids)

    def import_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        with self._write() as db:
            return logs.import_joined(db, events)

    def save_job(self, job: JobRecord) -> None:
        with self._write() as db:
            logs.save_job(db, job)

    def get_job(self, kind: str, job_id: str) -> JobRecord | None:
        with self._use() as db:
            return logs.get_job(db, kind, job_id)

    def list_jobs(self, kind: str) -> list[JobRecord]:
        with self._use() as db:
            return logs.list_jobs(db, kind)

    def delete_job(self, kind: str, job_id: str) -> bool:
        with self._write() as db:
            return logs.delete_job(db, kind, job_id)

    # -- copying a loop (SQL in stores.sqlite.copying) -----------------------------------------

    def copy_decisions(self, after: str, limit: int) -> list[Decision]:
        if limit <= 0:
            return []
        with self._read() as db:
            return copying.copy_decisions(db, after, limit)

    def copy_rewards(self, after: int, limit: int) -> list[tuple[int, StoredReward]]:
        if limit <= 0:
            return []
        with self._read() as db:
            return copying.copy_rewards(db, after, limit)

    def copy_meta(self) -> dict[str, str]:
        with self._read() as db:
            return copying.copy_meta(db)

    def restore_rows(
        self,
        *,
        decisions: Sequence[Decision] = (),
        rewards: Sequence[StoredReward] = (),
        joined: Sequence[JoinedEvent] = (),
    ) -> None:
        try:
            with self._write() as db:
                copying.restore_rows(db, decisions, rewards, joined)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"cannot restore rows: {exc} (copy into an empty store)") from exc

    def restore_model(self, record: ModelRecord) -> None:
        try:
            with self._write() as db:
                copying.restore_model(db, record)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"cannot restore model {record.version}: {exc}") from exc

    def restore_seq(self, last_seq: int) -> None:
        with self._write() as db:
            copying.restore_seq(db, last_seq)

    def restore_totals(self, *, joined: int, defaulted: int) -> None:
        with self._write() as db:
            copying.restore_totals(db, joined=joined, defaulted=defaulted)


def _migrate(db: Database) -> None:
    """Bring the file to ``len(MIGRATIONS)`` in one transaction; a no-op when up to date."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise SchemaTooNew(
                f"schema version {version} is newer than this banditd's {len(MIGRATIONS)}; "
                "run a newer banditd"
            )
        for migration in MIGRATIONS[version:]:
            migration(db)
        if version != len(MIGRATIONS):
            db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        db.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise


def _due_params(now: float) -> dict[str, float]:
    return {"now": now, "grace": rules.JOIN_GRACE, "bound": now - rules.JOIN_GRACE + _DUE_SLACK}


def _rowid(cursor: sqlite3.Cursor) -> int:
    assert cursor.lastrowid is not None
    return cursor.lastrowid
