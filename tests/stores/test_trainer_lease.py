"""The ``TrainerLease`` contract: one holder at a time, until its lease expires."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bandit.errors import LeaseLost
from bandit.events import Checkpoint, Lease
from bandit.store import Store, TrainerLease
from tests.stores.conftest import T0, decision, joined

TTL = 10.0


def test_a_free_lease_is_taken_and_reported(store: TrainerLease) -> None:
    assert store.lease(T0) is None
    assert store.acquire_lease("a", T0, TTL) is True
    assert store.lease(T0) == Lease(holder="a", acquired_at=T0, expires_at=T0 + TTL)
    assert store.lease(T0 + TTL - 0.001) == Lease(holder="a", acquired_at=T0, expires_at=T0 + TTL)
    assert store.lease(T0 + TTL) is None  # expired at its expiry


def test_the_holder_renews_and_keeps_its_term(store: TrainerLease) -> None:
    assert store.acquire_lease("a", T0, TTL)
    assert store.acquire_lease("a", T0 + 4, TTL)
    assert store.lease(T0 + 4) == Lease(holder="a", acquired_at=T0, expires_at=T0 + 4 + TTL)


def test_another_holder_is_refused_until_expiry_then_takes_it(store: TrainerLease) -> None:
    assert store.acquire_lease("a", T0, TTL)
    assert store.acquire_lease("b", T0 + 1, TTL) is False
    assert store.acquire_lease("b", T0 + TTL - 0.001, TTL) is False
    assert store.lease(T0 + 1) == Lease(holder="a", acquired_at=T0, expires_at=T0 + TTL)
    assert store.acquire_lease("b", T0 + TTL, TTL) is True
    assert store.lease(T0 + TTL) == Lease(holder="b", acquired_at=T0 + TTL, expires_at=T0 + 2 * TTL)
    assert store.acquire_lease("a", T0 + TTL + 1, TTL) is False  # the old holder is out


def test_an_expired_lease_taken_again_by_its_holder_starts_a_new_term(store: TrainerLease) -> None:
    assert store.acquire_lease("a", T0, TTL)
    assert store.acquire_lease("a", T0 + 2 * TTL, TTL)
    assert store.lease(T0 + 2 * TTL) == Lease(
        holder="a", acquired_at=T0 + 2 * TTL, expires_at=T0 + 3 * TTL
    )


def test_release_frees_the_lease_for_a_standby_at_once(store: TrainerLease) -> None:
    assert store.acquire_lease("a", T0, TTL)
    store.release_lease("b")  # not the holder: nothing changes
    assert store.acquire_lease("b", T0 + 1, TTL) is False
    store.release_lease("a")
    assert store.lease(T0 + 1) is None
    assert store.acquire_lease("b", T0 + 1, TTL) is True
    store.release_lease("a")  # no longer the holder
    assert store.lease(T0 + 1) == Lease(holder="b", acquired_at=T0 + 1, expires_at=T0 + 1 + TTL)


def test_a_lease_held_through_one_handle_is_refused_through_another(
    views: tuple[Store, Store],
) -> None:
    first, second = views
    assert first.acquire_lease("trainer-1", T0, TTL)
    assert second.lease(T0 + 1) == Lease(holder="trainer-1", acquired_at=T0, expires_at=T0 + TTL)
    assert second.acquire_lease("trainer-2", T0 + 1, TTL) is False
    assert first.acquire_lease("trainer-1", T0 + 5, TTL)  # renewed: expires at T0 + 15
    assert second.acquire_lease("trainer-2", T0 + TTL, TTL) is False
    assert second.acquire_lease("trainer-2", T0 + 5 + TTL, TTL) is True
    assert first.acquire_lease("trainer-1", T0 + 5 + TTL, TTL) is False
    assert first.lease(T0 + 5 + TTL) == Lease(
        holder="trainer-2", acquired_at=T0 + 5 + TTL, expires_at=T0 + 5 + 2 * TTL
    )


def test_a_fenced_handle_refuses_learner_writes_once_another_holder_took_the_lease(
    views: tuple[Store, Store],
) -> None:
    stale, new = views
    checkpoint = Checkpoint(model=b"m", arguments="-q ::", cursor=0, learned_count=0, updated_at=T0)
    model = {"created_at": T0, "data": b"m", "arguments": "-q ::", "learned_count": 0}
    assert stale.acquire_lease("a", T0, TTL)
    stale.fence("a")
    stale.save_checkpoint(checkpoint)  # held: allowed
    assert stale.publish_model(**model, cursor=0, keep=5).version == 1
    assert stale.append_joined([]) == []
    # "a" stalls past its expiry; a standby takes the lease through another handle.
    assert new.acquire_lease("b", T0 + TTL, TTL)
    for write in (
        lambda: stale.save_checkpoint(replace(checkpoint, cursor=5)),
        lambda: stale.publish_model(**model, cursor=5, keep=5),
        lambda: stale.append_joined([joined(decision("late"))]),
    ):
        with pytest.raises(LeaseLost):
            write()
    assert new.load_checkpoint() == checkpoint and len(new.list_models()) == 1  # nothing landed
    new.fence("b")  # the new holder fences its own handle, and writes
    new.save_checkpoint(replace(checkpoint, cursor=1))
    stale.fence(None)
    stale.save_checkpoint(replace(checkpoint, cursor=2))  # the fence lifted
