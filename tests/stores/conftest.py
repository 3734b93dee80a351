"""Shared pieces of the store contract suites: a ``store`` fixture over every implementation,
and the decisions, rewards and joined events the checks write.

``MemoryStore``'s behaviour is the specification; the SQLite store must match it call for call.
Each module checks one protocol of :mod:`bandit.store` (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bandit import join as rules
from bandit.config import LearningMode, ServiceConfiguration
from bandit.events import (
    Action,
    Activation,
    Decision,
    JoinedEvent,
    RankRequest,
    Reward,
    WriteBatch,
    WriteResult,
)
from bandit.loop import join_due
from bandit.memory import MemoryStore
from bandit.store import EventLog, Store
from stores.postgres.store import PostgresStore
from stores.sqlite.store import SQLiteStore
from tests import pg

T0 = 1_000.0
WAIT = 10.0
GRACE = rules.JOIN_GRACE
CONFIG = ServiceConfiguration(reward_wait_time=WAIT)


STORES = ("memory", "sqlite", "postgres")
"""Every implementation, by the id its checks run under; :func:`made_store` makes each."""


@contextmanager
def made_store(kind: str, folder: Path, name: str = "b") -> Iterator[Store]:
    """An empty store of implementation ``kind`` (one of :data:`STORES`), closed afterwards;
    ``name`` tells two stores of one kind in one ``folder`` apart (for PostgreSQL each is a
    schema of its own, dropped afterwards)."""
    made: Store
    if kind == "postgres":
        with pg.fresh_schema() as schema:
            made = PostgresStore(pg.URL, schema=schema)
            try:
                yield made
            finally:
                made.close()
        return
    if kind == "memory":
        made = MemoryStore()
    elif kind == "sqlite":
        made = SQLiteStore(folder / f"{name}.db")
    else:
        raise ValueError(f"unknown store implementation {kind!r}")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each implementation, empty: ``MemoryStore``, an ``SQLiteStore`` on a fresh file and a
    ``PostgresStore`` in a schema of its own."""
    with made_store(request.param, tmp_path) as made:
        yield made


def rank_request(event_id: str, *, defer: bool = False) -> RankRequest:
    return RankRequest(
        event_id=event_id,
        context_features=({"user": {"age": 31, "tags": ["a", "b"]}}, {"weekday": True}),
        actions=(
            Action(id="news", features=({"topic": "politics", "len": 0.25},)),
            Action(id="sports", features=({"topic": "football"}, {"teams": [1, 2.5]})),
            Action(id="music"),
        ),
        excluded_action_ids=("music",),
        defer_activation=defer,
        max_exploration=0.1,
    )


def decision(
    event_id: str,
    *,
    at: float = T0,
    defer: bool = False,
    chosen: int = 0,
    pmf: tuple[float, ...] = (0.95, 0.05, 0.0),
) -> Decision:
    active = not defer
    return Decision(
        event_id=event_id,
        timestamp=at,
        request=rank_request(event_id, defer=defer),
        pmf=pmf,
        chosen_index=chosen,
        greedy_index=0,
        model_version=3,
        learning_mode=LearningMode.ONLINE,
        active=active,
        activated_at=at if active else None,
        close_at=rules.close_at(at, WAIT) if active else None,
    )


def reward(event_id: str, at: float, value: float = 1.0, key: str | None = None) -> Reward:
    return Reward(event_id=event_id, value=value, received_at=at, request_key=key)


def write(
    store: EventLog,
    *decisions: Decision,
    rewards: tuple[Reward, ...] = (),
    activations: tuple[Activation, ...] = (),
) -> WriteResult:
    return store.write(WriteBatch(decisions=decisions, rewards=rewards, activations=activations))


def joined(d: Decision, value: float = 1.0, *, defaulted: bool = False) -> JoinedEvent:
    return JoinedEvent(
        decision=d,
        reward=value,
        reward_count=0 if defaulted else 1,
        defaulted=defaulted,
        joined_at=T0 + 100,
    )


def log_events(
    store: EventLog, n: int, *, start: float = T0, step: float = 1.0
) -> list[JoinedEvent]:
    """Decide ``n`` events ``step`` seconds apart, reward the even ones, join them all."""
    decisions = [decision(f"e{i}", at=start + i * step) for i in range(n)]
    store.write(WriteBatch(decisions=tuple(decisions)))
    rewards = tuple(reward(d.event_id, d.timestamp + 1, 0.5) for d in decisions[::2])
    store.write(WriteBatch(rewards=rewards))
    return join_due(store, CONFIG, start + n * step + WAIT + GRACE + 1, 10_000)


@pytest.fixture(params=["memory", "sqlite-two-instances", "postgres-two-instances"])
def views(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two handles on one store, as two processes see it: for SQLite two ``SQLiteStore``
    instances on one file (connections of their own); for memory the one store twice."""
    if request.param == "memory":
        shared = MemoryStore()
        yield shared, shared
        return
    if request.param == "postgres-two-instances":
        with pg.fresh_schema() as schema:
            one, two = PostgresStore(pg.URL, schema=schema), PostgresStore(pg.URL, schema=schema)
            yield one, two
            two.close()
            one.close()
        return
    first = SQLiteStore(tmp_path / "shared.db")
    second = SQLiteStore(tmp_path / "shared.db")
    yield first, second
    second.close()
    first.close()
