"""The SQLite store's schema, as an ordered list of migrations.

``PRAGMA user_version`` holds how many of :data:`MIGRATIONS` a file has applied. Opening a file
applies the rest in one transaction, so a file is always at exactly one schema version. Append
new migrations; never edit or reorder released ones.

Tables:

* ``decisions``: one row per event, the request and pmf as JSON. Written once (activation sets
  the window of a deferred one); joining never rewrites it (version 3).
* ``pending``: ``(close_at, event_id)`` of every active, unjoined event with a window, ordered
  by window close, so finding due events is a range scan of a small table (version 3). Triggers
  keep it: a decision enters when inserted or activated with a window, leaves when its joined
  row is inserted (or it is deleted). The partial index ``decisions_inactive`` holds the
  never-activated decisions, for the retention job.
* ``rewards``: every stored reward (``late`` ones included) in arrival order (``id``);
  ``UNIQUE (event_id, request_key)`` makes retried requests idempotent.
* ``joined``: joined events; ``seq`` (1, 2, …) is the learner's cursor.
* ``models``: published serving models; ``AUTOINCREMENT`` so pruned versions are never reused.
* ``checkpoint``, ``config``, ``policy``, ``counters``: single rows (``id = 1``); the
  checkpoint's ``retrain_*`` columns hold a pending retrain (version 4).
* ``meta``: small named values.
* ``jobs``: offline evaluations and feature-importance jobs, a JSON document each (version 2).
* ``lease``, ``commands``, ``generation``: the trainer lease, the admin commands the trainer
  carries out, and the number edges poll to see that something they cache changed (version 5).
* ``guardrail``, ``watch_settings``, ``apprentice``: single rows, a typed column each;
  ``times``: named moments of the loop; ``models.restored_from`` (version 6; these were JSON
  and text in ``meta`` before, which now holds plain strings: the loop seed, the signing key).

``counters`` holds the totals of :class:`bandit.events.StoreCounts`, kept by triggers in the
inserting transaction, so ``/metrics`` never counts a whole table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from sqlite_utils import Database

from bandit.events import (
    MOMENT_VECTORS,
    ApprenticeMetrics,
    ApprenticeRecord,
    ImitationCounts,
    MomentSums,
)
from bandit.graduation import ApprenticeEvaluation
from stores import rows

_INITIAL = (
    """
    CREATE TABLE decisions (
        event_id TEXT PRIMARY KEY NOT NULL,
        timestamp REAL NOT NULL,
        request TEXT NOT NULL,
        pmf TEXT NOT NULL,
        chosen_index INTEGER NOT NULL,
        greedy_index INTEGER NOT NULL,
        model_version INTEGER NOT NULL,
        learning_mode TEXT NOT NULL,
        active INTEGER NOT NULL CHECK (active IN (0, 1)),
        activated_at REAL,
        close_at REAL,
        joined INTEGER NOT NULL DEFAULT 0 CHECK (joined IN (0, 1)),
        explored INTEGER NOT NULL CHECK (explored IN (0, 1))
    )
    """,
    """
    CREATE INDEX decisions_pending ON decisions (close_at, event_id)
    WHERE active = 1 AND joined = 0 AND close_at IS NOT NULL
    """,
    """
    CREATE TABLE rewards (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL REFERENCES decisions (event_id),
        value REAL NOT NULL,
        received_at REAL NOT NULL,
        request_key TEXT,
        late INTEGER NOT NULL CHECK (late IN (0, 1)),
        UNIQUE (event_id, request_key)
    )
    """,
    """
    CREATE TABLE joined (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE REFERENCES decisions (event_id),
        reward REAL NOT NULL,
        reward_count INTEGER NOT NULL,
        defaulted INTEGER NOT NULL CHECK (defaulted IN (0, 1)),
        joined_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE models (
        version INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        data BLOB NOT NULL,
        arguments TEXT NOT NULL,
        learned_count INTEGER NOT NULL,
        cursor INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        model BLOB NOT NULL,
        arguments TEXT NOT NULL,
        cursor INTEGER NOT NULL,
        learned_count INTEGER NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    "CREATE TABLE config (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL)",
    """
    CREATE TABLE policy (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT NOT NULL,
        arguments TEXT NOT NULL
    )
    """,
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    """
    CREATE TABLE counters (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        decisions INTEGER NOT NULL DEFAULT 0,
        rewards INTEGER NOT NULL DEFAULT 0,
        late_rewards INTEGER NOT NULL DEFAULT 0,
        joined INTEGER NOT NULL DEFAULT 0,
        defaulted INTEGER NOT NULL DEFAULT 0,
        explored INTEGER NOT NULL DEFAULT 0
    )
    """,
    "INSERT INTO counters (id) VALUES (1)",
    """
    CREATE TRIGGER decisions_counted AFTER INSERT ON decisions BEGIN
        UPDATE counters SET decisions = decisions + 1, explored = explored + NEW.explored
        WHERE id = 1;
    END
    """,
    """
    CREATE TRIGGER rewards_counted AFTER INSERT ON rewards BEGIN
        UPDATE counters SET rewards = rewards + 1, late_rewards = late_rewards + NEW.late
        WHERE id = 1;
    END
    """,
    """
    CREATE TRIGGER joined_counted AFTER INSERT ON joined BEGIN
        UPDATE counters SET joined = joined + 1, defaulted = defaulted + NEW.defaulted
        WHERE id = 1;
    END
    """,
)


def create_initial_schema(db: Database) -> None:
    """Version 1: every table, index and counter trigger."""
    for statement in _INITIAL:
        db.execute(statement)


Migration = Callable[[Database], None]
"""A schema step; it runs inside the opening transaction and must not commit."""

_LOGS_AND_JOBS = (
    """
    CREATE TABLE jobs (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        created_at REAL NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    )
    """,
    """
    CREATE TRIGGER decisions_uncounted AFTER DELETE ON decisions BEGIN
        UPDATE counters SET decisions = decisions - 1, explored = explored - OLD.explored
        WHERE id = 1;
    END
    """,
    """
    CREATE TRIGGER rewards_uncounted AFTER DELETE ON rewards BEGIN
        UPDATE counters SET rewards = rewards - 1, late_rewards = late_rewards - OLD.late
        WHERE id = 1;
    END
    """,
)


def add_jobs_and_log_deletion(db: Database) -> None:
    """Version 2: the ``jobs`` table (offline evaluations, feature importances) and triggers
    that keep ``counters`` right when logs are deleted (``joined`` and ``defaulted`` stay
    totals, as the learner's cursor counts in ``seq``)."""
    for statement in _LOGS_AND_JOBS:
        db.execute(statement)


_PENDING_TABLE = (
    """
    CREATE TABLE pending (
        close_at REAL NOT NULL,
        event_id TEXT NOT NULL,
        PRIMARY KEY (close_at, event_id)
    ) WITHOUT ROWID
    """,
    """
    INSERT INTO pending (close_at, event_id)
    SELECT close_at, event_id FROM decisions
    WHERE active = 1 AND joined = 0 AND close_at IS NOT NULL
    """,
    "DROP INDEX decisions_pending",
    "ALTER TABLE decisions DROP COLUMN joined",
    """
    CREATE TRIGGER pending_on_insert AFTER INSERT ON decisions
    WHEN NEW.active = 1 AND NEW.close_at IS NOT NULL BEGIN
        INSERT INTO pending (close_at, event_id) VALUES (NEW.close_at, NEW.event_id);
    END
    """,
    """
    CREATE TRIGGER pending_on_activate AFTER UPDATE OF active, close_at ON decisions
    WHEN NEW.active = 1 AND NEW.close_at IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM joined WHERE event_id = NEW.event_id) BEGIN
        DELETE FROM pending WHERE close_at = OLD.close_at AND event_id = OLD.event_id;
        INSERT INTO pending (close_at, event_id) VALUES (NEW.close_at, NEW.event_id);
    END
    """,
    """
    CREATE TRIGGER pending_on_join AFTER INSERT ON joined BEGIN
        DELETE FROM pending WHERE event_id = NEW.event_id
            AND close_at = (SELECT close_at FROM decisions WHERE event_id = NEW.event_id);
    END
    """,
    """
    CREATE TRIGGER pending_on_delete AFTER DELETE ON decisions BEGIN
        DELETE FROM pending WHERE close_at = OLD.close_at AND event_id = OLD.event_id;
    END
    """,
    "CREATE INDEX decisions_inactive ON decisions (timestamp) WHERE active = 0",
)


def add_pending_table(db: Database) -> None:
    """Version 3: unjoined events with a window move from a partial index over ``decisions``
    (whose ``joined`` flag each join rewrote, row and all) to the small ``pending`` table.

    Joining a 1.4 KB decision used to write its whole row to the WAL and, at the checkpoint,
    to the database: 7 KB of writes per learned event in all. Now a join writes its ``joined``
    row and deletes a ``pending`` entry. Dropping ``joined`` rewrites ``decisions`` once.
    The partial index ``decisions_inactive`` finds never-activated decisions for the retention
    job, which scanned the whole table for them.
    """
    for statement in _PENDING_TABLE:
        db.execute(statement)


def add_pending_retrain(db: Database) -> None:
    """Version 4: the checkpoint row carries the retrain a settings change still owes the
    model (:class:`bandit.events.PendingRetrain`; all four columns NULL when none), so it is
    saved with the reset and cleared with the adoption, each in the checkpoint's transaction.
    """
    for column, kind in (
        ("retrain_generation", "INTEGER"),
        ("retrain_cursor", "INTEGER"),
        ("retrain_since", "REAL"),
        ("retrain_settings", "TEXT"),
    ):
        db.execute(f"ALTER TABLE checkpoint ADD COLUMN {column} {kind}")


_LEASE_COMMANDS_GENERATION = (
    """
    CREATE TABLE lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        expires_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE commands (
        generation INTEGER PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        payload BLOB NOT NULL,
        submitted_at REAL NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'claimed', 'done', 'failed', 'cancelled')),
        finished_at REAL,
        result BLOB NOT NULL DEFAULT x'',
        error_code TEXT,
        error_message TEXT
    )
    """,
    "CREATE INDEX commands_pending ON commands (generation) WHERE state = 'pending'",
    """
    CREATE TABLE generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    )
    """,
    "INSERT INTO generation (id, value) VALUES (1, 0)",
    *(
        f"""
        CREATE TRIGGER {table}_{event}_announced AFTER {event.upper()} ON {table} BEGIN
            UPDATE generation SET value = value + 1 WHERE id = 1;
        END
        """
        for table, event in (
            ("models", "insert"),
            ("config", "insert"),
            ("config", "update"),
            ("policy", "insert"),
            ("policy", "update"),
        )
    ),
)


def add_lease_commands_and_generation(db: Database) -> None:
    """Version 5: what lets edges and a trainer share one file (:class:`bandit.store.TrainerLease`,
    :class:`bandit.store.ControlChannel`).

    * ``lease``: at most one row, the trainer's, with its expiry; taken by compare-and-set.
    * ``commands``: admin requests for the trainer, numbered by generation; the partial index
      ``commands_pending`` finds the ones still waiting.
    * ``generation``: one row, bumped by triggers in the transaction of every save an edge
      caches (a published model, the configuration, the policy) and taken by each command
      submitted, so a poll of one row tells an edge whether to read anything again.
    """
    for statement in _LEASE_COMMANDS_GENERATION:
        db.execute(statement)


_TYPED_RECORDS = (
    """
    CREATE TABLE guardrail (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state TEXT NOT NULL CHECK (state IN ('serving', 'tripped')),
        since REAL NOT NULL,
        reason TEXT NOT NULL,
        trips INTEGER NOT NULL,
        recoveries INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE watch_settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        window INTEGER NOT NULL,
        alpha REAL NOT NULL,
        guardrail_enabled INTEGER NOT NULL CHECK (guardrail_enabled IN (0, 1)),
        margin REAL NOT NULL,
        min_events INTEGER NOT NULL,
        drift_delta REAL NOT NULL,
        drift_threshold REAL NOT NULL,
        drift_min_events INTEGER NOT NULL,
        interval REAL NOT NULL,
        batch INTEGER NOT NULL,
        history INTEGER NOT NULL
    )
    """,
    "CREATE TABLE times (name TEXT PRIMARY KEY NOT NULL, at REAL NOT NULL)",
    """
    CREATE TABLE apprentice (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        start_time REAL NOT NULL,
        last_processed_event_time REAL NOT NULL,
        total_events INTEGER NOT NULL,
        total_rewards REAL NOT NULL,
        total_imitated_events INTEGER NOT NULL,
        total_imitated_rewards REAL NOT NULL,
        batch_events INTEGER NOT NULL,
        batch_rewards REAL NOT NULL,
        batch_imitated_events INTEGER NOT NULL,
        batch_imitated_rewards REAL NOT NULL,
        evaluated_events INTEGER NOT NULL,
        reward_min REAL NOT NULL,
        reward_max REAL NOT NULL,
        wmax BLOB NOT NULL,
        sw BLOB NOT NULL,
        swr BLOB NOT NULL,
        sww BLOB NOT NULL,
        swwr BLOB NOT NULL,
        swwrr BLOB NOT NULL
    )
    """,
    "ALTER TABLE models ADD COLUMN restored_from INTEGER",
    *(
        f"""
        CREATE TRIGGER {table}_{event}_announced AFTER {event.upper()} ON {table} BEGIN
            UPDATE generation SET value = value + 1 WHERE id = 1;
        END
        """
        for table in ("guardrail", "watch_settings")
        for event in ("insert", "update")
    ),
)

WATCH_SETTINGS_COLUMNS = (
    "window",
    "alpha",
    "guardrail_enabled",
    "margin",
    "min_events",
    "drift_delta",
    "drift_threshold",
    "drift_min_events",
    "interval",
    "batch",
    "history",
)
"""The columns of ``watch_settings``, in order (also :class:`bandit.events.WatchSettingsRecord`'s
fields)."""

_OLD_WATCH_NAMES = {
    "guardrailEnabled": "guardrail_enabled",
    "minEvents": "min_events",
    "driftDelta": "drift_delta",
    "driftThreshold": "drift_threshold",
    "driftMinEvents": "drift_min_events",
}
"""The camelCase names version 5 and before stored watch settings under, where they differ."""

_OLD_TIME_KEYS = ("model_created_at", "config_edited_at", "health_probe_at")
_OLD_KEYS = (
    "guardrail_state",
    "watch_settings",
    "model_restored_from",
    "apprentice_metrics",
    *_OLD_TIME_KEYS,
)


def add_typed_records(db: Database) -> None:
    """Version 6: typed records for what ``meta`` held as JSON or text.

    * ``guardrail``: the guardrail state (was ``meta.guardrail_state``, JSON).
    * ``watch_settings``: the watch settings saved through the API, a column each (was
      ``meta.watch_settings``, JSON with camelCase names).
    * ``times``: named moments of the loop (:class:`bandit.events.LoopTime`; were meta values
      holding ``repr`` of a float).
    * ``models.restored_from``: the version a manual activation restored (was
      ``meta.model_restored_from``, JSON mapping new version to restored version).
    * ``apprentice``: apprentice mode's totals and running sums, a column each (the sums'
      vectors as little-endian float64 arrays; was ``meta.apprentice_metrics``, JSON).

    Each old value is read once, here, and its meta row deleted. One that cannot be read (it
    never could be used either) is dropped, as is a restore entry for a model no longer kept.
    Saving a guardrail state or watch settings bumps the generation, like the saves of
    version 5.
    """
    for statement in _TYPED_RECORDS:
        db.execute(statement)
    keys = ", ".join("?" * len(_OLD_KEYS))
    old = dict(db.execute(f"SELECT key, value FROM meta WHERE key IN ({keys})", _OLD_KEYS))
    guardrail = _old_guardrail(_old_json(old.get("guardrail_state")))
    if guardrail is not None:
        db.execute(
            "INSERT INTO guardrail (id, state, since, reason, trips, recoveries) "
            "VALUES (1, ?, ?, ?, ?, ?)",
            guardrail,
        )
    watch = _old_json(old.get("watch_settings"))
    if isinstance(watch, dict):
        named = {_OLD_WATCH_NAMES.get(k, k): v for k, v in watch.items()}
        values = [named.get(column) for column in WATCH_SETTINGS_COLUMNS]
        if all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            db.execute(
                f"INSERT INTO watch_settings (id, {', '.join(WATCH_SETTINGS_COLUMNS)}) "
                f"VALUES (1, {', '.join('?' * len(values))})",
                values,
            )
    restored = _old_json(old.get("model_restored_from"))
    if isinstance(restored, dict):
        for version, restored_from in restored.items():
            if str(version).isdigit() and isinstance(restored_from, int):
                db.execute(
                    "UPDATE models SET restored_from = ? WHERE version = ?",
                    [restored_from, int(version)],
                )
    for key in _OLD_TIME_KEYS:
        try:
            at = float(old[key])
        except (KeyError, ValueError):
            continue
        if math.isfinite(at):
            db.execute("INSERT INTO times (name, at) VALUES (?, ?)", [key, at])
    apprentice = _old_apprentice(_old_json(old.get("apprentice_metrics")))
    if apprentice is not None:
        db.execute(rows.APPRENTICE_SAVE, rows.apprentice_params(apprentice))
    db.execute(f"DELETE FROM meta WHERE key IN ({keys})", _OLD_KEYS)


def _old_guardrail(saved: Any) -> list[Any] | None:
    """The ``guardrail`` row of an old guardrail state, or None when it cannot be read."""
    try:
        state, since = str(saved["state"]), float(saved["since"])
        rest = [str(saved["reason"]), int(saved.get("trips", 0)), int(saved.get("recoveries", 0))]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if state not in ("serving", "tripped") or not math.isfinite(since):
        return None
    return [state, since, *rest]


def _old_apprentice(saved: Any) -> ApprenticeRecord | None:
    """An old apprentice state (its totals, and its running sums where it has them; empty
    sums where not), or None when it cannot be read."""
    try:
        metrics = ApprenticeMetrics(
            start_time=float(saved["start_time"]),
            last_processed_event_time=float(saved["last_processed_event_time"]),
            total=ImitationCounts(**saved["total"]),
            last_batch=ImitationCounts(**saved["last_batch"]),
        )
        evaluation = saved.get("evaluation")
        sums = (
            ApprenticeEvaluation().sums()
            if not evaluation
            else MomentSums(
                n=int(evaluation["n"]),
                rmin=float(evaluation["rmin"]),
                rmax=float(evaluation["rmax"]),
                **{name: tuple(map(float, evaluation[name])) for name in MOMENT_VECTORS},
            )
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return ApprenticeRecord(metrics=metrics, evaluation=sums)


def _old_json(text: str | None) -> Any:
    """An old meta value's JSON, or None when absent or unreadable."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def add_trainer_report(db: Database) -> None:
    """Version 7: ``trainer_report``, one row: the trainer's last report for edges (when, by
    whom, and its body); it was ``meta.trainer_report``, JSON, which is dropped (the trainer
    writes a new one within a second of starting)."""
    db.execute(
        "CREATE TABLE trainer_report (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL, "
        "holder TEXT NOT NULL, body BLOB NOT NULL)"
    )
    db.execute("DELETE FROM meta WHERE key = 'trainer_report'")


MIGRATIONS: tuple[Migration, ...] = (
    create_initial_schema,
    add_jobs_and_log_deletion,
    add_pending_table,
    add_pending_retrain,
    add_lease_commands_and_generation,
    add_typed_records,
    add_trainer_report,
)
"""Applied in order; a file's ``PRAGMA user_version`` counts how many it has."""
