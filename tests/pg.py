"""PostgreSQL for the tests: a schema of its own per test, dropped afterwards.

The server is the one at ``BANDITD_TEST_PG`` (default: the machine's own, database ``test``).
Where none answers, tests that need it are skipped with the reason, except under CI
(``CI`` set), where a missing server is a failure: the suite must not pass by skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

URL = os.environ.get("BANDITD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'banditd[postgres]')"
    try:
        psycopg.connect(URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {URL}: {str(exc).strip().splitlines()[0]}"
    return None


def require() -> None:
    """Skip (fail under CI) when the test server is not there."""
    problem = _reachable()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def schema_url(schema: str, url: str = URL) -> str:
    """``url`` with the session's ``search_path`` set to ``schema`` (what a process given
    ``--store`` needs to find a test's tables).

    >>> schema_url("t_1", "postgresql://u@h:5432/test")
    'postgresql://u@h:5432/test?options=-csearch_path%3Dt_1'
    """
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@contextmanager
def fresh_schema(prefix: str = "t") -> Iterator[str]:
    """A new, migrated schema in the test database; dropped with everything in it afterwards."""
    import psycopg
    from psycopg import sql

    from stores.postgres.schema import migrate

    require()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    migrate(URL, schema=name)
    try:
        yield name
    finally:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
