"""SQL for the SQLite store's write batches: decisions, activations and rewards.

Each function runs inside the write transaction that :meth:`stores.sqlite.store.SQLiteStore.write`
or ``try_write`` opened for a group-commit batch. Rows become values through
:mod:`stores.rows`.
"""

from __future__ import annotations

from sqlite_utils import Database

from bandit import join as rules
from bandit.events import (
    Activation,
    ActivationOutcome,
    Decision,
    Reward,
    RewardOutcome,
    WriteBatch,
    WriteResult,
)
from stores import rows
from stores.sqlite.connection import select_tuples

DECISION_INSERT = (
    f"INSERT INTO decisions ({', '.join(rows.DECISION_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in rows.DECISION_COLUMNS)}) "
    "ON CONFLICT (event_id) DO NOTHING"
)
"""Insert a decision unless its event id is stored (then it changes nothing)."""

REWARD_CHUNK = 200
"""Rewards per statement when a write batch is stored (5 parameters each, 1,000 of SQLite's at
least 32,766)."""


def write_batch(db: Database, batch: WriteBatch) -> WriteResult:
    """Apply a batch in the caller's transaction: decisions, then activations, then rewards."""
    decisions = tuple(_put_decision(db, d) for d in batch.decisions)
    activations = tuple(_activate(db, a) for a in batch.activations)
    rewards = _put_rewards(db, batch.rewards)
    return WriteResult(decisions=decisions, rewards=rewards, activations=activations)


def _load_decision(db: Database, event_id: str) -> Decision | None:
    """A decision, read inside the caller's transaction."""
    found = select_tuples(
        db, f"SELECT {rows.DECISION_SELECT} FROM decisions d WHERE event_id = ?", [event_id]
    )
    return rows.decision_from_row(found[0]) if found else None


def _put_decision(db: Database, decision: Decision) -> Decision:
    # db.conn.execute in the per-request writes: sqlite_utils' execute adds auto-commit checks
    # that never apply inside the writer's transaction.
    if db.conn.execute(DECISION_INSERT, rows.decision_params(decision)).rowcount == 1:
        return decision
    stored = _load_decision(db, decision.event_id)
    assert stored is not None  # the insert conflicted with it
    return stored


def _activate(db: Database, activation: Activation) -> ActivationOutcome:
    loaded = _load_decision(db, activation.event_id)
    if loaded is None:
        return ActivationOutcome.UNKNOWN_EVENT
    updated, outcome = rules.activate(loaded, activation)
    if outcome is ActivationOutcome.ACTIVATED and updated.close_at is not None:
        db.execute(
            "UPDATE decisions SET active = ?, activated_at = ?, close_at = ? WHERE event_id = ?",
            [int(updated.active), updated.activated_at, updated.close_at, updated.event_id],
        )
    return outcome


def _put_rewards(db: Database, rewards: tuple[Reward, ...]) -> tuple[RewardOutcome, ...]:
    """Store a batch's rewards in order, two statements per chunk rather than two per reward."""
    outcomes: list[RewardOutcome] = []
    for start in range(0, len(rewards), REWARD_CHUNK):
        outcomes += _put_reward_chunk(db, rewards[start : start + REWARD_CHUNK])
    return tuple(outcomes)


def _put_reward_chunk(db: Database, chunk: tuple[Reward, ...]) -> list[RewardOutcome]:
    # Only each window's state is read: the whole decision row would cost more than the insert.
    ids = list(dict.fromkeys(r.event_id for r in chunk))
    windows = {
        event_id: (active, close_at, joined)
        for event_id, active, close_at, joined in db.conn.execute(
            "SELECT d.event_id, d.active, d.close_at, "
            "EXISTS (SELECT 1 FROM joined j WHERE j.event_id = d.event_id) "
            f"FROM decisions d WHERE d.event_id IN ({', '.join('?' * len(ids))})",
            ids,
        )
    }
    outcomes: list[RewardOutcome] = []
    keyed: list[tuple[int, Reward]] = []  # (position, reward) of keyed rewards of known events
    params: list[object] = []
    for r in chunk:
        window = windows.get(r.event_id)
        if window is None:
            outcomes.append(RewardOutcome.UNKNOWN_EVENT)
            continue
        active, close_at, joined = window
        late = rules.is_late(close_at, r.received_at, joined=bool(joined))
        if r.request_key is not None:
            keyed.append((len(outcomes), r))
        outcomes.append(rules.reward_outcome(active=bool(active), late=late))
        params += [r.event_id, r.value, r.received_at, r.request_key, int(late)]
    if not params:
        return outcomes
    # Rows go in in the chunk's order (ids in arrival order). A keyed reward whose key the
    # table already holds, or an earlier reward of the chunk took, is skipped by the conflict
    # clause: RETURNING lists only what was inserted, so the first of equal keys is the one.
    inserted = set(
        db.conn.execute(
            "INSERT INTO rewards (event_id, value, received_at, request_key, late) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * (len(params) // 5))
            + " ON CONFLICT (event_id, request_key) DO NOTHING RETURNING event_id, request_key",
            params,
        ).fetchall()
    )
    for position, r in keyed:  # NULL keys never conflict
        key = (r.event_id, r.request_key)
        if key in inserted:
            inserted.discard(key)
        else:
            outcomes[position] = RewardOutcome.DUPLICATE
    return outcomes
