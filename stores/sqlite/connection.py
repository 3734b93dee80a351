"""SQLite connections for the store: one per thread, transactions, durability, closing.

Each thread gets its own connection (the event loop reads, the group-commit writer writes, the
learner joins and checkpoints); WAL lets them, and other processes on the same file, read while
one writes. Writes take the write lock up front (``BEGIN IMMEDIATE``) so two writers queue on the
busy timeout instead of failing on a lock upgrade; multi-statement reads run in one read
transaction so they see one snapshot.

Unavailable store: a write that cannot take the lock within ``lock_timeout`` seconds (another
process holds it), or fails because the disk is full or failing, raises
:class:`bandit.errors.StoreUnavailable` (a 503 with ``Retry-After`` at the edge) after rolling
back, so nothing of it is written. :attr:`SQLiteConnections.write_failure` says why writes are
failing until one succeeds again (``/healthz`` reports it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlite_utils import Database

from bandit.errors import StoreUnavailable
from stores import rows

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 1.0
"""Seconds a write waits for another writer's lock before the store answers unavailable (the
``lock_timeout`` setting)."""

_UNAVAILABLE = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_IOERR: "the disk failed a read or write (disk I/O error)",
    sqlite3.SQLITE_BUSY: "the database is locked by another process",
    sqlite3.SQLITE_LOCKED: "the database is locked",
}
"""SQLite's primary result codes that mean "not now" rather than a fault of the request."""


