"""``banditd migrate``, ``banditd copy`` and the ``--store`` flag, on real SQLite files: run as
a user runs them (``main`` with the command's arguments; a subprocess where the exit path
matters)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.entry.cli import main
from stores.postgres.store import PostgresStore
from stores.sqlite.store import SCHEMA_VERSION, SQLiteStore
from tests import pg
from tests.server.test_cli import _pythonpath, assert_one_line
from tests.stores.test_loop_copy import HIGH_WATER, build_loop

PASSWORD = "hunter2-secret"
UNREACHABLE = f"postgresql://loop:{PASSWORD}@127.0.0.1:1/banditd"
"""A PostgreSQL URL with a password, on a port nothing listens on."""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.entry.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **_pythonpath()},
    )


def url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path: four slashes in all


def one_line(err: str, *names: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def test_migrate_creates_and_migrates_an_sqlite_file_then_finds_it_up_to_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "new.db"
    assert main(["migrate", "--store", url(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "store": str(db),
        "before": 0,
        "after": SCHEMA_VERSION,
    }
    assert main(["migrate", "--store", url(db)]) == 0
    assert one_line(capsys.readouterr().err) == f"{db}: schema version {SCHEMA_VERSION}, up to date"


def test_migrate_refuses_a_newer_schema_with_one_line_and_status_2(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    SQLiteStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    result = run("migrate", "--store", url(db))
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr, str(db), "newer", "run a newer banditd")
    assert "Traceback" not in line
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()


def test_copy_sqlite_to_sqlite_exports_the_same_logs_and_keeps_the_model_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source_db, target_db = tmp_path / "source.db", tmp_path / "target.db"
    source = SQLiteStore(source_db)
    build_loop(source)
    source.close()
    assert main(["copy", "--from", url(source_db), "--to", url(target_db), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["from"] == str(source_db) and summary["to"] == str(target_db)
    assert (summary["decisions"], summary["joined"], summary["models"]) == (8, 5, 2)
    assert summary["checkpoint"] is True and summary["last_seq"] == HIGH_WATER

    exports = []
    for db in (source_db, target_db):
        out = tmp_path / f"{db.stem}.dsjson"
        assert main(["export", "--store", url(db), "--out", str(out)]) == 0
        exports.append(out.read_text())
    assert exports[0] == exports[1]
    assert len(exports[0].splitlines()) == 5
    source, target = SQLiteStore(source_db), SQLiteStore(target_db)
    try:
        for model in source.list_models():
            copied = target.get_model(model.version)
            original = source.get_model(model.version)
            assert copied is not None and original is not None
            assert copied.data == original.data
        assert [m.version for m in target.list_models()] == [2, 1]
    finally:
        source.close()
        target.close()


def test_copy_sqlite_to_postgresql_and_back_exports_the_same_logs_and_model_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source_db, back_db = tmp_path / "source.db", tmp_path / "back.db"
    source = SQLiteStore(source_db)
    build_loop(source)
    source.close()
    with pg.fresh_schema("copy") as schema:
        middle = pg.schema_url(schema)
        assert main(["copy", "--from", url(source_db), "--to", middle]) == 0
        assert main(["copy", "--from", middle, "--to", url(back_db)]) == 0
        capsys.readouterr()
        exports = []
        for store_url in (url(source_db), middle, url(back_db)):
            out = tmp_path / f"export-{len(exports)}.dsjson"
            assert main(["export", "--store", store_url, "--out", str(out)]) == 0
            exports.append(out.read_text())
        assert exports[0] == exports[1] == exports[2]
        assert len(exports[0].splitlines()) == 5
        stores = [
            SQLiteStore(source_db),
            PostgresStore(pg.URL, schema=schema),
            SQLiteStore(back_db),
        ]
        try:
            versions = [[m.version for m in each.list_models()] for each in stores]
            assert versions == [[2, 1]] * 3
            for version in versions[0]:
                data = [each.get_model(version) for each in stores]
                assert all(d is not None for d in data)
                assert len({d.data for d in data if d is not None}) == 1
            checkpoints = [each.load_checkpoint() for each in stores]
            assert checkpoints[0] is not None and checkpoints.count(checkpoints[0]) == 3
        finally:
            for each in stores:
                each.close()


def test_copy_refuses_a_target_that_holds_a_loop_and_a_source_a_trainer_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source_db, target_db = tmp_path / "source.db", tmp_path / "target.db"
    for db in (source_db, target_db):
        store = SQLiteStore(db)
        build_loop(store)
        store.close()
    assert main(["copy", "--from", url(source_db), "--to", url(target_db)]) == 2
    one_line(capsys.readouterr().err, "banditd copy: ", str(target_db), "holds a loop already")
    fresh = tmp_path / "fresh.db"
    store = SQLiteStore(source_db)
    store.acquire_lease("trainer-9", time.time(), 60.0)
    store.close()
    assert main(["copy", "--from", url(source_db), "--to", url(fresh)]) == 2
    one_line(capsys.readouterr().err, "trainer-9", "stop banditd")
    assert main(["copy", "--from", url(source_db), "--to", url(source_db)]) == 2
    one_line(capsys.readouterr().err, "the same store")


@pytest.mark.parametrize("form", ["--db", "--store"])
def test_export_of_a_missing_file_fails_without_creating_it(
    tmp_path: Path, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    where = str(missing) if form == "--db" else url(missing)
    assert main(["export", form, where, "--out", str(tmp_path / "out.dsjson")]) == 2
    one_line(capsys.readouterr().err, "banditd export: ", str(missing), "does not exist")
    assert not missing.exists()
    assert not (tmp_path / "out.dsjson").exists()


def test_import_may_create_the_file_it_names(tmp_path: Path) -> None:
    db = tmp_path / "made.db"
    logs = tmp_path / "empty.dsjson"
    logs.write_text("")
    assert main(["import", "--store", url(db), str(logs)]) == 0
    assert db.exists()


@pytest.mark.parametrize("command", ["serve", "train", "export", "import"])
def test_db_and_store_together_are_refused(tmp_path: Path, command: str) -> None:
    db = tmp_path / "x.db"
    extra = {"export": ["--out", "-"], "import": ["-"]}.get(command, [])
    result = run(command, "--db", str(db), "--store", url(db), *extra)
    assert result.returncode == 2, result.stderr
    one_line(result.stderr, "--db PATH or --store URL, not both")
    assert not db.exists()


def test_serve_on_a_store_url_names_the_url_in_path_problems(tmp_path: Path) -> None:
    result = run("serve", "--store", url(tmp_path / "no" / "such" / "x.db"), "--port", "0")
    assert_one_line(result, 2, "--store", "does not exist")


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--store", UNREACHABLE, "--port", "0"],
        ["train", "--store", UNREACHABLE],
        ["migrate", "--store", UNREACHABLE],
        ["export", "--store", UNREACHABLE, "--out", "-"],
        ["serve", "--store", UNREACHABLE.replace("postgresql", "mysql"), "--port", "0"],
    ],
    ids=["serve", "train", "migrate", "export", "unknown-scheme"],
)
def test_a_store_url_password_is_never_printed(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode in (1, 2), result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert "Traceback" not in one_line(result.stderr)


def test_copy_never_prints_a_password_either(tmp_path: Path) -> None:
    source_db = tmp_path / "source.db"
    SQLiteStore(source_db).close()
    result = run("copy", "--from", url(source_db), "--to", UNREACHABLE)
    assert result.returncode == 1, result.stderr
    assert PASSWORD not in result.stderr
    one_line(result.stderr, "banditd copy: ")
