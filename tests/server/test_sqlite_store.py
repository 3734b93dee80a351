"""What only the SQLite store has: a file, migrations, WAL, connections per thread, rollback.

The behaviour it shares with every store is checked by the contract suites in ``tests/stores/``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from bandit import join as rules
from bandit.config import LearningMode, ServiceConfiguration
from bandit.dsjson import context_object
from bandit.errors import StoreUnavailable
from bandit.events import (
    Action,
    Activation,
    ApprenticeMetrics,
    Checkpoint,
    Decision,
    GuardrailRecord,
    ImitationCounts,
    LoopTime,
    RankRequest,
    Reward,
    RewardOutcome,
    WatchSettingsRecord,
    WriteBatch,
)
from bandit.guardrail import GuardrailState
from policies import DEFAULT_ARGUMENTS
from policies.vw import VWPolicy
from stores import rows
from stores.sqlite import connection as sqlite_connection
from stores.sqlite import store as sqlite_store
from stores.sqlite.schema import MIGRATIONS
from stores.sqlite.store import SchemaTooNew, SQLiteStore
from tests.conftest import decision as logged_decision
from tests.conftest import joined

T0 = 1_000.0
WAIT = 10.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "banditd.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(path)
    yield opened
    opened.close()


decision = partial(logged_decision, at=T0, wait=WAIT, k=2, pmf=(0.75, 0.25))
"""A decision logged at ``T0`` over two actions, its window closing ``WAIT`` s later."""


def inspect(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read through a connection of the test's own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def schema(path: Path) -> list[tuple[Any, ...]]:
    return inspect(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")


# -- the file ---------------------------------------------------------------------------


def test_new_file_is_migrated_in_wal_mode(store: SQLiteStore, path: Path) -> None:
    assert inspect(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert inspect(path, "PRAGMA journal_mode") == [("wal",)]
    db = Database(path)
    try:
        assert {"decisions", "rewards", "joined", "models", "checkpoint", "config"} <= set(
            db.table_names()
        )
        assert "pending" in db.table_names()
        assert "joined" not in db.table("decisions").columns_dict  # joins never rewrite it
    finally:
        db.close()


# FULL runs SQLite at NORMAL and fsyncs the WAL itself (SQLiteStore.sync), so the writer can
# overlap one batch's fsync with the next batch's transaction.
@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 1), ("normal", 1), ("EXTRA", 3)])
def test_connection_settings(path: Path, synchronous: str, level: int) -> None:
    store = SQLiteStore(path, synchronous=synchronous)
    try:
        own = store._db().conn  # pragmas are per connection: ask the store's own
        assert own.execute("PRAGMA synchronous").fetchone() == (level,)
        assert own.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert own.execute("PRAGMA busy_timeout").fetchone() == (store.busy_timeout_ms,)
        assert store.busy_timeout_ms == sqlite_connection.DEFAULT_LOCK_TIMEOUT * 1000
    finally:
        store.close()


def test_unknown_synchronous_level_is_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(path, synchronous="FULL; DROP TABLE decisions")


def test_reopening_an_up_to_date_file_changes_nothing(path: Path) -> None:
    store = SQLiteStore(path)
    d = decision("e1")
    store.write(WriteBatch(decisions=(d,)))
    [appended] = store.append_joined([joined(d, 1.0, at=T0 + 20)])
    store.save_config(ServiceConfiguration(reward_wait_time=WAIT))
    store.publish_model(
        created_at=T0,
        data=b"model",
        arguments="--cb_explore_adf",
        learned_count=1,
        cursor=1,
        keep=5,
    )
    store.set_meta("seed", "7")
    store.close()
    before = schema(path)

    for _ in range(2):
        again = SQLiteStore(path)
        try:
            assert schema(path) == before
            assert inspect(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
            assert again.get_decision("e1") == d
            assert again.joined_after(0, 10) == [appended]
            assert again.load_config() == ServiceConfiguration(reward_wait_time=WAIT)
            latest = again.latest_model()
            assert latest is not None and (latest.version, latest.data) == (1, b"model")
            assert again.get_meta("seed") == "7"
            assert again.counts(T0).decisions == 1
        finally:
            again.close()


def test_opening_applies_only_the_migrations_a_file_lacks(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SQLiteStore(path).close()
    calls: list[int] = []

    def add_note_column(db: Database) -> None:
        calls.append(1)
        db.execute("ALTER TABLE decisions ADD COLUMN note TEXT")

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", (*MIGRATIONS, add_note_column))
    for attempt in range(2):
        store = SQLiteStore(path)
        store.write(WriteBatch(decisions=(decision(f"e{attempt}"),)))
        store.close()
    assert calls == [1]
    assert inspect(path, "PRAGMA user_version") == [(len(MIGRATIONS) + 1,)]
    assert ("note",) in inspect(path, "SELECT name FROM pragma_table_info('decisions')")
    assert inspect(path, "SELECT COUNT(*) FROM decisions") == [(2,)]


def test_a_version_2_file_moves_its_unjoined_decisions_to_pending(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[:2])
        SQLiteStore(path).close()
    # Rows as version 2 wrote them: the joined flag in the decision, a partial index over it.
    conn = sqlite3.connect(path)
    with conn:
        columns = "event_id, timestamp, request, pmf, chosen_index, greedy_index, model_version"
        for event_id, active, close_at, joined in [
            ("open", 1, T0 + WAIT, 0),
            ("joined", 1, T0 + WAIT, 1),
            ("deferred", 0, None, 0),
        ]:
            conn.execute(
                f"INSERT INTO decisions ({columns}, learning_mode, active, activated_at, "
                "close_at, joined, explored) VALUES (?, ?, ?, '[0.75,0.25]', 0, 0, 1, "
                "'Online', ?, ?, ?, ?, 0)",
                [
                    event_id,
                    T0,
                    rows.request_to_json(decision(event_id, defer=not active).request),
                    active,
                    T0 if active else None,
                    close_at,
                    joined,
                ],
            )
        conn.execute(
            "INSERT INTO joined (event_id, reward, reward_count, defaulted, joined_at) "
            "VALUES ('joined', 1.0, 1, 0, ?)",
            [T0 + 20],
        )
    conn.close()

    store = SQLiteStore(path)
    try:
        assert inspect(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        assert inspect(path, "SELECT close_at, event_id FROM pending") == [(T0 + WAIT, "open")]
        assert [d.event_id for d, _ in store.due(T0 + 100, 10)] == ["open"]
        assert store.get_decision("deferred") == decision("deferred", defer=True)
        assert store.counts(T0 + 100).pending_join == 1
    finally:
        store.close()


def test_failed_migration_leaves_the_file_at_its_old_version(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SQLiteStore(path).close()
    before = schema(path)

    def broken(db: Database) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(RuntimeError, match="migration bug"):
        SQLiteStore(path)
    assert schema(path) == before
    assert inspect(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


def test_file_from_a_newer_version_is_refused(path: Path) -> None:
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        SQLiteStore(path)


# -- transactions -----------------------------------------------------------------------


def test_failing_write_batch_leaves_nothing(store: SQLiteStore) -> None:
    store.write(WriteBatch(decisions=(decision("deferred", defer=True),)))
    before = store.counts(T0)
    bad = Reward(event_id="new", value=None, received_at=T0 + 1)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        store.write(
            WriteBatch(
                decisions=(decision("new"),),
                activations=(Activation(event_id="deferred", at=T0 + 1, wait=WAIT),),
                rewards=(Reward(event_id="new", value=1.0, received_at=T0 + 1), bad),
            )
        )
    assert store.get_decision("new") is None
    deferred = store.get_decision("deferred")
    assert deferred is not None and not deferred.active
    assert store.counts(T0) == before
    # the connection is usable again, with nothing left of the failed batch
    result = store.write(
        WriteBatch(
            decisions=(decision("new"),),
            rewards=(Reward(event_id="new", value=1.0, received_at=T0 + 1),),
        )
    )
    assert result.rewards == (RewardOutcome.STORED,)
    assert store.counts(T0).rewards == 1


def test_due_and_counts_scan_the_pending_table(store: SQLiteStore) -> None:
    store.write(WriteBatch(decisions=tuple(decision(f"e{i}", at=T0 + i) for i in range(20))))
    statements: list[str] = []
    store._db().conn.set_trace_callback(statements.append)
    try:
        assert len(store.due(T0 + 15, 100)) == 4
        store.counts(T0 + 15)
    finally:
        store._db().conn.set_trace_callback(None)
    scans = [s for s in statements if "FROM pending p" in s]
    assert len(scans) == 2
    for sql in scans:
        plan = " ".join(row[3] for row in store._db().execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "SEARCH p USING PRIMARY KEY (close_at<?)" in plan, plan
        assert "SCAN d" not in plan, plan


def test_pending_holds_exactly_the_active_unjoined_decisions(store: SQLiteStore) -> None:
    store.write(
        WriteBatch(
            decisions=(decision("open"), decision("joined"), decision("deferred", defer=True))
        )
    )
    store.append_joined([joined(decision("joined"), 1.0, at=T0 + 20)])
    pending = "SELECT event_id FROM pending ORDER BY event_id"
    assert inspect(store.path, pending) == [("open",)]
    store.write(WriteBatch(activations=(Activation(event_id="deferred", at=T0 + 1, wait=WAIT),)))
    assert inspect(store.path, pending) == [("deferred",), ("open",)]
    assert [d.event_id for d, _ in store.due(T0 + 100, 10)] == ["open", "deferred"]
    assert store.delete_logs(before=None, through_seq=1) == 1  # the learned "joined"
    assert inspect(store.path, pending) == [("deferred",), ("open",)]


def test_log_deletion_holds_the_write_lock_a_chunk_at_a_time(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = [decision(f"e{i}", at=T0 + i) for i in range(7)]
    store.write(WriteBatch(decisions=(*ds, decision("deferred", defer=True))))
    appended = store.append_joined([joined(d, 1.0, at=T0) for d in ds])
    monkeypatch.setattr(sqlite_store, "_DELETE_CHUNK", 2)
    monkeypatch.setattr(sqlite_store.logs, "_FIND_PAGE", 3)
    found = sqlite_store.logs.never_activated_before

    def found_then_activated(db: Any, before: float) -> list[str]:
        ids = found(db, before)
        if ids:
            assert ids == ["deferred"]
            # Activated between the read that found it and the deletion: it must stay.
            store._db().execute(
                "UPDATE decisions SET active = 1, activated_at = ?, close_at = ? "
                "WHERE event_id = 'deferred'",
                [T0 + 1, T0 + 1 + WAIT],
            )
        return ids

    monkeypatch.setattr(sqlite_store.logs, "never_activated_before", found_then_activated)
    statements: list[str] = []
    store._db().conn.set_trace_callback(statements.append)
    try:
        deleted = store.delete_logs(before=T0 + 100, through_seq=appended[-1].seq)
    finally:
        store._db().conn.set_trace_callback(None)
    assert deleted == 7
    # Found 3, 3 and 1 at a time, deleted at most 2 a transaction; then the deferred one.
    assert statements.count("BEGIN IMMEDIATE") == 2 + 2 + 1 + 1
    assert [d.event_id for d in [store.get_decision("deferred")] if d] == ["deferred"]
    assert store.counts(T0).decisions == 1 and store.joined_after(0, 10) == []


def test_joining_writes_little_beside_the_decisions_it_joins(store: SQLiteStore) -> None:
    # Decisions the size of a typical request (~1.4 KB): joining them used to rewrite every row
    # (a flag in it), so the WAL took a page for every two or three joined events.
    features = tuple({f"ns{i}": {f"f{j}": "x" * 8 for j in range(12)}} for i in range(6))
    big = [
        replace(d, request=replace(d.request, context_features=features))
        for d in (decision(f"e{i:03}") for i in range(300))
    ]
    store.write(WriteBatch(decisions=tuple(big)))
    stored_pages = inspect(store.path, "SELECT COUNT(*) FROM dbstat WHERE name = 'decisions'")
    store._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    due = store.due(T0 + WAIT + rules.JOIN_GRACE + 1, 300)
    assert len(due) == 300
    store.append_joined([joined(d, 0.0, at=T0 + 20, defaulted=True) for d, _ in due])
    wal_pages = (Path(f"{store.path}-wal").stat().st_size - 32) // (4096 + 24)
    assert stored_pages[0][0] >= 100
    assert wal_pages <= 20, (wal_pages, stored_pages)


# -- threads and processes ---------------------------------------------------------------


def test_each_thread_uses_its_own_connection(store: SQLiteStore) -> None:
    seen: dict[str, Any] = {}

    def writer() -> None:
        seen["writer"] = store._db().conn
        store.write(WriteBatch(decisions=tuple(decision(f"w{i}") for i in range(50))))

    def reader() -> None:
        seen["reader"] = store._db().conn
        seen["read"] = store.get_decision("w7")

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join()
    thread = threading.Thread(target=reader)
    thread.start()
    thread.join()
    assert seen["writer"] is not seen["reader"]
    assert seen["writer"] is not store._db().conn
    assert seen["read"] == decision("w7")


def test_concurrent_writers_and_readers(store: SQLiteStore) -> None:
    errors: list[BaseException] = []

    def write_many(name: str) -> None:
        try:
            for i in range(40):
                d = decision(f"{name}-{i}", at=T0 + i)
                store.write(
                    WriteBatch(
                        decisions=(d,),
                        rewards=(
                            Reward(
                                event_id=d.event_id,
                                value=0.5,
                                received_at=T0 + i + 1,
                                request_key="k",
                            ),
                        ),
                    )
                )
                assert store.get_decision(d.event_id) == d
                store.counts(T0)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write_many, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counts = store.counts(T0)
    assert (counts.decisions, counts.rewards) == (160, 160)


def test_connections_of_finished_threads_are_closed(store: SQLiteStore) -> None:
    conns: list[sqlite3.Connection] = []

    def touch() -> None:
        conns.append(store._db().conn)
        store.get_decision("x")

    for _ in range(5):
        thread = threading.Thread(target=touch)
        thread.start()
        thread.join()
    # each new thread's connect closed its finished predecessors'
    assert len(store._connections) <= 2
    with pytest.raises(sqlite3.ProgrammingError):
        conns[0].execute("SELECT 1")


def test_close_closes_every_connection(path: Path) -> None:
    store = SQLiteStore(path)
    other: list[sqlite3.Connection] = []
    done, release = threading.Event(), threading.Event()

    def hold() -> None:
        other.append(store._db().conn)
        done.set()
        release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    done.wait()
    main = store._db().conn
    store.close()
    release.set()
    thread.join()
    for conn in (main, other[0]):
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.get_decision("e1")
    store.close()  # closing twice is harmless


_OTHER_PROCESS = """
import sys
from bandit.events import WriteBatch
from stores.sqlite.store import SQLiteStore
from tests.server.test_sqlite_store import decision
store = SQLiteStore(sys.argv[1])
for i in range(100):
    store.write(WriteBatch(decisions=(decision(f"proc-{i}"),)))
