"""Service configuration: ISO-8601 durations, validation, and the Personalizer wire form."""

from __future__ import annotations

import doctest
import math
import re
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import example, given

from bandit import config as config_module
from bandit.config import (
    DAY,
    Aggregation,
    LearningMode,
    ServiceConfiguration,
    format_duration,
    from_wire,
    parse_duration,
    to_wire,
)
from bandit.errors import (
    InvalidLearningModeServiceConfiguration,
    InvalidLogRetentionDays,
    InvalidRewardWaitTime,
    InvalidServiceConfiguration,
)

ISO_DURATION = re.compile(r"^P(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?$")
HUGE_DURATION = "P" + "9" * 400 + "D"  # parses to a float that overflows to inf

REQUIRED = (
    "rewardWaitTime",
    "defaultReward",
    "rewardAggregation",
    "explorationPercentage",
    "modelExportFrequency",
    "logRetentionDays",
)


def wire(**overrides: Any) -> dict[str, Any]:
    """A valid Personalizer ServiceConfiguration body with ``overrides`` applied."""
    body = to_wire(ServiceConfiguration())
    body.update(overrides)
    return body


# --- durations -------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=400 * 86_400))
def test_whole_seconds_round_trip_exactly(seconds: int) -> None:
    text = format_duration(seconds)
    assert ISO_DURATION.match(text), text
    assert parse_duration(text) == seconds


@given(st.integers(min_value=0, max_value=30 * 86_400 * 1000))
def test_millisecond_durations_round_trip(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    text = format_duration(seconds)
    assert ISO_DURATION.match(text), text
    assert math.isclose(parse_duration(text), seconds, rel_tol=0.0, abs_tol=1e-6)


@given(st.floats(min_value=0.0, max_value=30 * DAY))
@example(1e-05)
@example(60.00001)
def test_format_duration_always_writes_a_parseable_duration(seconds: float) -> None:
    """Regression: ``{secs:g}`` wrote ``PT1M1e-05S``, which is not ISO-8601."""
    text = format_duration(seconds)
    assert ISO_DURATION.match(text), text
    assert math.isclose(parse_duration(text), seconds, rel_tol=1e-6, abs_tol=1e-3)


@given(
    st.integers(0, 30),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)
def test_format_is_canonical_for_parsed_components(d: int, h: int, m: int, s: int) -> None:
    text = "P" + (f"{d}D" if d else "") + "T" + f"{h}H{m}M{s}S"
    seconds = parse_duration(text)
    assert seconds == d * DAY + h * 3600 + m * 60 + s
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT10M", 600.0),
        ("PT5S", 5.0),
        ("pt5s", 5.0),
        (" PT1H ", 3600.0),
        ("P1D", 86_400.0),
        ("P1DT1.5S", 86_401.5),
        ("PT0.25S", 0.25),
        ("P2DT0S", 2 * 86_400.0),
    ],
)
def test_parse_duration_examples(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "10M", "PT10", "PT-5S", "P1W", "P1Y", "P1M", "P1DT", "PT1.S", "T5S"]
)
def test_parse_duration_rejects_malformed_text(text: str) -> None:
    with pytest.raises(InvalidServiceConfiguration):
        parse_duration(text)


def test_parse_duration_rejects_non_strings() -> None:
    with pytest.raises(InvalidServiceConfiguration):
        parse_duration(600)  # type: ignore[arg-type]


def test_format_duration_of_nothing_is_zero_seconds() -> None:
    assert format_duration(0) == "PT0S"
    assert format_duration(-5) == "PT0S"


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["PT0S", "PT0.5S", "P2DT1S", "P3D", pytest.param(HUGE_DURATION, id="P999_9D-overflows")],
)
def test_reward_wait_time_out_of_bounds_on_the_wire(text: str) -> None:
    with pytest.raises(InvalidRewardWaitTime) as info:
        from_wire(wire(rewardWaitTime=text, logRetentionDays=-1))
    assert info.value.code == "InvalidRewardWaitTime"
    assert info.value.target == "rewardWaitTime"


