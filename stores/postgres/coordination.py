"""The PostgreSQL store's trainer lease, generation number and change notices.

**The lease** is the ``lease`` row (holder, term, expiry: compare-and-set, as on SQLite) held
together with a session-level advisory lock on the store's dedicated lease connection. The row
also names that session (backend pid and start time), and a lease whose session has ended is
free at once, whatever its expiry: a trainer that was killed, or whose connection died, is
replaced as soon as a standby looks. Standbys block on the advisory lock
(:meth:`LeaseSession.wait`), so they look the moment it is released. A holder that stalls with
its session alive keeps the lock; it loses the lease when the row expires, like on SQLite, and
its fenced writes fail from then on. The lock and ``LISTEN`` live in a session: behind a pooler,
use session pooling or a direct connection, never transaction pooling.

**Fencing**: a fenced handle's learner writes read the lease row ``FOR SHARE`` in their own
transaction, so a new holder's takeover (which updates the row) waits for a write in flight to
commit, and every write after it sees the new holder and fails with
:class:`bandit.errors.LeaseLost`.

**Change notices**: every save an edge caches bumps ``generation`` and sends ``NOTIFY`` on the
store's channel with only the new number (a published model also sends its version on the
model channel). :class:`Listener` holds a ``LISTEN`` connection, calls back on each notice, and
calls back once after every reconnect, since notices sent while it was away are lost.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import sql

from bandit.errors import LeaseLost
from bandit.events import Lease
from stores.postgres.connection import Conn, PGConnections
from stores.postgres.schema import TRAINER_LOCK, lock_key

log = logging.getLogger(__name__)

T = TypeVar("T")

_ALIVE = (
    "EXISTS (SELECT 1 FROM pg_stat_activity a "
    "WHERE a.pid = lease.pid "
    "AND (a.backend_start IS NULL OR a.backend_start = lease.backend_start))"
)
"""Whether the session named in the lease row still runs. ``backend_start`` tells a new
session that reuses a dead one's pid from it; PostgreSQL hides it (NULL) for another role's
sessions, and then the pid alone must do (a reused pid keeps the lease until it expires)."""

_ACQUIRE = f"""
INSERT INTO lease (id, holder, acquired_at, expires_at, pid, backend_start)
SELECT 1, %(holder)s, %(now)s, %(expires)s, pg_backend_pid(), a.backend_start
FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
ON CONFLICT (id) DO UPDATE SET
    holder = excluded.holder,
    acquired_at = CASE
        WHEN lease.holder = excluded.holder AND lease.expires_at > %(now)s AND {_ALIVE}
        THEN lease.acquired_at ELSE excluded.acquired_at END,
    expires_at = excluded.expires_at,
    pid = excluded.pid,
    backend_start = excluded.backend_start