def unavailable_reason(exc: sqlite3.Error) -> str | None:
    """Why the store cannot serve now, if ``exc`` is a full disk, an I/O error or a lock held
    past the timeout; None for any other error (a bug, not a condition to wait out)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE:
        return _UNAVAILABLE[code & 0xFF]
    text = str(exc)
    if "database or disk is full" in text:
        return _UNAVAILABLE[sqlite3.SQLITE_FULL]
    if "disk I/O error" in text:
        return _UNAVAILABLE[sqlite3.SQLITE_IOERR]
    if "database is locked" in text:
        return _UNAVAILABLE[sqlite3.SQLITE_BUSY]
    return None


RESTART_FRAMES = 8192
"""WAL frames (pages; 32 MiB at SQLite's default 4 KiB) past which the background checkpointer
makes the next commit start the WAL over. Passive checkpoints copy pages into the database file
but cannot restart a WAL that commits keep appending to: under steady traffic it grew without
bound (gigabytes within minutes, and its shared-memory index with it)."""

RESTART_BUSY_MS = 5
"""How long a restarting checkpoint waits for readers of the WAL. It holds this process's write
lock meanwhile, so commits wait too: it gives up early and retries at the next interval (with
100 ms, rank p99 under a learner backlog rose from ~28 to ~100 ms)."""

JOURNAL_SIZE_LIMIT = 2 * RESTART_FRAMES * 4096
"""Bytes the WAL file is cut back to when it starts over (``PRAGMA journal_size_limit``)."""

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

MIN_SQLITE = (3, 35, 0)
"""The oldest SQLite the store runs on (``RETURNING``)."""

Params = Sequence[Any] | dict[str, Any]


def select(db: Database, sql: str, params: Params = ()) -> list[rows.Row]:
    """Every row of a read, fully fetched so no statement (and its snapshot) stays open.

    On the connection itself: ``Database.query`` wraps each read in a savepoint of its own
    (three statements for one), which cost more than the reads of ranking and learning.
    """
    cursor = db.conn.execute(sql, params)
    keys = [column[0] for column in cursor.description]
    return [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]


def select_tuples(db: Database, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Like :func:`select`, with each row as a tuple in the query's column order (no dict per
    row: for the reads of every learned event)."""
    return db.conn.execute(sql, params).fetchall()


@contextmanager
def _committing(db: Database) -> Iterator[None]:
    """Commit the open transaction after the block, or roll it back if the block raised."""
    try:
        yield
        db.conn.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise


def _begin_now(conn: sqlite3.Connection, busy_timeout_ms: int) -> bool:
    """``BEGIN IMMEDIATE`` without waiting: False if another connection holds the write lock
    (``busy_timeout_ms`` is the connection's timeout, restored afterwards)."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
            raise
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    return True


class SQLiteConnections:
    """Per-thread connections to one SQLite file in WAL mode, and the transactions over them.

    Args:
        path: the database file; created, and brought up to date by ``migrate``, when opened.
        migrate: applies the schema migrations on the first connection (one transaction).
        synchronous: SQLite's ``PRAGMA synchronous`` level. ``FULL`` makes every commit durable
            across power loss; ``NORMAL`` may lose the last commits on power loss (not on a
            process crash) and is faster.
        background_checkpoint: seconds between WAL checkpoints on a thread of the store's own,
            or None to let SQLite checkpoint inside commits (its default).
        lock_timeout: seconds a write waits for the write lock (held by another writer of this
            process or another process) before raising :class:`StoreUnavailable`.

    Raises:
        ValueError: ``synchronous`` is not one of :data:`SYNCHRONOUS_LEVELS`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        migrate: Callable[[Database], None],
        synchronous: str = "FULL",
        background_checkpoint: float | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(
                f"banditd needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this Python "
                f"uses {sqlite3.sqlite_version}"
            )
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}")
        self.path = os.fspath(path)
        self.lock_timeout = lock_timeout
        self.busy_timeout_ms = max(0, round(lock_timeout * 1000))
        self.write_failure: str | None = None
        """Why the last write failed (full disk, lock held too long), or None after a success."""
        # FULL durability is kept by fsyncing the WAL ourselves (see sync()), so the group-commit
        # writer can overlap one batch's fsync with the next batch's transaction; SQLite itself
        # runs at NORMAL, which is crash-safe in WAL mode.
        self._explicit_sync = level == "FULL"
        self._synchronous = "NORMAL" if self._explicit_sync else level
        self._wal_fd: int | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._idle = threading.Condition()
        self._busy = 0
        self._connections: dict[threading.Thread, Database] = {}
        self._closed = False
        # SQLite checkpoints the WAL inside whichever commit crosses 1,000 pages: with group
        # commit that is a batch of requests stalled behind copying pages into the database
        # file and fsyncing it. A server moves checkpoints to a thread of their own instead.
        self._autocheckpoint = 0 if background_checkpoint else 1000
        self._stop_checkpoints = threading.Event()
        self.wal_restarts = 0
        """How many times the background checkpointer has made the WAL start over."""
        self._checkpointer: threading.Thread | None = None
        try:
            db = self._db()
            db.enable_wal()
            migrate(db)
        except BaseException:
            self.close()
            raise
        if background_checkpoint:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop,
                args=(background_checkpoint,),
                name="banditd-checkpoint",
                daemon=True,
            )
            self._checkpointer.start()

    def _checkpoint_loop(self, interval: float) -> None:
        while not self._stop_checkpoints.wait(interval):
            try:
                with self._use() as db:  # this thread's own connection
                    db.conn.execute(f"PRAGMA busy_timeout = {RESTART_BUSY_MS}")
                    _, restarted = self._checkpoint(db)
                    self.wal_restarts += restarted
            except sqlite3.ProgrammingError:
                return  # closed
            except (sqlite3.Error, StoreUnavailable):
                log.exception("WAL checkpoint failed; retrying in %.1f s", interval)

    def _checkpoint(self, db: Database) -> tuple[int, bool]:
        """Copy the WAL into the database file; restart it once it has grown long.

        PASSIVE never waits for readers or writers: what it cannot copy now it copies next
        time, so it costs commits nothing. Once the WAL holds :data:`RESTART_FRAMES` frames,
        a RESTART checkpoint under this process's write lock copies the few frames committed
        since and waits (briefly) for readers, so the next commit starts the WAL over.

        Returns:
            The WAL's length in frames before, and whether it was restarted.
        """
        _, frames, _ = db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames < RESTART_FRAMES:
            return frames, False
        with self._write_lock:
            busy, _, _ = db.conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        return frames, not busy

    # -- connections and transactions ------------------------------------------------------

    def _db(self) -> Database:
        db: Database | None = getattr(self._local, "db", None)
        if db is None or self._closed:
            db = self._connect()
            self._local.db = db
        return db

    def _connect(self) -> Database:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the SQLite store is closed")
            # Threads that ended leave their connection behind; close those here.
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()
            # isolation_level=None: transactions are only the ones this module begins.
            # check_same_thread=False only so close() can close every thread's connection;
            # each connection is otherwise used by the thread that opened it.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {self._autocheckpoint}")
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            db = Database(conn, execute_plugins=False)
            self._connections[threading.current_thread()] = db
            return db

    @contextmanager
    def _use(self, *, writing: bool = False) -> Iterator[Database]:
        """This thread's connection, counted as in use so close() waits for it to finish.

        A full disk, an I/O error or a lock held too long raises :class:`StoreUnavailable`
        (``writing``: and is kept in :attr:`write_failure`, which a committed write clears).
        """
        with self._idle:
            if self._closed:
                raise sqlite3.ProgrammingError("the SQLite store is closed")
            self._busy += 1
        try:
            yield self._db()
        except sqlite3.OperationalError as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            raise self._unavailable(reason, writing) from exc
        finally:
            with self._idle:
                self._busy -= 1
                if not self._busy:
                    self._idle.notify_all()

    def _unavailable(self, reason: str, writing: bool) -> StoreUnavailable:
        if writing:
            if self.write_failure != reason:
                log.warning("store writes are failing: %s", reason)
            self.write_failure = reason
        return StoreUnavailable(f"the store cannot take the request now: {reason}; retry later.")

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """This process's write lock, waited for at most ``lock_timeout`` seconds."""
        if not self._write_lock.acquire(timeout=self.lock_timeout):
            raise self._unavailable("the database is locked (a write waited too long)", True)
        try:
            yield
        finally:
            self._write_lock.release()

    @contextmanager
    def _transaction(self, begin: str, *, sync: bool = False) -> Iterator[Database]:
        # Writers of this process queue on a lock rather than on SQLite's busy handler, which
        # sleeps 1, 2, 5, 10, … ms between retries: the group-commit writer waiting behind the
        # learner's join stalled ranks for tens of milliseconds. Other processes still meet
        # busy_timeout.
        writing = begin != "BEGIN"
        with self._writer_lock() if writing else contextlib.nullcontext():
            with self._use(writing=writing) as db:
                db.execute(begin)
                with _committing(db):
                    yield db
            if writing:
                self.write_failure = None
        if sync:
            self.sync()

    @contextmanager
    def _try_write(self) -> Iterator[Database | None]:
        """A write transaction begun only if no writer of this or another process holds the
        write lock: else it yields None at once and begins nothing. Not durable until sync()."""
        if not self._write_lock.acquire(blocking=False):
            yield None
            return
        try:
            with self._use(writing=True) as db:
                if not _begin_now(db.conn, self.busy_timeout_ms):
                    yield None
                    return
                with _committing(db):
                    yield db
            self.write_failure = None
        finally:
            self._write_lock.release()

    def _write(self, *, deferred_sync: bool = False) -> AbstractContextManager[Database]:
        """A write transaction; durable on return unless ``deferred_sync`` (then call sync())."""
        return self._transaction("BEGIN IMMEDIATE", sync=not deferred_sync)

    def sync(self) -> None:
        """Make every committed transaction durable: fsync the WAL (with ``synchronous=FULL``).

        Linux flushes a file's dirty pages whichever descriptor fsync is called on, so one
        fsync covers every connection's commits before it. A no-op at other levels.
        """
        if not self._explicit_sync:
            return
        with self._lock:
            wal = self.path + "-wal"
            fd = self._wal_fd
            if fd is not None and os.fstat(fd).st_ino != os.stat(wal).st_ino:
                os.close(fd)  # the WAL was deleted and made anew; follow the new file
                fd = None
            if fd is None:
                fd = self._wal_fd = os.open(wal, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError as exc:
            raise self._unavailable(f"the disk failed to sync ({exc.strerror})", True) from exc

    def _read(self) -> AbstractContextManager[Database]:
        return self._transaction("BEGIN")

    def _all(self, sql: str, params: Params = ()) -> list[rows.Row]:
        with self._use() as db:
            return select(db, sql, params)

    def _all_tuples(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        with self._use() as db:
            return select_tuples(db, sql, params)

    def _first(self, sql: str, params: Params = ()) -> rows.Row | None:
        found = self._all(sql, params)
        return found[0] if found else None

    def close(self, timeout: float = 30.0) -> None:
        """Close every thread's connection; the store cannot be used afterwards.

        New operations are refused at once; operations already running on other threads
        (a background job, say) finish first — closing a connection under them would crash
        SQLite — waiting at most ``timeout`` seconds.
        """
        self._stop_checkpoints.set()
        checkpointer = self._checkpointer
        if checkpointer is not None and checkpointer is not threading.current_thread():
            checkpointer.join(timeout)
        with self._idle:
            self._closed = True
            if not self._idle.wait_for(lambda: self._busy == 0, timeout):
                log.warning("closing the SQLite store with %d operations still running", self._busy)
        with self._lock:
            for db in self._connections.values():
                db.close()
            self._connections.clear()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