@pytest.mark.parametrize("seconds", [0.0, 0.999, 2 * DAY + 0.001, math.inf, math.nan])
def test_reward_wait_time_out_of_bounds_in_the_constructor(seconds: float) -> None:
    with pytest.raises(InvalidRewardWaitTime):
        ServiceConfiguration(reward_wait_time=seconds, log_retention_days=-1)


@pytest.mark.parametrize("seconds", [1.0, 2 * DAY])
def test_reward_wait_time_bounds_are_inclusive(seconds: float) -> None:
    config = ServiceConfiguration(reward_wait_time=seconds, log_retention_days=-1)
    assert config.reward_wait_time == seconds


@pytest.mark.parametrize(
    ("wait", "days"),
    [("PT10M", 0), ("PT10M", 1), ("PT10M", -2), ("P2D", 2), ("P1D", 1)],
)
def test_log_retention_days_too_short(wait: str, days: int) -> None:
    with pytest.raises(InvalidLogRetentionDays) as info:
        from_wire(wire(rewardWaitTime=wait, logRetentionDays=days))
    assert info.value.code == "InvalidLogRetentionDays"


@pytest.mark.parametrize(("wait", "days"), [("PT10M", -1), ("PT10M", 2), ("P2D", 3), ("P1D", 2)])
def test_log_retention_days_accepted(wait: str, days: int) -> None:
    assert from_wire(wire(rewardWaitTime=wait, logRetentionDays=days)).log_retention_days == days


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("explorationPercentage", 1.5),
        ("explorationPercentage", -0.1),
        ("defaultReward", 2.0),
        ("defaultReward", -1.5),
        ("minPropensity", 1.01),
        ("modelExportFrequency", "PT0.5S"),
        ("modelRetrainDays", -1),
        ("rewardAggregation", "max"),
        ("learningMode", "Offline"),
        ("rewardWaitTime", "ten minutes"),
        ("rewardWaitTime", 600),
        ("apprenticeExplorationPercentage", 1.5),
        ("apprenticeExplorationPercentage", -0.01),
        ("apprenticeGraduationMinEvents", 0),
    ],
)
def test_out_of_range_fields_raise_invalid_service_configuration(field: str, value: Any) -> None:
    with pytest.raises(InvalidServiceConfiguration) as info:
        from_wire(wire(**{field: value}))
    assert info.type is InvalidServiceConfiguration
    assert info.value.code == "InvalidServiceConfiguration"


@pytest.mark.parametrize("field", REQUIRED)
def test_missing_required_field_is_rejected(field: str) -> None:
    body = wire()
    del body[field]
    with pytest.raises(InvalidServiceConfiguration) as info:
        from_wire(body)
    assert info.value.target == field
    assert field in info.value.message


def test_partial_update_keeps_the_base() -> None:
    base = ServiceConfiguration(exploration_percentage=0.3, default_reward=0.5)
    updated = from_wire({"explorationPercentage": 0.1}, base=base, require_all=False)
    assert updated == base.replace(exploration_percentage=0.1)


@pytest.mark.parametrize("body", [None, [], "config", 3])
def test_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(InvalidServiceConfiguration):
        from_wire(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("defaultReward", True),
        ("explorationPercentage", False),
        ("minPropensity", True),
        ("logRetentionDays", True),
        ("modelRetrainDays", True),
        ("logRetentionDays", 90.0),
        ("explorationPercentage", "0.2"),
        ("apprenticeExplorationPercentage", True),
        ("apprenticeExplorationPercentage", "0.1"),
        ("apprenticeGraduationMinEvents", 10.0),
        ("apprenticeGraduationMinEvents", True),
        ("apprenticeAutoGraduate", 1),
        ("apprenticeAutoGraduate", "true"),
    ],
)
def test_booleans_and_strings_are_not_numbers(field: str, value: Any) -> None:
    with pytest.raises(InvalidServiceConfiguration) as info:
        from_wire(wire(**{field: value}))
    assert info.value.target == field


@pytest.mark.parametrize("field", ["default_reward", "exploration_percentage", "min_propensity"])
def test_constructor_rejects_booleans_and_non_finite(field: str) -> None:
    values: tuple[Any, ...] = (True, math.nan, math.inf)
    for value in values:
        with pytest.raises(InvalidServiceConfiguration):
            ServiceConfiguration(**{field: value})