WHERE lease.holder = excluded.holder OR lease.expires_at <= %(now)s OR NOT {_ALIVE}
RETURNING holder
"""
"""Take a free, expired or orphaned lease (its session gone), or renew one's own (keeping the
term's ``acquired_at`` unless it had lapsed); no row comes back while another holder's lease is
unexpired and its session alive."""


class LeaseSession:
    """The lease's own connection: where the advisory lock lives while this handle holds it."""

    def __init__(self, connections: PGConnections) -> None:
        self._connections = connections
        self._conn: Conn | None = None
        self._locked = False
        self._guard = threading.Lock()

    def _session(self) -> Conn:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                self._close()
            conn = self._connections.connect()
            self._conn = conn
            self._locked = False
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
        self._locked = False

    def _run(self, work: Callable[[Conn], T]) -> T:
        # Once more on a new session when the old one had died (each step is safe to repeat:
        # a compare-and-set, a delete of one's own row, a wait); the lock went with it.
        with self._guard:
            for attempt in range(2):
                conn = self._session()
                try:
                    return work(conn)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    if not (conn.closed or conn.broken):
                        raise
                    self._close()
                    if attempt:
                        raise
            raise AssertionError("unreachable")

    def acquire(self, holder: str, now: float, ttl: float) -> bool:
        def take(conn: Conn) -> bool:
            with conn.transaction():
                held = bool(
                    conn.execute(
                        _ACQUIRE, {"holder": holder, "now": now, "expires": now + ttl}
                    ).fetchall()
                )
            if held and not self._locked:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", lock_key(conn, TRAINER_LOCK)
                ).fetchone()
                self._locked = bool(row and row[0])
            return held

        return self._connections.run(lambda _: self._run(take), atomic=False, write=True)

    def release(self, holder: str) -> None:
        def free(conn: Conn) -> None:
            conn.execute("DELETE FROM lease WHERE id = 1 AND holder = %s", [holder])
            if self._locked:
                conn.execute("SELECT pg_advisory_unlock_all()")
                self._locked = False

        self._connections.run(lambda _: self._run(free), atomic=False, write=True)

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds on the advisory lock; hold it once it is had (the
        next :meth:`acquire` takes the row). Waits ``timeout`` when this session holds it."""

        def block(conn: Conn) -> None:
            if self._locked:
                time.sleep(timeout)
                return
            ms = max(1, round(timeout * 1000))
            try:
                with conn.transaction():
                    conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{ms}ms"])
                    conn.execute("SELECT pg_advisory_lock(%s, %s)", lock_key(conn, TRAINER_LOCK))
                self._locked = True
            except psycopg.errors.LockNotAvailable:
                pass

        self._connections.run(lambda _: self._run(block), atomic=False)
        return True

    def close(self) -> None:
        with self._guard:
            self._close()


def lease(conn: Conn, now: float) -> Lease | None:
    """The lease unexpired at ``now`` whose session still runs, or None."""
    row = conn.execute(
        f"SELECT holder, acquired_at, expires_at FROM lease WHERE id = 1 AND expires_at > %s "
        f"AND {_ALIVE}",
        [now],
    ).fetchone()
    if row is None:
        return None
    return Lease(holder=row[0], acquired_at=row[1], expires_at=row[2])


def check_fence(conn: Conn, holder: str | None) -> None:
    """Raise :class:`bandit.errors.LeaseLost` unless ``holder`` (None: no fence) holds the
    lease row, locking it ``FOR SHARE`` to the end of the caller's transaction."""
    if holder is None:
        return
    row = conn.execute("SELECT holder FROM lease WHERE id = 1 FOR SHARE").fetchone()
    if row is None or row[0] != holder:
        raise LeaseLost(f"the trainer lease is no longer held by {holder}")


class Channels:
    """The store's notice channels: the generation's and the models'."""

    def __init__(self, prefix: str) -> None:
        self.generation = f"{prefix}.generation"[:63]
        self.model = f"{prefix}.model"[:63]

    def bump(self, conn: Conn) -> int:
        """Take the next generation in the caller's transaction and announce it at commit."""
        row = conn.execute(
            "UPDATE generation SET value = value + 1 WHERE id = 1 RETURNING value"
        ).fetchone()
        assert row is not None
        number = int(row[0])
        conn.execute("SELECT pg_notify(%s, %s)", [self.generation, str(number)])
        return number

    def announce_model(self, conn: Conn, version: int) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", [self.model, str(version)])


RECONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Seconds the listener waits between attempts to connect again."""


class Listener:
    """A thread holding a ``LISTEN`` connection; calls every watcher on each notice, and once
    after each (re)connect. Stops when :meth:`stop` is called (within a second)."""

    def __init__(self, connections: PGConnections, channels: Channels) -> None:
        self._connections = connections
        self._channels = channels
        self._watchers: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="pg-listen", daemon=True)
        self._started = False
        self._guard = threading.Lock()

    def add(self, notify: Callable[[], None]) -> None:
        with self._guard:
            self._watchers.append(notify)
            if not self._started:
                self._started = True
                self._thread.start()

    def _call(self) -> None:
        for notify in list(self._watchers):
            try:
                notify()
            except Exception:
                log.exception("a change watcher failed")

    def _listen(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                conn = self._connections.connect()
            except psycopg.Error as exc:
                delay = RECONNECT_BACKOFF[min(failures, len(RECONNECT_BACKOFF) - 1)]
                failures += 1
                log.warning("change notices: cannot connect (%s); again in %.1f s", exc, delay)
                self._stop.wait(delay)
                continue
            try:
                for channel in (self._channels.generation, self._channels.model):
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                failures = 0
                self._call()  # what was announced while not listening is re-read now
                while not self._stop.is_set():
                    for _ in conn.notifies(timeout=1.0):
                        self._call()
            except psycopg.Error as exc:
                log.warning("change notices: connection lost (%s); reconnecting", exc)
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._started:
            self._thread.join(timeout=3.0)
