"""Page–Hinkley on reward streams: detects a shift within a stated delay, quiet when stationary."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.drift import Direction, DriftSettings, PageHinkley

DEFAULTS = DriftSettings()
MAX_DELAY = 300
"""Stated delay for a 0.3 shift of the mean with the defaults: λ/(Δ−δ) ≈ 214 values, plus room
for noise (the worst of 30 seeds in development was 278)."""


def bernoulli(rng: np.random.Generator, p: float, n: int) -> list[float]:
    values: list[float] = (rng.random(n) < p).astype(float).tolist()
    return values


@pytest.mark.parametrize("direction", [Direction.UP, Direction.DOWN])
def test_a_shift_of_the_mean_is_detected_within_the_stated_delay(direction: Direction) -> None:
    before, after = (0.3, 0.6) if direction is Direction.UP else (0.6, 0.3)
    for seed in range(10):
        rng = np.random.default_rng([seed, 11])
        ph = PageHinkley(DEFAULTS)
        stream = bernoulli(rng, before, 2000) + bernoulli(rng, after, 2000)
        alarm = None
        for t, x in enumerate(stream):
            alarm = ph.update(x, seq=t, at=float(t))
            if alarm is not None:
                break
        assert alarm is not None, f"seed {seed}: no alarm"
        assert alarm.seq >= 2000, f"seed {seed}: false alarm at {alarm.seq}"
        assert alarm.seq - 2000 <= MAX_DELAY, f"seed {seed}: detected after {alarm.seq - 2000}"
        assert alarm.direction is direction
        assert (alarm.mean_after > alarm.mean_before) == (direction is Direction.UP)
        assert ph.n == 0 and ph.alarms == 1  # restarted, to track the new level


def test_a_stationary_stream_raises_no_alarm() -> None:
    """20 seeded streams of 20,000 Bernoulli(½) values (the largest variance in [0, 1])."""
    for seed in range(20):
        rng = np.random.default_rng([seed, 12])
        ph = PageHinkley(DEFAULTS)
        for t, x in enumerate(bernoulli(rng, 0.5, 20_000)):
            assert ph.update(x, seq=t, at=0.0) is None, f"seed {seed}: false alarm at {t}"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=300),
    st.integers(min_value=1, max_value=50),
)
def test_statistics_are_non_negative_and_no_alarm_comes_early(
    values: list[float], min_events: int
) -> None:
    ph = PageHinkley(DriftSettings(delta=0.0, threshold=2.0, min_events=min_events))
    seen = 0
    for t, x in enumerate(values):
        alarm = ph.update(x, seq=t, at=0.0)
        seen += 1
        assert ph.statistic_up >= 0.0 and ph.statistic_down >= 0.0
        if alarm is not None:
            assert seen >= min_events
            assert 0 <= alarm.detected_after <= seen
            seen = 0
        else:
            assert math.isclose(ph.mean, sum(values[t - seen + 1 : t + 1]) / seen, abs_tol=1e-9)


def test_settings_are_validated() -> None:
    for bad in ({"delta": -0.1}, {"threshold": 0.0}, {"min_events": 0}, {"delta": math.nan}):
        with pytest.raises(ValueError):
            DriftSettings(**bad)
    with pytest.raises(ValueError, match="finite"):
        PageHinkley(DEFAULTS).update(math.inf, seq=0, at=0.0)