def test_empty_reward_range_is_rejected() -> None:
    with pytest.raises(InvalidServiceConfiguration):
        ServiceConfiguration(reward_min=1.0, reward_max=1.0, default_reward=1.0)


def test_huge_export_frequency_is_rejected_or_round_trips() -> None:
    """Regression: an overflowing duration was accepted and then crashed ``to_wire``."""
    try:
        config = from_wire(wire(modelExportFrequency=HUGE_DURATION))
    except InvalidServiceConfiguration:
        return
    assert from_wire(to_wire(config)) == config


# --- learning-mode changes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"reward_wait_time": 300.0},
        {"default_reward": 0.5},
        {"reward_aggregation": Aggregation.SUM},
    ],
)
def test_mode_change_with_reward_settings_change_is_rejected(change: dict[str, Any]) -> None:
    old = ServiceConfiguration()
    new = old.replace(learning_mode=LearningMode.APPRENTICE, **change)
    with pytest.raises(InvalidLearningModeServiceConfiguration) as info:
        old.check_change(new)
    assert info.value.code == "InvalidLearningModeServiceConfiguration"
    # Either change alone is fine.
    old.check_change(old.replace(learning_mode=LearningMode.APPRENTICE))
    old.check_change(old.replace(**change))


def test_mode_change_alone_through_the_wire_is_accepted() -> None:
    old = ServiceConfiguration()
    new = from_wire(wire(learningMode="apprentice"))
    old.check_change(new)
    assert new.learning_mode is LearningMode.APPRENTICE


# --- wire round-trip -------------------------------------------------------------------------


@st.composite
def configurations(draw: st.DrawFn) -> ServiceConfiguration:
    wait = float(draw(st.integers(1, 2 * 86_400)))
    min_days = math.ceil(wait / DAY + 1)
    return ServiceConfiguration(
        reward_wait_time=wait,
        default_reward=draw(st.floats(-1.0, 1.0)),
        reward_aggregation=draw(st.sampled_from(Aggregation)),
        exploration_percentage=draw(st.floats(0.0, 1.0)),
        model_export_frequency=float(draw(st.integers(1, 7 * 86_400))),
        log_retention_days=draw(st.one_of(st.just(-1), st.integers(min_days, 3650))),
        learning_mode=draw(st.sampled_from(LearningMode)),
        min_propensity=draw(st.floats(0.0, 1.0)),
        model_retrain_days=draw(st.integers(0, 30)),
        apprentice_exploration=draw(st.floats(0.0, 1.0)),
        apprentice_auto_graduate=draw(st.booleans()),
        apprentice_graduation_min_events=draw(st.integers(1, 1_000_000)),
    )


@given(configurations())
def test_wire_form_round_trips(config: ServiceConfiguration) -> None:
    body = to_wire(config)
    assert set(REQUIRED) <= set(body)
    assert isinstance(body["rewardWaitTime"], str)
    assert from_wire(body) == config


def test_apprentice_extensions_default_to_personalizer_behaviour() -> None:
    """A Personalizer body without banditd's apprentice fields: no exploration, no graduation."""
    config = from_wire(wire())
    assert config.apprentice_exploration == 0.0
    assert config.apprentice_auto_graduate is False
    assert config.apprentice_graduation_min_events == 1000
    base = ServiceConfiguration(apprentice_exploration=0.1, apprentice_auto_graduate=True)
    kept = from_wire({"learningMode": "Apprentice"}, base=base, require_all=False)
    assert kept.apprentice_exploration == 0.1 and kept.apprentice_auto_graduate


@pytest.mark.parametrize(
    "change",
    [
        {"apprentice_exploration": math.nan},
        {"apprentice_exploration": 2.0},
        {"apprentice_graduation_min_events": 0},
        {"apprentice_graduation_min_events": True},
        {"apprentice_auto_graduate": 1},
    ],
)
def test_constructor_validates_the_apprentice_extensions(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidServiceConfiguration) as info:
        ServiceConfiguration(**change)
    assert info.value.target is not None and info.value.target.startswith("apprentice")


def test_module_doctests_pass() -> None:
    result = doctest.testmod(config_module)
    assert result.attempted > 0
    assert result.failed == 0
