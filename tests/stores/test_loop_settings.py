"""The ``LoopSettings`` contract: configuration, policy, guardrail state, watch settings,
apprentice totals, named times and named strings."""

from __future__ import annotations

from dataclasses import replace

from bandit.config import Aggregation, LearningMode, ServiceConfiguration
from bandit.events import (
    ApprenticeMetrics,
    ApprenticeRecord,
    GuardrailRecord,
    ImitationCounts,
    LoopTime,
    PolicySettings,
    ReportRecord,
    WatchSettingsRecord,
)
from bandit.graduation import ApprenticeEvaluation
from bandit.guardrail import GuardrailState
from bandit.store import LoopSettings, Store
from tests.stores.conftest import T0


def test_config_round_trips(store: LoopSettings) -> None:
    assert store.load_config() is None
    config = ServiceConfiguration(
        reward_wait_time=5.5,
        default_reward=-0.25,
        reward_aggregation=Aggregation.SUM,
        exploration_percentage=0.05,
        model_export_frequency=61.0,
        log_retention_days=-1,
        learning_mode=LearningMode.APPRENTICE,
        min_propensity=0.001,
        model_retrain_days=0,
        reward_min=-2.0,
        reward_max=3.0,
    )
    store.save_config(config)
    assert store.load_config() == config
    store.save_config(ServiceConfiguration())
    assert store.load_config() == ServiceConfiguration()


def test_policy_and_meta_round_trip(store: LoopSettings) -> None:
    assert store.load_policy() is None
    store.save_policy(PolicySettings(name="vw", arguments="--cb_explore_adf --epsilon 0.2"))
    store.save_policy(PolicySettings(name="vw", arguments="--cb_explore_adf -q ::"))
    assert store.load_policy() == PolicySettings(name="vw", arguments="--cb_explore_adf -q ::")
    assert store.get_meta("seed") is None
    store.set_meta("seed", "42")
    store.set_meta("seed", "43")
    store.set_meta("ünïcode", "välue")
    assert store.get_meta("seed") == "43"
    assert store.get_meta("ünïcode") == "välue"


def test_set_meta_if_absent_keeps_the_first_value(store: LoopSettings) -> None:
    assert store.set_meta_if_absent("seed", "42") == "42"
    assert store.set_meta_if_absent("seed", "43") == "42"
    assert store.get_meta("seed") == "42"
    store.set_meta("key", "old")
    assert store.set_meta_if_absent("key", "new") == "old"


def test_processes_starting_together_agree_on_a_value_created_once(
    views: tuple[Store, Store],
) -> None:
    first, second = views
    assert first.set_meta_if_absent("signing_key", "from-first") == "from-first"
    assert second.set_meta_if_absent("signing_key", "from-second") == "from-first"
    assert second.get_meta("signing_key") == "from-first"


def test_guardrail_state_round_trips(store: LoopSettings) -> None:
    assert store.load_guardrail() is None
    tripped = GuardrailRecord(
        state=GuardrailState.TRIPPED, since=T0, reason="upper bound −0.02 < −0.01", trips=1
    )
    store.save_guardrail(tripped)
    assert store.load_guardrail() == tripped
    released = GuardrailRecord(
        state=GuardrailState.SERVING, since=T0 + 60, reason="", trips=1, recoveries=1
    )
    store.save_guardrail(released)
    assert store.load_guardrail() == released


def test_watch_settings_round_trip(store: LoopSettings) -> None:
    assert store.load_watch_settings() is None
    saved = WatchSettingsRecord(
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
    store.save_watch_settings(saved)
    loaded = store.load_watch_settings()
    assert loaded == saved and loaded is not None and loaded.guardrail_enabled is False
    store.save_watch_settings(replace(saved, guardrail_enabled=True, window=5))
    assert store.load_watch_settings() == replace(saved, guardrail_enabled=True, window=5)


def test_named_times_round_trip_and_are_set_once_if_absent(store: LoopSettings) -> None:
    assert store.get_time(LoopTime.MODEL_CREATED) is None
    assert store.set_time_if_absent(LoopTime.MODEL_CREATED, T0 + 0.125) == T0 + 0.125
    assert store.set_time_if_absent(LoopTime.MODEL_CREATED, T0 + 9) == T0 + 0.125
    store.set_time(LoopTime.CONFIG_EDITED, 1_764_000_000.123456)
    store.set_time(LoopTime.MODEL_CREATED, T0 + 5)
    assert store.get_time(LoopTime.MODEL_CREATED) == T0 + 5
    assert store.get_time(LoopTime.CONFIG_EDITED) == 1_764_000_000.123456
    assert store.get_time(LoopTime.HEALTH_PROBE) is None


def test_apprentice_totals_and_running_sums_round_trip(store: LoopSettings) -> None:
    assert store.load_apprentice() is None
    fresh = ApprenticeRecord(
        metrics=ApprenticeMetrics(start_time=T0, last_processed_event_time=T0),
        evaluation=ApprenticeEvaluation().sums(),  # infinite reward bounds before any event
    )
    store.save_apprentice(fresh)
    assert store.load_apprentice() == fresh
    evaluation = ApprenticeEvaluation()
    for w_policy, w_baseline, reward in [(2.0, 0.0, 1.0), (0.0, 2.0, -0.25), (1.0, 1.0, 0.1)]:
        evaluation.add_weights(w_policy, w_baseline, reward)
    later = ApprenticeRecord(
        metrics=ApprenticeMetrics(
            start_time=T0,
            last_processed_event_time=T0 + 30.5,
            total=ImitationCounts().add(1.0, True).add(-0.25, False).add(0.1, True),
            last_batch=ImitationCounts().add(0.1, True),
        ),
        evaluation=evaluation.sums(),
    )
    store.save_apprentice(later)
    loaded = store.load_apprentice()
    assert loaded == later
    assert loaded is not None
    restored = ApprenticeEvaluation.from_sums(loaded.evaluation).value(100)
    assert restored == evaluation.value(100)


def test_the_trainer_report_round_trips_and_leaves_the_generation_alone(
    store: LoopSettings,
) -> None:
    assert store.load_report() is None
    before = store.generation()  # type: ignore[attr-defined]
    first = ReportRecord(at=T0, holder="host:1", body=b'{"cursor": 3}')
    store.save_report(first)
    assert store.load_report() == first
    second = ReportRecord(at=T0 + 0.5, holder="host:2", body=b"\x00\xff binary is fine")
    store.save_report(second)
    assert store.load_report() == second
    assert store.generation() == before  # type: ignore[attr-defined]
