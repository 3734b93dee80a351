"""SQL for the SQLite store's logs (joined events), retention, imports and job records.

Each function runs inside a transaction its :class:`stores.sqlite.store.SQLiteStore` method
opened (``delete_logs`` opens several: reads that find a page, writes that delete a chunk).
Rows become values through :mod:`stores.rows`.
"""

from __future__ import annotations

from dataclasses import replace

from sqlite_utils import Database

from bandit.events import JobRecord, JoinedEvent, Reward
from stores import rows
from stores.sqlite.connection import select, select_tuples
from stores.sqlite.writes import DECISION_INSERT

_IN_CHUNK = 500
"""Event ids per ``IN (…)`` list, well under SQLite's bound-parameter limit."""


def joined_between(
    db: Database, start: float, end: float, after_seq: int, limit: int
) -> list[JoinedEvent]:
    """Joined events decided in ``[start, end)`` after ``after_seq``, in seq order."""
    found = select_tuples(
        db,
        f"SELECT {rows.JOINED_SELECT} FROM joined j JOIN decisions d ON d.event_id = j.event_id "
        "WHERE j.seq > ? AND d.timestamp >= ? AND d.timestamp < ? ORDER BY j.seq LIMIT ?",
        [after_seq, start, end, limit],
    )
    return [rows.joined_from_row(row) for row in found]


def log_range(db: Database) -> tuple[float, float] | None:
    """Oldest and newest decision time among joined events."""
    row = select(
        db,
        "SELECT MIN(d.timestamp) AS first, MAX(d.timestamp) AS last "
        "FROM joined j JOIN decisions d ON d.event_id = j.event_id",
    )[0]
    if row["first"] is None:
        return None
    return float(row["first"]), float(row["last"])


_FIND_PAGE = 5000
"""Events ``delete_logs`` finds per read (it deletes them before it reads more)."""


def learned_before(
    db: Database, *, before: float | None, through_seq: int, after_seq: int
) -> list[tuple[int, str]]:
    """The next learned joined events to delete, as (seq, event id) in seq order: ``seq`` in
    ``(after_seq, through_seq]``, decided before ``before`` (any time when None)."""
    found = db.conn.execute(
        "SELECT j.seq, j.event_id FROM joined j JOIN decisions d ON d.event_id = j.event_id "
        "WHERE j.seq > ? AND j.seq <= ? AND d.timestamp < ? ORDER BY j.seq LIMIT ?",
        [after_seq, through_seq, float("inf") if before is None else before, _FIND_PAGE],
    ).fetchall()
    return [(int(seq), str(event_id)) for seq, event_id in found]


def never_activated_before(db: Database, before: float) -> list[str]:
    """Ids of the next never-activated decisions made before ``before`` (index
    ``decisions_inactive``); deleting them is what moves this on."""
    found = db.conn.execute(
        "SELECT event_id FROM decisions WHERE active = 0 AND timestamp < ? LIMIT ?",
        [before, _FIND_PAGE],
    ).fetchall()
    return [str(row[0]) for row in found]


def delete_events(
    db: Database, event_ids: list[str], *, before: float | None, through_seq: int
) -> int:
    """Delete those of ``event_ids`` that still qualify (an activation may have come since they
    were found), with their rewards and joined rows; returns how many decisions."""
    db.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (event_id TEXT PRIMARY KEY)")
    db.execute("DELETE FROM doomed")
    db.execute(
        "INSERT OR IGNORE INTO doomed SELECT d.event_id FROM decisions d "
        f"WHERE d.event_id IN ({', '.join('?' * len(event_ids))}) AND d.timestamp < ? "
        "AND (EXISTS (SELECT 1 FROM joined j WHERE j.event_id = d.event_id AND j.seq <= ?) "
        "OR (? AND d.active = 0))",
        [*event_ids, float("inf") if before is None else before, through_seq, before is not None],
    )
    doomed = "event_id IN (SELECT event_id FROM doomed)"
    db.execute(f"DELETE FROM rewards WHERE {doomed}")
    db.execute(f"DELETE FROM joined WHERE {doomed}")
    deleted = db.execute(f"DELETE FROM decisions WHERE {doomed}").rowcount
    db.execute("DELETE FROM doomed")
    return int(deleted)


