"""The PostgreSQL store's lease session."""

from __future__ import annotations

import uuid

import psycopg

from stores.postgres.store import PostgresStore
from tests import pg


def test_a_lease_renewal_outlives_its_session_ended_while_idle() -> None:
    """A renewal on a lease session the server ended while idle must not fail: the end shows
    only when the session is next used, so each such end would cost a renewal, and two within
    ``lease_ttl`` a trainer its lease."""
    name = f"banditd-lease-{uuid.uuid4().hex[:8]}"
    with pg.fresh_schema() as schema:
        store = PostgresStore(f"{pg.schema_url(schema)}&application_name={name}")
        try:
            assert store.acquire_lease("me", 1_000.0, 60.0)
            with psycopg.connect(pg.URL, autocommit=True) as conn:
                ended = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    [name],
                ).fetchall()
            assert ended
            assert store.acquire_lease("me", 1_001.0, 60.0)
            assert store.acquire_lease("me", 1_002.0, 60.0)
        finally:
            store.close()
