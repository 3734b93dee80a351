"""Why a command could not open its store or start, in one line that says what to do.

PostgreSQL's errors are told apart by their class's module and name (psycopg is an optional
extra, never imported here), and any password in a store URL is masked in what is printed.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from server.entry.store_url import StoreURL, redact


def db_path_problem(db: str, flag: str = "--db") -> str | None:
    """Why ``db`` cannot hold the SQLite file, in one line that says what to do; None if it can.

    ``flag`` is how the user named the file (``--db``, ``--store``), for the message.

    >>> db_path_problem("/")
    "--db '/' is a directory; name a file inside it, such as '/banditd.db'."
    """
    path = Path(db)
    parent = path.parent
    if path.is_dir():
        inside = str(path / "banditd.db")
        return f"{flag} {db!r} is a directory; name a file inside it, such as {inside!r}."
    if not parent.exists():
        return (
            f"{flag} {db!r}: the folder {str(parent)!r} does not exist; create it or choose "
            "another path."
        )
    if not parent.is_dir():
        return f"{flag} {db!r}: {str(parent)!r} is not a folder; choose another path."
    # SQLite writes the file and its -wal and -shm files beside it, so the folder must be writable.
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return (
            f"{flag} {db!r}: cannot write there (permission denied or a read-only filesystem); "
            "choose a writable place or fix its permissions."
        )
    return None


def is_postgres_failure(exc: BaseException | None) -> bool:
    """Whether ``exc`` is PostgreSQL failing to open: psycopg's ``OperationalError`` (no
    connection) or the store's ``SchemaMismatch`` (the database needs ``banditd migrate``, or a
    newer banditd).

    >>> is_postgres_failure(ValueError("x"))
    False
    """
    return _postgres_failure(exc) is not None


def _postgres_failure(exc: BaseException | None) -> str | None:
    """``"connect"`` for psycopg's ``OperationalError``, ``"schema"`` for ``SchemaMismatch``
    (and its subclasses), else None: told by class, so psycopg need not be imported."""
    for kind in type(exc).__mro__:
        if (kind.__module__.split(".")[0], kind.__name__) == ("psycopg", "OperationalError"):
            return "connect"
        if kind.__module__.startswith("stores.postgres") and kind.__name__ == "SchemaMismatch":
            return "schema"
    return None


def store_failure(store: StoreURL, exc: BaseException) -> str | None:
    """One line saying why ``store`` could not be opened (``exc`` or its cause names it), or
    None when ``exc`` is no failure to open a store."""
    cause = exc.__cause__ if _is_store_error(exc.__cause__) else exc
    if cause is None or not _is_store_error(cause):
        return None
    text = _first_line(cause)
    postgres = _postgres_failure(cause)
    if postgres is not None:
        text = redact(text, store.target)
        if postgres == "schema":
            return f"the PostgreSQL store {store.display}: {text}"
        return (
            f"cannot connect to the PostgreSQL store {store.display}: {text}; check the URL, "
            "that the server is up and that it lets this user in."
        )
    full = getattr(cause, "sqlite_errorname", "") == "SQLITE_FULL" or (
        isinstance(cause, OSError) and cause.errno == errno.ENOSPC
    )
    if full or "disk is full" in text:
        return (
            f"the disk holding {store.display!r} is full ({text}); free some space and start again."
        )
    if isinstance(cause, sqlite3.Error):
        return f"cannot open the database {store.display!r}: {text}; check the file and its folder."
    return None


def startup_failure(store: StoreURL, exc: BaseException) -> str:
    """One line saying why start-up failed and what to do (``exc`` or its cause names it)."""
    failure = store_failure(store, exc)
    if failure is not None:
        return failure
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    text = _first_line(cause)
    if store.kind == "postgresql":
        text = redact(text, store.target)
    return f"could not start: {text}."


def _is_store_error(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.Error | OSError) or is_postgres_failure(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
