"""Contract checks of :class:`bandit.store.LoopCopy`, and :func:`bandit.transfer.copy_loop` from
every implementation into every implementation: after the copy every read of the target
answers as the source's does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bandit.events import (
    Activation,
    ApprenticeMetrics,
    ApprenticeRecord,
    Checkpoint,
    GuardrailRecord,
    ImitationCounts,
    LoopTime,
    ModelRecord,
    PendingRetrain,
    PolicySettings,
    ReportRecord,
    RewardOutcome,
    StoredReward,
    WatchSettingsRecord,
)
from bandit.graduation import ApprenticeEvaluation
from bandit.guardrail import GuardrailState
from bandit.loop import join_due
from bandit.store import Store
from bandit.transfer import copy_loop
from tests.stores.conftest import (
    CONFIG,
    GRACE,
    STORES,
    T0,
    WAIT,
    decision,
    joined,
    made_store,
    reward,
    write,
)

HIGH_WATER = 8
"""The highest ``seq`` :func:`build_loop` gives; it deletes the event that has it."""
DELETED = ("a0", "dM", "dA", "dN")
"""The events :func:`build_loop` deletes: the first and the last joined, one in the middle, and
a deferred decision never activated."""
TIMES = [T0 - 100, T0, T0 + 12, T0 + 30, T0 + 61 + GRACE, T0 + 1000]
"""Moments at which due events and counts are compared."""


def build_loop(store: Store) -> None:
    """A loop with every kind of row and record: deferred (activated or not) decisions, keyed,
    duplicate, inactive and late rewards, two rounds of joins, deleted logs (gaps in ``seq``,
    the newest joined event among them), unjoined events still pending, two models (one a
    restore), a checkpoint with a pending retrain, settings, moments and strings; and the
    commands, lease and report that a copy leaves behind."""
    a0 = decision("a0", at=T0 - 40)  # joined first, deleted
    d_m = decision("dM", at=T0 - 8, defer=True)  # activated, joined in the middle, deleted
    d_a = decision("dA", at=T0 - 5.5, defer=True)  # activated late, joined last, deleted
    d_n = decision("dN", at=T0 - 45, defer=True)  # never activated, deleted
    d_k = decision("dK", at=T0 + 1, defer=True)  # never activated, kept
    early = [decision(f"e{i}", at=T0 + i, chosen=i % 2) for i in range(5)]
    later = [decision(f"f{i}", at=T0 + 50 + i) for i in range(2)]  # pending through the copy
    write(store, a0, d_m, d_a, d_n, d_k, *early, *later)
    results = write(
        store,
        rewards=(
            reward("e0", T0 + 1, 1.0, key="k1"),
            reward("e0", T0 + 2, 0.0, key="k1"),  # a retry: duplicate
            reward("e0", T0 + 3, 0.5),
            reward("e1", T0 + 12, 0.25),  # after e1's window closed: late
            reward("dK", T0 + 2, 0.75, key="k2"),  # before activation: inactive
            reward("dA", T0 - 5, 1.0),
            reward("a0", T0 - 39, 1.0),
            reward("f0", T0 + 51, 0.125, key="k3"),
        ),
        activations=(
            Activation(event_id="dM", at=T0 + 2, wait=WAIT),  # closes with e2
            Activation(event_id="dA", at=T0 + 4.5, wait=WAIT),  # closes after e4
        ),
    ).rewards
    assert results[1] is RewardOutcome.DUPLICATE and results[3] is RewardOutcome.LATE
    assert results[4] is RewardOutcome.INACTIVE
    first = join_due(store, CONFIG, T0 + 12 + GRACE, 100)
    assert [e.decision.event_id for e in first] == ["a0", "e0", "e1", "dM", "e2"]
    outcome = write(store, rewards=(reward("e2", T0 + 12.5, 1.0),)).rewards
    assert outcome == (RewardOutcome.LATE,)  # joined already
    second = join_due(store, CONFIG, T0 + 15 + GRACE, 100)
    assert [e.decision.event_id for e in second] == ["e3", "e4", "dA"]
    assert second[-1].seq == HIGH_WATER

    store.publish_model(
        created_at=T0 + 20, data=b"model one", arguments="--a", learned_count=5, cursor=5, keep=9
    )
    store.publish_model(
        created_at=T0 + 30, data=b"\x00two\xff", arguments="--b", learned_count=8, cursor=8, keep=9
    )
    store.mark_restored(2, 1)
    store.save_checkpoint(
        Checkpoint(
            model=b"checkpoint",
            arguments="--b",
            cursor=HIGH_WATER,
            learned_count=8,
            updated_at=T0 + 31,
            retrain=PendingRetrain(generation=4, cursor=6, since=T0 - 86400, settings="s"),
        )
    )
    assert store.delete_logs(before=T0 - 5, through_seq=HIGH_WATER) == len(DELETED)
    assert store.joined_after(0, 100)[-1].seq < HIGH_WATER

    store.save_config(CONFIG)
    store.save_policy(PolicySettings(name="custom", arguments="--cb_explore_adf --epsilon 0.1"))
    store.save_guardrail(
        GuardrailRecord(
            state=GuardrailState.TRIPPED, since=T0 + 25, reason="worse", trips=2, recoveries=1
        )
    )
    store.save_watch_settings(
        WatchSettingsRecord(
            window=400,
            alpha=0.05,
            guardrail_enabled=False,
            margin=0.01,
            min_events=150,
            drift_delta=0.005,
            drift_threshold=50.0,
            drift_min_events=30,
            interval=0.25,
            batch=1024,
            history=600,
        )
    )
    evaluation = ApprenticeEvaluation()
    evaluation.add_weights(2.0, 0.0, 1.0)
    store.save_apprentice(
        ApprenticeRecord(
            metrics=ApprenticeMetrics(
                start_time=T0,
                last_processed_event_time=T0 + 4,
                total=ImitationCounts().add(1.0, True),
            ),
            evaluation=evaluation.sums(),
        )
    )
    for offset, name in enumerate(LoopTime):
        store.set_time(name, T0 + offset + 0.5)
    store.set_meta("seed", "1234")
    store.set_meta("signing_key", "s3cr3t")

    store.save_report(ReportRecord(at=T0 + 40, holder="trainer-1", body=b"{}"))
    store.acquire_lease("trainer-1", T0 + 40, 1e9)
    store.submit_command("configure", b"{}", T0 + 40)


def _without_data(models: list[ModelRecord]) -> list[ModelRecord]:
    return [replace(m, data=b"") for m in models]


def _stored(store: Store) -> list[StoredReward]:
    return [stored for _, stored in store.copy_rewards(0, 1000)]


def assert_same_loop(source: Store, target: Store) -> None:
    """Every read of the loop answers the same on both stores."""
    ids = [d.event_id for d in source.copy_decisions("", 1000)]
    assert ids == [d.event_id for d in target.copy_decisions("", 1000)]
    assert len(ids) == 8
    for event_id in [*ids, *DELETED]:
        assert target.get_decision(event_id) == source.get_decision(event_id), event_id
    for now in TIMES:
        assert target.due(now, 100) == source.due(now, 100), now
        assert target.counts(now) == source.counts(now), now
    assert target.joined_after(0, 100) == source.joined_after(0, 100)
    assert target.joined_after(3, 2) == source.joined_after(3, 2)
    assert target.counted_rewards([*ids, *DELETED]) == source.counted_rewards([*ids, *DELETED])
    assert _stored(target) == _stored(source)
    assert _without_data(target.list_models()) == _without_data(source.list_models())
    for version in (1, 2, 3):
        assert target.get_model(version) == source.get_model(version), version
    assert target.latest_model() == source.latest_model()
    assert target.load_checkpoint() == source.load_checkpoint()
    assert target.load_config() == source.load_config()
    assert target.load_policy() == source.load_policy()
    assert target.load_guardrail() == source.load_guardrail()
    assert target.load_watch_settings() == source.load_watch_settings()
    assert target.load_apprentice() == source.load_apprentice()
    for name in LoopTime:
        assert target.get_time(name) == source.get_time(name), name
    assert target.copy_meta() == source.copy_meta()
    assert target.log_range() == source.log_range()
    for start, end, after in [(T0 - 100, T0 + 100, 0), (T0 + 1, T0 + 3.5, 0), (T0, T0 + 9, 3)]:
        assert target.joined_between(start, end, after, 100) == source.joined_between(
            start, end, after, 100
        )


@pytest.fixture(params=STORES)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store of each implementation holding :func:`build_loop`'s loop."""
    with made_store(request.param, tmp_path, "source") as made:
        build_loop(made)
        yield made


