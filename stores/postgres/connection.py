"""PostgreSQL connections for the store: one per thread, transactions, and errors as
:class:`bandit.errors.StoreUnavailable`.

Each thread gets its own connection (the event loop reads, the group-commit writer writes on
worker threads, the learner joins and checkpoints), opened when first used, in autocommit mode:
a single statement is its own transaction, and :meth:`PGConnections.run` runs a unit of work in
one transaction. Connections are closed together by :meth:`PGConnections.close`.

Unavailable store: when the server cannot be reached, restarts, or ends the session
(``pg_terminate_backend``), or a statement waits on a lock past ``lock_timeout``, the call raises
:class:`bandit.errors.StoreUnavailable` (a 503 with ``Retry-After`` at the edge) after the
transaction rolled back, so nothing of it is written; a broken connection is dropped, and the
next call opens a new one. Deadlocks and serialization failures are retried a few times first.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from bandit.errors import StoreUnavailable

log = logging.getLogger(__name__)

Conn = psycopg.Connection[TupleRow]

T = TypeVar("T")

CONNECT_TIMEOUT = 3
"""Seconds a connection attempt waits for the server (libpq ``connect_timeout``; at least 2)."""

RETRIES = 3
"""Attempts of a transaction that a deadlock or a serialization failure rolled back."""

KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
"""TCP keepalives of every connection, so a server or a network that vanished without closing
the connection is noticed within about 11 s rather than the kernel's two hours."""


def unavailable_reason(exc: BaseException) -> str | None:
    """Why the store cannot serve now, if ``exc`` says so (the server is unreachable, shutting
    down, ended the session, or a lock wait timed out); None for any other error (a bug)."""
    if isinstance(exc, errors.LockNotAvailable):
        return "a PostgreSQL lock was held past lock_timeout"
    if isinstance(exc, errors.QueryCanceled):
        return "a PostgreSQL statement was cancelled (statement timeout)"
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the PostgreSQL server is unavailable ({text})"
    return None


class PGConnections:
    """A connection per thread to one database (and schema), closed together.

    Args:
        url: a libpq connection string or URL (``postgresql://user@host:port/db``).
        schema: the schema holding the loop's tables (``search_path``); None: the URL's or the
            server's default (``public``).
        lock_timeout: seconds a statement waits for a row or table lock before the call raises
            :class:`bandit.errors.StoreUnavailable`.
        application_name: how the sessions name themselves in ``pg_stat_activity``, unless
            ``url`` names it (``?application_name=...``): the operator's URL wins, so each
            process of a deployment can be told apart.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        lock_timeout: float = 5.0,
        application_name: str = "banditd",
    ) -> None:
        self.url = url
        self.schema = schema
        self.lock_timeout = lock_timeout
        self.application_name = str(conninfo_to_dict(url).get("application_name", application_name))
        self._local = threading.local()
        self._all: set[Conn] = set()
        self._guard = threading.Lock()
        self._closed = False
        self.write_failure: str | None = None
        self.failures = 0
        """Calls that found the server unavailable, on any thread (each thread checks its idle
        connection before using it again after one: :meth:`_live`)."""

    # -- connections ---------------------------------------------------------------------------

    def connect(self, *, autocommit: bool = True) -> Conn:
        """A new connection with the store's session settings (not registered: the caller
        owns it)."""
        conn = psycopg.connect(
            self.url,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=self.application_name,
            **KEEPALIVES,  # type: ignore[arg-type]
        )
        try:
            if self.schema is not None:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false)",
                [f"{max(1, round(self.lock_timeout * 1000))}ms"],
            )
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.close()
            raise
        return conn

    def _conn(self, write: bool) -> Conn:
        """This thread's connection, opened (again) when needed; a server that cannot be
        reached (or ends the new session at once) raises :class:`StoreUnavailable`."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            self._drop(conn)
        try:
            conn = self.connect()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            reason = unavailable_reason(exc) or str(exc)
            self.failures += 1
            if write:
                self.write_failure = reason
            raise StoreUnavailable(reason) from exc
        with self._guard:
            self._all.add(conn)
        self._local.conn = conn
        return conn

    def _drop(self, conn: Conn) -> None:
        with self._guard:
            self._all.discard(conn)
        with contextlib.suppress(psycopg.Error):
            conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def close(self) -> None:
        """Close every connection the store opened."""
        self._closed = True
        with self._guard:
            opened, self._all = list(self._all), set()
        for conn in opened:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    # -- running statements --------------------------------------------------------------------

    def run(
        self,
        work: Callable[[Conn], T],
        *,
        write: bool = False,
        atomic: bool = True,
        pipeline: bool = False,
    ) -> T:
        """``work(conn)`` in one transaction (``atomic``; else in autocommit), retried after a
        deadlock; errors that mean "not now" become :class:`StoreUnavailable` (``write``: and
        :attr:`write_failure` tells why until a write succeeds).

        With ``pipeline`` the statements go out in pipeline mode: each is sent without waiting
        for the one before, and the client waits only where ``work`` reads a result (and at
        the commit), so a group commit of several statements costs two or three round trips
        rather than one per statement. The server still runs them one after another, each with
        a snapshot of its own."""
        for attempt in range(RETRIES):
            conn = self._live(self._conn(write), write)
            try:
                if pipeline:
                    with conn.pipeline(), conn.transaction():
                        result = work(conn)
                elif atomic:
                    with conn.transaction():
                        result = work(conn)
                else:
                    result = work(conn)
            except errors.TransactionRollback:
                if attempt + 1 < RETRIES:
                    time.sleep(0.005 * (attempt + 1))
                    continue
                self._unavailable(conn, "a PostgreSQL deadlock did not clear", write)
                raise StoreUnavailable("a PostgreSQL deadlock did not clear") from None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                reason = unavailable_reason(exc) or str(exc)
                self._unavailable(conn, reason, write)
                raise StoreUnavailable(reason) from exc
            if write:
                self.write_failure = None
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _live(self, conn: Conn, write: bool) -> Conn:
        """``conn``, or a new connection if it died while idle (the server restarted or ended
        the session): a connection is checked before its first use after a failure elsewhere
        (:attr:`failures`), so the first request after an outage does not fail on a connection
        that was already dead. Nothing has been sent yet, so opening another is safe."""
        if self.failures == getattr(self._local, "failures_seen", 0):
            return conn
        self._local.failures_seen = self.failures
        try:
            conn.execute("SELECT 1")
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self._drop(conn)
            conn = self._conn(write)
        return conn

    def _unavailable(self, conn: Conn, reason: str, write: bool) -> None:
        self.failures += 1
        if conn.closed or conn.broken:
            self._drop(conn)
        if write:
            self.write_failure = reason

    def read(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        """Every row of one read statement."""
        return self.run(lambda conn: conn.execute(query, params).fetchall(), atomic=False)

    def first(self, query: Any, params: Any = None) -> tuple[Any, ...] | None:
        """The first row of one read statement, or None."""
        return self.run(lambda conn: conn.execute(query, params).fetchone(), atomic=False)
