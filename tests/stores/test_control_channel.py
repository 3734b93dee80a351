"""The ``ControlChannel`` contract: the generation number edges poll, and the command queue the
trainer carries out once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from bandit.config import ServiceConfiguration
from bandit.events import (
    Command,
    GuardrailRecord,
    LoopTime,
    PolicySettings,
    WatchSettingsRecord,
)
from bandit.guardrail import GuardrailState
from bandit.store import Store
from tests.stores.conftest import T0

GUARDRAIL = GuardrailRecord(state=GuardrailState.TRIPPED, since=T0, reason="worse", trips=1)
WATCH = WatchSettingsRecord(
    window=100,
    alpha=0.05,
    guardrail_enabled=True,
    margin=0.0,
    min_events=50,
    drift_delta=0.005,
    drift_threshold=50.0,
    drift_min_events=30,
    interval=0.5,
    batch=2048,
    history=600,
)


def publish(store: Store, at: float = T0) -> None:
    store.publish_model(created_at=at, data=b"m", arguments="", learned_count=0, cursor=0, keep=5)


def test_every_save_an_edge_caches_bumps_the_generation(store: Store) -> None:
    assert store.generation() == 0
    seen = [store.generation()]
    saves: list[Callable[[], None]] = [
        lambda: store.save_config(ServiceConfiguration()),
        lambda: store.save_config(ServiceConfiguration(reward_wait_time=3.0)),
        lambda: store.save_policy(PolicySettings(name="vw", arguments="--epsilon 0.1")),
        lambda: store.save_policy(PolicySettings(name="vw", arguments="--epsilon 0.2")),
        lambda: publish(store),
        lambda: store.save_guardrail(GUARDRAIL),
        lambda: store.save_guardrail(replace(GUARDRAIL, state=GuardrailState.SERVING)),
        lambda: store.save_watch_settings(WATCH),
        lambda: store.save_watch_settings(replace(WATCH, window=50)),
    ]
    for save in saves:
        save()
        seen.append(store.generation())
    assert seen == sorted(set(seen)), seen  # strictly increasing


def test_other_writes_leave_the_generation_alone(store: Store) -> None:
    publish(store)
    before = store.generation()
    store.set_meta("signing_key", "k")
    store.set_time(LoopTime.HEALTH_PROBE, T0)
    store.set_time(LoopTime.CONFIG_EDITED, T0)
    store.mark_restored(1, 1)
    store.acquire_lease("a", T0, 10.0)
    assert store.generation() == before


def test_submitted_commands_are_pending_in_generation_order(store: Store) -> None:
    store.save_config(ServiceConfiguration())
    first = store.submit_command("configure", b'{"rewardWaitTime": 5}', T0)
    second = store.submit_command("import_model", b"\x00model bytes", T0 + 1)
    assert first > 0 and second > first
    assert store.generation() >= second
    assert store.get_command(first) == Command(
        generation=first,
        kind="configure",
        payload=b'{"rewardWaitTime": 5}',
        submitted_at=T0,
        state="pending",
    )
    assert [c.generation for c in store.pending_commands(0, 10)] == [first, second]
    assert [c.generation for c in store.pending_commands(first, 10)] == [second]
    assert [c.generation for c in store.pending_commands(0, 1)] == [first]
    assert store.pending_commands(second, 10) == []
    assert store.pending_commands(0, 0) == []
    assert store.get_command(second + 100) is None


def test_a_command_is_claimed_once_then_finished(store: Store) -> None:
    number = store.submit_command("reset_model", b"{}", T0)
    assert store.claim_command(number, T0 + 1) is True
    assert store.claim_command(number, T0 + 2) is False
    assert store.cancel_command(number, T0 + 2) is False
    assert store.pending_commands(0, 10) == []
    assert store.get_command(number).state == "claimed"  # type: ignore[union-attr]
    store.finish_command(number, now=T0 + 3, result=b'{"version": 4}')
    assert store.get_command(number) == Command(
        generation=number,
        kind="reset_model",
        payload=b"{}",
        submitted_at=T0,
        state="done",
        finished_at=T0 + 3,
        result=b'{"version": 4}',
    )
    with pytest.raises(ValueError, match="not claimed"):
        store.finish_command(number, now=T0 + 4)
    assert store.get_command(number).finished_at == T0 + 3  # type: ignore[union-attr]


def test_a_failed_command_keeps_its_error(store: Store) -> None:
    number = store.submit_command("import_model", b"junk", T0)
    with pytest.raises(ValueError, match="not claimed"):
        store.finish_command(number, now=T0, error_code="InvalidModel")  # still pending
    assert store.claim_command(number, T0)
    store.finish_command(
        number, now=T0 + 1, error_code="InvalidModel", error_message="not a VW model"
    )
    failed = store.get_command(number)
    assert failed is not None
    assert (failed.state, failed.finished_at, failed.result) == ("failed", T0 + 1, b"")
    assert (failed.error_code, failed.error_message) == ("InvalidModel", "not a VW model")
    with pytest.raises(ValueError, match="not claimed"):
        store.finish_command(number + 100, now=T0)


def test_a_pending_command_can_be_cancelled_and_is_then_never_claimed(store: Store) -> None:
    kept = store.submit_command("delete_logs", b"{}", T0)
    dropped = store.submit_command("set_policy", b"{}", T0)
    assert store.cancel_command(dropped, T0 + 1) is True
    assert store.cancel_command(dropped, T0 + 2) is False
    assert store.claim_command(dropped, T0 + 2) is False
    assert store.cancel_command(dropped + 100, T0) is False
    cancelled = store.get_command(dropped)
    assert cancelled is not None
    assert (cancelled.state, cancelled.finished_at) == ("cancelled", T0 + 1)
    assert [c.generation for c in store.pending_commands(0, 10)] == [kept]


def test_generation_and_commands_are_seen_through_another_handle(
    views: tuple[Store, Store],
) -> None:
    edge, trainer = views
    start = trainer.generation()
    edge.save_config(ServiceConfiguration(reward_wait_time=7.0))
    assert trainer.generation() > start
    publish(trainer)
    assert edge.generation() == trainer.generation()
    number = edge.submit_command("configure", b"{}", T0)
    assert trainer.generation() >= number
    assert [c.generation for c in trainer.pending_commands(0, 10)] == [number]


def test_a_command_is_claimed_once_across_handles(views: tuple[Store, Store]) -> None:
    first, second = views
    numbers = [first.submit_command("reset_model", b"{}", T0 + i) for i in range(4)]
    claims = [
        (n, handle.claim_command(n, T0 + 10))
        for n in numbers
        for handle in ((first, second) if n % 2 else (second, first))
    ]
    assert [n for n, claimed in claims if claimed] == numbers  # each exactly once
    second.finish_command(numbers[0], now=T0 + 11)
    assert first.get_command(numbers[0]).state == "done"  # type: ignore[union-attr]


def test_commands_left_claimed_are_failed_by_the_next_trainer(store: Store) -> None:
    pending = store.submit_command("reset_model", b"", T0)
    claimed = store.submit_command("configure", b"{}", T0)
    done = store.submit_command("delete_logs", b"", T0)
    assert store.claim_command(claimed, T0) and store.claim_command(done, T0)
    store.finish_command(done, now=T0 + 1)
    assert (
        store.fail_claimed(now=T0 + 2, error_code="ServiceUnavailable", error_message="gone") == 1
    )
    failed = store.get_command(claimed)
    assert failed is not None and (failed.state, failed.finished_at) == ("failed", T0 + 2)
    assert (failed.error_code, failed.error_message) == ("ServiceUnavailable", "gone")
    assert [c.generation for c in store.pending_commands(0, 10)] == [pending]
    assert store.get_command(done).state == "done"  # type: ignore[union-attr]
    assert store.fail_claimed(now=T0 + 3, error_code="X", error_message="y") == 0