def counted_rewards(db: Database, event_ids: list[str]) -> dict[str, list[Reward]]:
    """The non-late rewards of each event, in arrival order."""
    out: dict[str, list[Reward]] = {}
    for start in range(0, len(event_ids), _IN_CHUNK):
        chunk = event_ids[start : start + _IN_CHUNK]
        for row in select_tuples(
            db,
            f"SELECT {rows.REWARD_SELECT} FROM rewards "
            f"WHERE late = 0 AND event_id IN ({', '.join('?' * len(chunk))}) ORDER BY id",
            chunk,
        ):
            out.setdefault(row[0], []).append(rows.reward_from_row(row))
    return out


def append_joined(db: Database, events: list[JoinedEvent]) -> list[JoinedEvent]:
    """Insert each event's joined row (a trigger takes it out of ``pending``); skips unknown
    or already joined events, and repeats after the first (``seq`` stays gapless)."""
    ids = list(dict.fromkeys(e.decision.event_id for e in events))
    unjoined = {
        row[0]
        for row in db.conn.execute(
            f"SELECT event_id FROM decisions d WHERE event_id IN ({', '.join('?' * len(ids))}) "
            "AND NOT EXISTS (SELECT 1 FROM joined j WHERE j.event_id = d.event_id)",
            ids,
        )
    }
    fresh = []
    for e in events:
        if e.decision.event_id in unjoined:
            unjoined.discard(e.decision.event_id)  # the first of any repeats
            fresh.append(e)
    if not fresh:
        return []
    params: list[object] = []
    for e in fresh:
        params += [e.decision.event_id, e.reward, e.reward_count, int(e.defaulted), e.joined_at]
    seqs = dict(
        db.conn.execute(
            "INSERT INTO joined (event_id, reward, reward_count, defaulted, joined_at) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * len(fresh))
            + " RETURNING event_id, seq",
            params,
        ).fetchall()
    )
    # JoinedEvent(...) rather than dataclasses.replace, which costs several times as much.
    numbered = [
        JoinedEvent(
            decision=e.decision,
            reward=e.reward,
            reward_count=e.reward_count,
            defaulted=e.defaulted,
            joined_at=e.joined_at,
            seq=seqs[e.decision.event_id],
        )
        for e in fresh
    ]
    return sorted(numbered, key=_seq)


def _seq(event: JoinedEvent) -> int:
    return event.seq


def import_joined(db: Database, events: list[JoinedEvent]) -> list[JoinedEvent]:
    """Insert each event's decision and its joined row (which keeps it out of ``pending``);
    skip known ids."""
    appended = []
    for e in events:
        if db.execute(DECISION_INSERT, rows.decision_params(e.decision)).rowcount != 1:
            continue
        inserted = db.execute(
            "INSERT INTO joined (event_id, reward, reward_count, defaulted, joined_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [e.decision.event_id, e.reward, e.reward_count, int(e.defaulted), e.joined_at],
        )
        assert inserted.lastrowid is not None
        appended.append(replace(e, seq=inserted.lastrowid))
    return appended


def save_job(db: Database, job: JobRecord) -> None:
    """Insert or replace a job record."""
    db.execute(
        "INSERT OR REPLACE INTO jobs (kind, id, created_at, data) VALUES (?, ?, ?, ?)",
        [job.kind, job.id, job.created_at, job.data],
    )


def _job(row: rows.Row) -> JobRecord:
    return JobRecord(kind=row["kind"], id=row["id"], created_at=row["created_at"], data=row["data"])


def get_job(db: Database, kind: str, job_id: str) -> JobRecord | None:
    """A job record, or None."""
    found = select(db, "SELECT * FROM jobs WHERE kind = ? AND id = ?", [kind, job_id])
    return _job(found[0]) if found else None


def list_jobs(db: Database, kind: str) -> list[JobRecord]:
    """Job records of a kind, oldest first."""
    found = select(db, "SELECT * FROM jobs WHERE kind = ? ORDER BY created_at, id", [kind])
    return [_job(row) for row in found]


def delete_job(db: Database, kind: str, job_id: str) -> bool:
    """Delete a job record; whether it existed."""
    return bool(db.execute("DELETE FROM jobs WHERE kind = ? AND id = ?", [kind, job_id]).rowcount)
