"""The bench's PostgreSQL helpers against the real server: its schemas, and whose CPU is whose."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from bench.postgres import DatabaseWatch, bench_schemas, schema_url
from tests import pg

SESSION = """
import sys, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
print(conn.execute("SELECT pg_backend_pid()").fetchone()[0], flush=True)
for line in sys.stdin:
    conn.execute("SELECT count(*) FROM generate_series(1, 3000000)")
    print("done", flush=True)
"""
"""A process holding one session; each line on its stdin makes its backend work a while."""


def _schemas() -> set[str]:
    with psycopg.connect(pg.URL) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_%'")
        return {str(row[0]) for row in rows}


def test_bench_schemas_are_migrated_and_dropped_even_when_the_phase_fails() -> None:
    pg.require()
    before = _schemas()
    with (
        pytest.raises(RuntimeError, match="the phase failed"),
        bench_schemas(pg.URL, ("serve", "learn")) as names,
    ):
        assert set(names) == {"serve", "learn"}
        assert set(names.values()) <= _schemas() - before
        with psycopg.connect(schema_url(pg.URL, names["serve"])) as conn:
            assert conn.execute("SELECT count(*) FROM decisions").fetchone() == (0,)
        raise RuntimeError("the phase failed")
    assert _schemas() == before


def test_the_watch_tells_a_process_s_backend_from_other_sessions() -> None:
    pg.require()
    with (
        subprocess.Popen(
            [sys.executable, "-c", SESSION, pg.URL],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as child,
        psycopg.connect(pg.URL) as other,
    ):
        assert child.stdin is not None and child.stdout is not None
        watch = DatabaseWatch(pg.URL)
        try:
            backend = int(child.stdout.readline())
            before = watch.snapshot([child.pid])
            assert set(before.ours) == {backend}
            assert other.info.backend_pid in before.others
            assert before.background  # the postmaster, the WAL writer, the checkpointer, …
            for _ in range(3):
                child.stdin.write("work\n")
                child.stdin.flush()
                assert child.stdout.readline() == "done\n"
            used = watch.used(before, watch.snapshot([child.pid]))
            assert used.sessions == 1
            assert used.backends > 0  # three scans of 3 million rows
        finally:
            watch.close()
            child.stdin.close()
            child.wait(timeout=30)
