"""The PostgreSQL store's sessions: how they name themselves in ``pg_stat_activity``, and a
server that cannot be reached."""

from __future__ import annotations

import socket

import pytest
from psycopg.conninfo import make_conninfo

from bandit.errors import StoreUnavailable
from stores.postgres.connection import PGConnections
from stores.postgres.store import PostgresStore
from tests import pg


def own_name(url: str, application_name: str | None = None) -> str:
    """The ``application_name`` of a session :class:`PGConnections` opens (with the default
    name, or ``application_name`` passed)."""
    if application_name is None:
        connections = PGConnections(url)
    else:
        connections = PGConnections(url, application_name=application_name)
    try:
        row = connections.first("SELECT current_setting('application_name')")
    finally:
        connections.close()
    assert row is not None
    return str(row[0])


@pytest.fixture(scope="module")
def url() -> str:
    pg.require()
    return pg.URL


def test_sessions_are_named_banditd_by_default(url: str) -> None:
    assert own_name(url) == "banditd"


def test_the_callers_name_is_used_when_the_url_names_none(url: str) -> None:
    assert own_name(url, "banditd-edge") == "banditd-edge"


def test_an_application_name_in_the_url_wins(url: str) -> None:
    """So an operator (or a test sharing the database) can tell its processes' sessions apart."""
    as_url = f"{url}{'&' if '?' in url else '?'}application_name=edge-7"
    assert own_name(as_url) == "edge-7"
    assert own_name(as_url, "banditd") == "edge-7"
    as_keywords = make_conninfo(url, application_name="edge-8")
    assert own_name(as_keywords, "banditd") == "edge-8"


def unreachable_url() -> str:
    """A PostgreSQL URL on a loopback port nothing listens on (bound a moment ago, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/test"


def test_an_unreachable_server_is_store_unavailable_not_a_driver_error() -> None:
    """Regression: a failed connect escaped as ``psycopg.OperationalError`` (a 500 at the edge,
    and a learner step counted as a bug) instead of :class:`StoreUnavailable` (503)."""
    connections = PGConnections(unreachable_url())
    try:
        with pytest.raises(StoreUnavailable, match="PostgreSQL server is unavailable"):
            connections.first("SELECT 1")
        assert connections.write_failure is None  # a read says nothing of writes
        with pytest.raises(StoreUnavailable):
            connections.run(lambda conn: conn.execute("SELECT 1"), write=True)
        assert connections.write_failure is not None
    finally:
        connections.close()


def test_opening_the_store_on_an_unreachable_server_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        PostgresStore(unreachable_url())
