"""The ``LoopSettings`` contract: configuration, policy and named values."""

from __future__ import annotations

from bandit.config import Aggregation, LearningMode, ServiceConfiguration
from bandit.events import PolicySettings
from bandit.store import LoopSettings, Store


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