@pytest.fixture(params=STORES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of each implementation."""
    with made_store(request.param, tmp_path, "target") as made:
        yield made


def test_a_copied_loop_reads_as_its_source(source: Store, target: Store) -> None:
    pages = []
    report = copy_loop(source, target, page=2, progress=pages.append)
    assert (report.decisions, report.rewards, report.joined, report.models) == (8, 6, 5, 2)
    assert report.checkpoint and (report.records, report.meta) == (5, 2)
    assert report.times == len(LoopTime) and report.last_seq == HIGH_WATER
    assert len(pages) == 4 + 3 + 3 + 2  # decisions, rewards, joined in pages of 2; models
    assert_same_loop(source, target)
    # What belongs to the processes on a store stays behind.
    assert target.load_report() is None
    assert target.lease(T0 + 41) is None
    assert target.pending_commands(0, 10) == []


def test_a_copied_loop_goes_on_where_its_source_stopped(source: Store, target: Store) -> None:
    copy_loop(source, target)
    appended = join_due(target, CONFIG, T0 + 61 + GRACE, 100)
    assert [e.decision.event_id for e in appended] == ["f0", "f1"]
    assert appended[0].seq > HIGH_WATER
    assert appended[0].reward == 0.125  # f0's keyed reward came along
    retried = write(target, rewards=(reward("dK", T0 + 3, 0.0, key="k2"),)).rewards
    assert retried == (RewardOutcome.DUPLICATE,)
    model = target.publish_model(
        created_at=T0 + 70, data=b"3", arguments="--b", learned_count=10, cursor=10, keep=9
    )
    assert model.version == 3
    assert target.counts(T0 + 100).joined == source.counts(T0 + 100).joined + 2


def test_copy_refuses_a_target_that_holds_a_loop(source: Store, target: Store) -> None:
    target.save_config(CONFIG)
    with pytest.raises(ValueError, match="holds a loop already"):
        copy_loop(source, target)
    assert target.copy_decisions("", 10) == []


def test_a_copy_into_a_store_and_back_is_the_same_loop(source: Store, tmp_path: Path) -> None:
    with (
        made_store("postgres", tmp_path, "between") as between,
        made_store("sqlite", tmp_path, "back") as back,
    ):
        copy_loop(source, between)
        copy_loop(between, back)
        assert_same_loop(source, back)


# -- LoopCopy on each implementation ---------------------------------------------------------


def test_copy_pages_follow_their_keys(store: Store) -> None:
    write(store, *(decision(f"x{i}") for i in (3, 1, 2)), decision("é"), decision("Z"))
    write(store, rewards=(reward("x2", T0 + 1), reward("x1", T0 + 2), reward("x2", T0 + 3)))
    ids = [d.event_id for d in store.copy_decisions("", 10)]
    assert ids == ["Z", "x1", "x2", "x3", "é"]  # code point order
    assert [d.event_id for d in store.copy_decisions("x1", 2)] == ["x2", "x3"]
    assert store.copy_decisions("é", 10) == [] and store.copy_decisions("", 0) == []
    rewards = store.copy_rewards(0, 10)
    assert [(s.reward.event_id, s.reward.received_at) for _, s in rewards] == [
        ("x2", T0 + 1),
        ("x1", T0 + 2),
        ("x2", T0 + 3),
    ]
    positions = [position for position, _ in rewards]
    assert positions == sorted(set(positions))
    assert store.copy_rewards(positions[0], 1) == rewards[1:2]
    assert store.copy_rewards(positions[-1], 10) == []


def test_restore_rows_refuses_a_key_held_already_and_writes_nothing(store: Store) -> None:
    d = decision("x")
    store.restore_rows(
        decisions=[d], rewards=[StoredReward(reward=reward("x", T0, key="k"), late=False)]
    )
    before = store.counts(T0)
    fresh = decision("y")
    for rows in (
        {"decisions": [fresh, d]},
        {
            "decisions": [fresh],
            "rewards": [StoredReward(reward=reward("x", T0, key="k"), late=True)],
        },
        {"decisions": [fresh], "rewards": [StoredReward(reward=reward("nobody", T0), late=False)]},
        {"decisions": [fresh], "joined": [replace(joined(decision("nobody")), seq=4)]},
        {
            "decisions": [fresh],
            "joined": [replace(joined(d), seq=4), replace(joined(fresh), seq=4)],
        },
    ):
        with pytest.raises(ValueError):
            store.restore_rows(**rows)  # type: ignore[arg-type]
        assert store.get_decision("y") is None
        assert store.counts(T0) == before
    assert store.joined_after(0, 10) == []


def test_restored_rows_are_due_counted_and_numbered_as_given(store: Store) -> None:
    done, waiting, inactive = decision("a"), decision("b", at=T0 + 1), decision("c", defer=True)
    store.restore_rows(
        decisions=[done, waiting, inactive],
        rewards=[
            StoredReward(reward=reward("b", T0 + 2, 0.5), late=False),
            StoredReward(reward=reward("a", T0 + 50, 0.25), late=True),
        ],
        joined=[replace(joined(done, defaulted=True), seq=7)],
    )
    now = T0 + 1 + WAIT + GRACE
    assert [d.event_id for d, _ in store.due(now, 10)] == ["b"]
    assert store.due(now, 10)[0][1] == [reward("b", T0 + 2, 0.5)]
    assert store.counted_rewards(["a", "b"]) == {"b": [reward("b", T0 + 2, 0.5)]}
    counts = store.counts(now)
    assert (counts.decisions, counts.rewards, counts.late_rewards) == (3, 2, 1)
    assert (counts.joined, counts.defaulted, counts.pending_join) == (1, 1, 1)
    assert [e.seq for e in store.joined_after(0, 10)] == [7]
    appended = join_due(store, CONFIG, now, 10)
    assert [e.seq for e in appended] == [8]
    store.restore_totals(joined=40, defaulted=12)
    assert (store.counts(now).joined, store.counts(now).defaulted) == (40, 12)


def test_restore_seq_raises_the_mark_and_never_lowers_it(store: Store) -> None:
    write(store, decision("a"), decision("b"), decision("c"))
    store.restore_seq(41)
    store.restore_seq(5)
    assert [e.seq for e in store.append_joined([joined(decision("a"))])] == [42]
    assert [e.seq for e in store.import_joined([joined(decision("z"))])] == [43]


def test_restored_models_keep_their_versions(store: Store) -> None:
    old = ModelRecord(
        version=4,
        created_at=T0,
        data=b"four",
        arguments="--x",
        learned_count=3,
        cursor=2,
        restored_from=None,
    )
    restored = replace(old, version=9, data=b"nine", restored_from=4)
    generation = store.generation()
    store.restore_model(old)
    store.restore_model(restored)
    assert store.generation() > generation
    assert store.get_model(4) == old and store.get_model(9) == restored
    assert [m.version for m in store.list_models()] == [9, 4]
    with pytest.raises(ValueError):
        store.restore_model(replace(old, data=b"again"))
    assert store.get_model(4) == old
    published = store.publish_model(
        created_at=T0 + 1, data=b"ten", arguments="--x", learned_count=4, cursor=3, keep=2
    )
    assert published.version == 10
    assert [m.version for m in store.list_models()] == [10, 9]


def test_copy_meta_lists_every_named_string(store: Store) -> None:
    assert store.copy_meta() == {}
    store.set_meta("seed", "7")
    store.set_meta_if_absent("signing_key", "k")
    store.set_meta("seed", "8")
    assert store.copy_meta() == {"seed": "8", "signing_key": "k"}