store.close()
"""


def test_two_processes_share_one_file(store: SQLiteStore, path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", _OTHER_PROCESS, str(path)], cwd=ROOT)
    for i in range(100):
        store.write(WriteBatch(decisions=(decision(f"main-{i}"),)))
    assert child.wait(timeout=60) == 0
    assert store.counts(T0).decisions == 200
    assert store.get_decision("proc-99") == decision("proc-99")


_LEASE_AND_CLAIMS = """
import sys
from stores.sqlite.store import SQLiteStore
store = SQLiteStore(sys.argv[1])
now = float(sys.argv[2])
took = store.acquire_lease("child", now, 10.0)
claimed = [g for g in range(1, 21) if store.claim_command(g, now)]
print(took, store.generation(), len(claimed))
store.close()
"""


def test_another_process_sees_the_lease_the_commands_and_the_generation(
    store: SQLiteStore, path: Path
) -> None:
    def child(now: float) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", _LEASE_AND_CLAIMS, str(path), repr(now)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout.split()

    assert store.acquire_lease("parent", T0, 10.0)
    numbers = [store.submit_command("reset_model", b"{}", T0) for _ in range(20)]
    assert numbers == list(range(1, 21))
    assert [c.generation for c in store.pending_commands(0, 100)] == numbers
    claimed_here = [g for g in numbers[::2] if store.claim_command(g, T0)]
    assert child(T0 + 9.999) == ["False", "20", "10"]  # the other ten
    assert store.pending_commands(0, 100) == []
    assert not any(store.claim_command(g, T0) for g in numbers)
    assert len(claimed_here) == 10
    assert child(T0 + 10.0) == ["True", "20", "0"]
    lease = store.lease(T0 + 10.0)
    assert lease is not None and lease.holder == "child"


def test_two_instances_racing_claim_each_command_and_take_the_lease_once(path: Path) -> None:
    stores = [SQLiteStore(path), SQLiteStore(path)]
    try:
        numbers = [stores[0].submit_command("configure", b"{}", T0) for _ in range(50)]
        claims: list[tuple[str, int]] = []
        leases: list[str] = []
        start = threading.Barrier(4)

        def race(name: str, store: SQLiteStore) -> None:
            start.wait(timeout=30)
            if store.acquire_lease(name, T0, 10.0):
                leases.append(name)
            claims.extend((name, g) for g in numbers if store.claim_command(g, T0))

        threads = [threading.Thread(target=race, args=(f"t{i}", stores[i % 2])) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(g for _, g in claims) == numbers
        assert len(leases) == 1
        assert stores[1].lease(T0) is not None
        assert stores[1].lease(T0).holder == leases[0]  # type: ignore[union-attr]
    finally:
        for store in stores:
            store.close()


def test_a_version_4_file_keeps_its_settings_and_starts_at_generation_0(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[:4])
        old = SQLiteStore(path)
        old.save_config(ServiceConfiguration(reward_wait_time=5.0))
        old.set_meta("seed", "7")
        old.close()
    store = SQLiteStore(path)
    try:
        assert inspect(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        assert store.load_config() == ServiceConfiguration(reward_wait_time=5.0)
        assert store.set_meta_if_absent("seed", "8") == "7"
        assert store.generation() == 0
        assert store.lease(T0) is None and store.pending_commands(0, 10) == []
        store.save_config(ServiceConfiguration())
        assert store.generation() == 1
    finally:
        store.close()


def test_a_version_5_file_moves_its_json_and_text_meta_into_typed_records(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[:5])
        old = SQLiteStore(path)
        for i in range(3):
            old.publish_model(
                created_at=T0 + i, data=b"m", arguments="", learned_count=0, cursor=0, keep=2
            )
        watch = {
            "window": 400,
            "alpha": 0.05,
            "guardrailEnabled": False,
            "margin": 0.01,
            "minEvents": 150,
            "driftDelta": 0.005,
            "driftThreshold": 50.0,
            "driftMinEvents": 30,
            "interval": 0.5,
            "batch": 2048,
            "history": 600,
        }
        for key, value in {
            "guardrail_state": json.dumps(
                {"state": "tripped", "since": T0, "reason": "worse", "trips": 2, "recoveries": 1}
            ),
            "watch_settings": json.dumps(watch),
            "model_restored_from": json.dumps({"3": 1, "1": 2}),  # version 1 is pruned
            "model_created_at": repr(T0 + 0.1),
            "config_edited_at": "not a time",
            "loop_seed": "42",
            "apprentice_metrics": json.dumps(
                {
                    "start_time": T0,
                    "last_processed_event_time": T0 + 5,
                    "total": asdict(ImitationCounts().add(1.0, True).add(0.5, False)),
                    "last_batch": asdict(ImitationCounts().add(0.5, False)),
                    "evaluation": {
                        "n": 1,
                        "rmin": 1.0,
                        "rmax": 1.0,
                        "wmax": [2.0, 0.0],
                        "sw": [2.0, 0.0],
                        "swr": [2.0, 0.0],
                        "sww": [4.0, 0.0, 0.0, 0.0],
                        "swwr": [4.0, 0.0, 0.0, 0.0],
                        "swwrr": [4.0, 0.0, 0.0, 0.0],
                    },
                }
            ),
        }.items():
            old.set_meta(key, value)
        old.close()
    store = SQLiteStore(path)
    try:
        assert store.load_guardrail() == GuardrailRecord(
            state=GuardrailState.TRIPPED, since=T0, reason="worse", trips=2, recoveries=1
        )
        assert store.load_watch_settings() == WatchSettingsRecord(
            window=400,
            alpha=0.05,
            guardrail_enabled=False,
            margin=0.01,
            min_events=150,
            drift_delta=0.005,
            drift_threshold=50.0,
            drift_min_events=30,
            interval=0.5,
            batch=2048,
            history=600,
        )
        assert [(m.version, m.restored_from) for m in store.list_models()] == [(3, 1), (2, None)]
        assert store.get_time(LoopTime.MODEL_CREATED) == T0 + 0.1
        assert store.get_time(LoopTime.CONFIG_EDITED) is None  # unreadable: dropped
        apprentice = store.load_apprentice()
        assert apprentice is not None
        assert apprentice.metrics == ApprenticeMetrics(
            start_time=T0,
            last_processed_event_time=T0 + 5,
            total=ImitationCounts().add(1.0, True).add(0.5, False),
            last_batch=ImitationCounts().add(0.5, False),
        )
        assert apprentice.evaluation.n == 1 and apprentice.evaluation.sww == (4.0, 0.0, 0.0, 0.0)
        assert inspect(path, "SELECT key FROM meta") == [("loop_seed",)]
    finally:
        store.close()


def test_unreadable_old_records_are_dropped(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[:5])
        old = SQLiteStore(path)
        old.set_meta("guardrail_state", json.dumps({"state": "confused", "since": 1, "reason": ""}))
        old.set_meta("watch_settings", json.dumps({"window": 400}))  # not every setting
        old.set_meta("apprentice_metrics", json.dumps({"start_time": T0}))  # no counts
        old.close()
    store = SQLiteStore(path)
    try:
        assert store.load_guardrail() is None
        assert store.load_watch_settings() is None
        assert store.load_apprentice() is None
        assert inspect(path, "SELECT key FROM meta") == []
    finally:
        store.close()


# -- round trips ------------------------------------------------------------------------

_texts = st.text(max_size=12)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _finite | _texts
_numeric_lists = st.lists(st.integers(-1000, 1000) | _finite, max_size=4)
_values = st.recursive(
    _scalars | _numeric_lists,
    lambda inner: st.dictionaries(_texts, inner, max_size=3) | st.lists(inner, max_size=3),
    max_leaves=8,
)
_features = st.lists(st.dictionaries(_texts, _values, max_size=4), max_size=3).map(tuple)
_ids = st.text(min_size=1, max_size=16)


@st.composite
def decisions(draw: st.DrawFn) -> Decision:
    event_id = draw(_ids)
    action_ids = draw(st.lists(_ids, min_size=1, max_size=5, unique=True))
    actions = tuple(Action(id=i, features=draw(_features)) for i in action_ids)
    excluded = tuple(draw(st.lists(st.sampled_from(action_ids), unique=True)))
    request = RankRequest(
        event_id=event_id,
        context_features=draw(_features),
        actions=actions,
        excluded_action_ids=excluded,
        defer_activation=draw(st.booleans()),
        max_exploration=draw(st.none() | st.floats(0.0, 1.0)),
    )
    timestamp = draw(st.floats(0.0, 4e9))
    active = draw(st.booleans())
    activated_at = draw(st.floats(timestamp, timestamp + 1e5)) if active else None
    pmf = tuple(draw(st.lists(st.floats(0.0, 1.0), min_size=len(actions), max_size=len(actions))))
    return Decision(
        event_id=event_id,
        timestamp=timestamp,
        request=request,
        pmf=pmf,
        chosen_index=draw(st.integers(0, len(actions) - 1)),
        greedy_index=draw(st.integers(0, len(actions) - 1)),
        model_version=draw(st.integers(0, 2**62)),
        learning_mode=draw(st.sampled_from(LearningMode)),
        active=active,
        activated_at=activated_at,
        close_at=None if activated_at is None else activated_at + draw(st.floats(1.0, 2 * 86400)),
    )


@settings(max_examples=150, deadline=None)
@given(decisions())
def test_any_decision_round_trips_unchanged(d: Decision) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "rt.db")
        try:
            assert store.write(WriteBatch(decisions=(d,))).decisions == (d,)
            assert store.get_decision(d.event_id) == d
            # a repeat hands back the stored copy, read from its row
            assert store.write(WriteBatch(decisions=(d,))).decisions == (d,)
            if d.close_at is None:
                return
            [(due, rewards)] = store.due(d.close_at + rules.JOIN_GRACE, 1)
            assert due == d and rewards == []
            # The learner's reads leave feature values encoded: the same decision and VW input
            [(raw, _)] = store.due(d.close_at + rules.JOIN_GRACE, 1, raw_features=True)
            [event] = store.append_joined(
                [
                    rules.join(
                        due,
                        rewards,
                        aggregation=ServiceConfiguration().reward_aggregation,
                        default_reward=0.0,
                        now=d.close_at + 3,
                    )
                ]
            )
            assert store.joined_after(0, 1) == [event]
            [raw_event] = store.joined_after(0, 1, raw_features=True)
            for read in (raw, raw_event.decision):
                assert replace(read, request=d.request) == d
                assert _vw_input(read.request) == _vw_input(d.request)
        finally:
            store.close()


def _vw_input(request: RankRequest) -> bytes:
    return msgspec.json.encode(context_object(request))


def test_raw_features_leave_each_namespace_as_its_json() -> None:
    request = RankRequest(
        event_id="e",
        context_features=({"user": {"age": 31, "name": "Zoë \u2028"}, "_x": 1}, {"t": [1.5]}),
        actions=(Action(id="a", features=({"item": {"q": 0.1}},)),),
    )
    raw = rows.request_from_json(rows.request_to_json(request), raw_features=True)
    assert [{k: bytes(v) for k, v in obj.items()} for obj in raw.context_features] == [
        {"user": '{"age":31,"name":"Zoë \u2028"}'.encode(), "_x": b"1"},
        {"t": b"[1.5]"},
    ]
    assert bytes(raw.actions[0].features[0]["item"]) == b'{"q":0.1}'
    assert raw.actions[0].id == "a" and raw.event_id == "e"
    assert _vw_input(raw) == _vw_input(request)


def test_full_durability_fsyncs_the_wal(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        sqlite_connection.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1]
    )
    store = SQLiteStore(path, synchronous="FULL")
    try:
        synced.clear()
        store.write(WriteBatch(decisions=(decision("e-sync"),)))
        assert synced == [], "group-commit writes defer their fsync to sync()"
        store.sync()
        assert len(synced) == 1
        wal_inode = os.stat(str(path) + "-wal").st_ino
        assert os.fstat(synced[0]).st_ino == wal_inode
        store.set_meta("k", "v")
        assert len(synced) == 2, "other writes are durable on return"
    finally:
        store.close()


def test_learner_writes_leave_their_fsync_to_the_requests(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(sqlite_connection.os, "fsync", synced.append)
    store = SQLiteStore(path, synchronous="FULL")
    try:
        d = decision("e-learn")
        store.write(WriteBatch(decisions=(d,)))
        store.sync()
        synced.clear()
        appended = store.append_joined([joined(d, 1.0, at=T0)])
        assert [e.seq for e in appended] == [1]
        store.save_checkpoint(
            Checkpoint(model=b"m", arguments="a", cursor=1, learned_count=1, updated_at=T0)
        )
        assert synced == [], "the learner's commits are made durable by the next request's sync"
        store.sync()
        assert len(synced) == 1
    finally:
        store.close()


def test_try_write_gives_way_to_a_writer_of_this_process(store: SQLiteStore) -> None:
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._write():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        assert store.try_write(WriteBatch(decisions=(decision("e-wait"),))) is None
    finally:
        release.set()
        holder.join(10)
    assert store.get_decision("e-wait") is None
    assert store.try_write(WriteBatch(decisions=(decision("e-wait"),))) is not None
    assert store.get_decision("e-wait") is not None


def test_try_write_gives_way_to_another_process_without_waiting(path: Path) -> None:
    # A busy timeout far past the test's bound: a try_write that sat it out, as write() does,
    # would still be waiting when the bound ends.
    store = SQLiteStore(path, lock_timeout=3600.0)
    other = sqlite3.connect(path, isolation_level=None)
    answers: list[object] = []

    def attempt() -> None:
        answers.append(store.try_write(WriteBatch(decisions=(decision("e-other"),))))
        # The connection it tried on waits for other writers again, for write().
        answers.append(store._db().conn.execute("PRAGMA busy_timeout").fetchone()[0])

    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, as another process would hold it
        trying = threading.Thread(target=attempt)
        trying.start()
        trying.join(10)
        assert not trying.is_alive(), "try_write waited for the other process's write lock"
        assert answers == [None, store.busy_timeout_ms]
        other.execute("ROLLBACK")
    finally:
        other.close()
    try:
        assert store.counts(T0).decisions == 0
        assert store.try_write(WriteBatch(decisions=(decision("e-other"),))) is not None
        assert store.counts(T0).decisions == 1
    finally:
        store.close()


def test_normal_durability_never_fsyncs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(sqlite_connection.os, "fsync", synced.append)
    store = SQLiteStore(path, synchronous="NORMAL")
    try:
        store.write(WriteBatch(decisions=(decision("e-normal"),)))
        store.sync()
        store.set_meta("k", "v")
        assert synced == []
    finally:
        store.close()


def test_background_checkpoints_move_wal_copying_out_of_commits(path: Path) -> None:
    store = SQLiteStore(path, synchronous="NORMAL", background_checkpoint=0.5)
    try:
        own = store._db().conn
        assert own.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        size_before = path.stat().st_size
        batch = tuple(decision(f"e-ckpt-{i}") for i in range(200))
        store.write(WriteBatch(decisions=batch))
        # With autocheckpoint off, only the checkpointer thread copies pages into the file.
        thread = store._checkpointer
        assert thread is not None and thread.is_alive()
        deadline = time.monotonic() + 10.0
        while path.stat().st_size <= size_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > size_before, "the WAL was never checkpointed"
    finally:
        store.close()
    assert not thread.is_alive()


def test_without_background_checkpoints_sqlite_checkpoints_in_commits(path: Path) -> None:
    store = SQLiteStore(path, synchronous="NORMAL")
    try:
        assert store._checkpointer is None
        assert store._db().conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
    finally:
        store.close()


def test_wal_starts_over_under_steady_writes_and_reads(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits that never pause leave a passive checkpoint no moment at which the whole WAL is
    # copied, so without restarts the WAL (and its shared-memory index) grows for ever.
    monkeypatch.setattr(sqlite_connection, "RESTART_FRAMES", 64)
    store = SQLiteStore(path, synchronous="NORMAL", background_checkpoint=0.02)
    wal = Path(f"{path}-wal")
    stop = threading.Event()
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set() and reads < 1_000_000:
            store.get_decision("w-0-0")
            reads += 1

    padding = "x" * 2000  # rows of about the size of a real rank request
    thread = threading.Thread(target=reader)
    thread.start()
    largest = 0
    try:
        deadline = time.monotonic() + 30.0
        for i in range(600):
            batch = tuple(
                replace(
                    decision(f"w-{i}-{j}"),
                    request=replace(
                        decision(f"w-{i}-{j}").request, context_features=({"p": padding},)
                    ),
                )
                for j in range(4)
            )
            store.write(WriteBatch(decisions=batch))
            largest = max(largest, wal.stat().st_size)
            if time.monotonic() > deadline:
                break
    finally:
        stop.set()
        thread.join()
        store.close()
    assert reads > 0
    assert store.wal_restarts >= 3
    # Every page of the database file went through the WAL; the WAL stayed smaller than the file
    # (without restarts it grew to 2.5 times the file; with them, alone, to a fifth of it).
    size = path.stat().st_size
    assert size > 8 * 2**20, "too little was written to tell"
    assert largest < size, f"the WAL reached {largest:,} bytes, the file {size:,}"


def test_vw_learns_the_same_model_from_raw_and_decoded_reads(path: Path) -> None:
    store = SQLiteStore(path)
    try:
        decisions = []
        for i in range(40):
            d = decision(f"e{i}", at=T0 + i)
            request = replace(
                d.request,
                context_features=({"user": {"age": i, "tier": "gold" if i % 3 else "free"}},),
                actions=tuple(
                    Action(id=f"a{j}", features=({"item": {"n": j, "w": i * 0.25 + j}},))
                    for j in range(3)
                ),
            )
            decisions.append(replace(d, request=request, pmf=(0.5, 0.25, 0.25), chosen_index=i % 3))
        store.write(WriteBatch(decisions=tuple(decisions)))
        config = ServiceConfiguration(reward_wait_time=WAIT)
        now = T0 + 40 + WAIT + rules.JOIN_GRACE
        store.append_joined(
            [
                rules.join(
                    d, [], aggregation=config.reward_aggregation, default_reward=i % 2, now=now
                )
                for i, (d, _) in enumerate(store.due(now, 100))
            ]
        )
        models = []
        for raw in (False, True):
            policy = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2)
            events = store.joined_after(0, 100, raw_features=raw)
            assert len(events) == 40
            assert (
                isinstance(events[0].decision.request.context_features[0]["user"], msgspec.Raw)
                is raw
            )
            for event in events:
                policy.learn_one(event)
            models.append(policy.to_bytes())
        assert models[0] == models[1]
    finally:
        store.close()


def test_lone_surrogates_round_trip_through_the_json_fallback(path: Path) -> None:
    """UTF-8 cannot carry a lone surrogate; such requests are stored with ASCII escapes."""
    d = decision("e1")
    request = replace(
        d.request,
        context_features=({"user": {"name": "x\ud800y"}},),
        actions=(Action(id="a\udfff", features=({"x": 1.5},)), Action(id="b")),
    )
    d = replace(d, request=request)
    store = SQLiteStore(path)
    try:
        store.write(WriteBatch(decisions=(d,)))
        assert store.get_decision(d.event_id) == d
        assert d.close_at is not None
        [(raw, _)] = store.due(d.close_at + rules.JOIN_GRACE, 1, raw_features=True)
        assert raw == d  # msgspec refuses the escapes: the json fallback decodes it whole
    finally:
        store.close()


def test_a_write_locked_out_past_lock_timeout_is_unavailable_and_recovers(path: Path) -> None:
    # Issue 17, defect 6: a write waited as long as another process held the lock.
    store = SQLiteStore(path, lock_timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="locked"):
            store.write(WriteBatch(decisions=(decision("e-locked"),)))
        with pytest.raises(StoreUnavailable, match="locked"):
            store.set_meta("k", "v")
        assert store.failing_writes() is not None
        other.execute("ROLLBACK")
        store.write(WriteBatch(decisions=(decision("e-locked"),)))
        assert store.failing_writes() is None
        assert store.get_decision("e-locked") is not None
    finally:
        other.close()
        store.close()


def test_a_full_disk_is_unavailable_not_an_internal_error(path: Path) -> None:
    # Issue 17, defect 5: SQLITE_FULL reached admin routes as a 500. max_page_count makes
    # SQLite answer "database or disk is full" exactly as a full disk does.
    store = SQLiteStore(path)
    try:
        store.set_meta("k", "before")
        conn = store._db().conn
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")
        store._checkpoint(store._db())
        with pytest.raises(StoreUnavailable, match="disk is full"):
            store.set_meta("big", "x" * 100_000)
        assert store.failing_writes() == "the disk is full"
        assert store.get_meta("big") is None
        conn.execute("PRAGMA max_page_count = 1073741823")
        store.set_meta("big", "x")
        assert store.failing_writes() is None
    finally:
        store.close()
