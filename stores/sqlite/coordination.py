"""SQL for the SQLite store's trainer lease, command queue and generation number.

Each function runs inside a transaction its :class:`stores.sqlite.store.SQLiteStore` method
opened; the writes are single statements that compare and set, so two processes on one file
never both take the lease or both claim a command.
"""

from __future__ import annotations

from sqlite_utils import Database

from bandit.errors import LeaseLost
from bandit.events import Command, Lease
from stores import rows
from stores.sqlite.connection import select

_ACQUIRE = """
INSERT INTO lease (id, holder, acquired_at, expires_at) VALUES (1, :holder, :now, :expires)
ON CONFLICT (id) DO UPDATE SET
    holder = excluded.holder,
    acquired_at = CASE WHEN expires_at > :now THEN acquired_at ELSE excluded.acquired_at END,
    expires_at = excluded.expires_at
WHERE holder = excluded.holder OR expires_at <= :now
RETURNING holder
"""
"""Take a free or expired lease, or renew one's own (keeping its term's ``acquired_at``); no
row comes back while another holder's lease is unexpired."""

_COMMAND_COLUMNS = (
    "generation, kind, payload, submitted_at, state, finished_at, result, error_code, error_message"
)


def acquire_lease(db: Database, holder: str, now: float, ttl: float) -> bool:
    """Take or renew the lease for ``holder`` until ``now + ttl``; whether it now holds it."""
    params = {"holder": holder, "now": now, "expires": now + ttl}
    return bool(db.conn.execute(_ACQUIRE, params).fetchall())


def check_fence(db: Database, holder: str | None) -> None:
    """Raise :class:`bandit.errors.LeaseLost` unless ``holder`` (None: no fence) holds the
    lease row, inside the caller's write transaction."""
    if holder is None:
        return
    row = db.conn.execute("SELECT holder FROM lease WHERE id = 1").fetchone()
    if row is None or row[0] != holder:
        raise LeaseLost(f"the trainer lease is no longer held by {holder}")


def release_lease(db: Database, holder: str) -> None:
    """Delete the lease row if ``holder`` holds it."""
    db.execute("DELETE FROM lease WHERE id = 1 AND holder = ?", [holder])


def lease(db: Database, now: float) -> Lease | None:
    """The lease unexpired at ``now``, or None."""
    found = select(
        db,
        "SELECT holder, acquired_at, expires_at FROM lease WHERE id = 1 AND expires_at > ?",
        [now],
    )
    if not found:
        return None
    row = found[0]
    return Lease(holder=row["holder"], acquired_at=row["acquired_at"], expires_at=row["expires_at"])


def generation(db: Database) -> int:
    """The current generation number."""
    row = db.conn.execute("SELECT value FROM generation WHERE id = 1").fetchone()
    return int(row[0])


def submit_command(db: Database, kind: str, payload: bytes, now: float) -> int:
    """Take the next generation and queue a pending command under it."""
    (number,) = db.conn.execute(
        "UPDATE generation SET value = value + 1 WHERE id = 1 RETURNING value"
    ).fetchone()
    db.execute(
        "INSERT INTO commands (generation, kind, payload, submitted_at, state) "
        "VALUES (?, ?, ?, ?, 'pending')",
        [number, kind, payload, now],
    )
    return int(number)


def move_command(
    db: Database, generation: int, *, source: str, target: str, **changes: object
) -> bool:
    """Set the command's state to ``target`` (and the columns in ``changes``) if it is in
    state ``source``; whether it was."""
    assignments = "".join(f", {column} = :{column}" for column in changes)
    cursor = db.conn.execute(
        f"UPDATE commands SET state = :target{assignments} "
        "WHERE generation = :generation AND state = :source",
        {"target": target, "generation": generation, "source": source, **changes},
    )
    return cursor.rowcount == 1


def get_command(db: Database, generation: int) -> Command | None:
    """A command by generation."""
    found = select(
        db, f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE generation = ?", [generation]
    )
    return _command(found[0]) if found else None


def pending_commands(db: Database, after: int, limit: int) -> list[Command]:
    """Pending commands after ``after``, oldest first (the partial index ``commands_pending``)."""
    found = select(
        db,
        f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE state = 'pending' AND generation > ? "
        "ORDER BY generation LIMIT ?",
        [after, limit],
    )
    return [_command(row) for row in found]


def _command(row: rows.Row) -> Command:
    return Command(
        generation=row["generation"],
        kind=row["kind"],
        payload=bytes(row["payload"]),
        submitted_at=row["submitted_at"],
        state=row["state"],
        finished_at=row["finished_at"],
        result=bytes(row["result"]),
        error_code=row["error_code"],
        error_message=row["error_message"],
    )
