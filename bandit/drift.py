"""Drift: a two-sided Page–Hinkley test on the reward stream.

Rewards are first mapped to [0, 1] with the configured reward range, so one setting fits every
range. With ``x̄_t`` the running mean since the last reset, the test keeps

    U_t = Σ_{i≤t} (x_i − x̄_i − δ)   (rises when the mean goes up)
    L_t = Σ_{i≤t} (x̄_i − x_i − δ)   (rises when the mean goes down)

and raises an alarm when ``U_t − min U`` or ``L_t − min L`` exceeds the threshold λ (and at least
``min_events`` values were seen). δ is the change too small to matter; λ trades detection delay
against false alarms. For a shift of the mean by Δ > δ the delay is about λ / (Δ − δ) values
(≈ 210 for Δ = 0.3 with the defaults δ = 0.02, λ = 60). On a stationary stream of variance σ²
the mean time between false alarms grows like exp(2δλ/σ²); σ² ≤ 1/4 for any stream in [0, 1],
which gives millions of values with the defaults (the tests see none in 400,000 Bernoulli(½)
values, the worst case; a wider search saw none in 3 million).

After an alarm the test restarts, so it tracks the new level. The alarm estimates where the
change began (the index of the extremum the statistic rose from) and the mean since then.

A shift is *explained* (:func:`explains`) when the loop's own learning accounts for it rather
than the world: a newer model decided most of the values since the change than before it, and
that model, replayed counterfactually on the values from before the change, predicts the new
level (its interval holds the mean after, and it is nearer the mean after than the mean before).
A world that changed on its own fails the second test: replayed on the old world's events, the
new model predicts the old level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Direction(StrEnum):
    """Which way the mean moved."""

    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftSettings:
    """Page–Hinkley parameters, in units of the reward range mapped to [0, 1].

    Attributes:
        delta: the tolerated change of the mean (δ ≥ 0).
        threshold: the alarm threshold λ (> 0).
        min_events: values seen since the last reset before any alarm.
    """

    delta: float = 0.02
    threshold: float = 60.0
    min_events: int = 100

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delta) and self.delta >= 0.0):
            raise ValueError("delta must be a finite number ≥ 0")
        if not (math.isfinite(self.threshold) and self.threshold > 0.0):
            raise ValueError("threshold must be a finite number > 0")
        if self.min_events < 1:
            raise ValueError("min_events must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftAlarm:
    """A detected change of the mean.

    Attributes:
        direction: up or down.
        at: when, as passed to :meth:`PageHinkley.update`.
        seq: the position (as passed in) of the value that raised the alarm.
        detected_after: values since the estimated start of the change.
        mean_before: mean of the values before the estimated start (in [0, 1] units).
        mean_after: mean of the values since the estimated start.
        explained_by: the model version whose learning explains the shift (:func:`explains`),
            or None.
        counterfactual: that model's value replayed on the values before the change (in [0, 1]
            units; nan when not looked at).
    """

    direction: Direction
    at: float
    seq: int
    detected_after: int
    mean_before: float
    mean_after: float
    explained_by: int | None = None
    counterfactual: float = math.nan


class _Side:
    """One one-sided cumulative sum with its running minimum and the sums since it."""

    __slots__ = ("count_since", "cusum", "minimum", "sum_since")

    def __init__(self) -> None:
        self.cusum = 0.0
        self.minimum = 0.0
        self.sum_since = 0.0
        self.count_since = 0

    def update(self, step: float, x: float) -> float:
        self.cusum += step
        if self.cusum <= self.minimum:
            self.minimum = self.cusum
            self.sum_since, self.count_since = 0.0, 0
        else:
            self.sum_since += x
            self.count_since += 1
        return self.cusum - self.minimum


class PageHinkley:
    """The two-sided test; feed values in [0, 1] one at a time.

    >>> ph = PageHinkley(DriftSettings(delta=0.0, threshold=5.0, min_events=10))
    >>> alarms = [ph.update(0.0 if t < 50 else 1.0, seq=t, at=float(t)) for t in range(80)]
    >>> first = next(a for a in alarms if a is not None)
    >>> first.direction, first.seq, first.detected_after, first.mean_before
    (<Direction.UP: 'up'>, 55, 6, 0.0)
    """

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings
        self.alarms = 0
        self.reset()

    def reset(self) -> None:
        """Start over: forget the mean and both sums."""
        self.n = 0
        self.total = 0.0
        self._up = _Side()
        self._down = _Side()
        self.statistic_up = 0.0
        self.statistic_down = 0.0

    @property
    def mean(self) -> float:
        """Mean of the values since the last reset (nan before any)."""
        return self.total / self.n if self.n else math.nan

    def update(self, x: float, *, seq: int, at: float) -> DriftAlarm | None:
        """Add one value in [0, 1]; an alarm (after which the test has restarted) or None."""
        if not math.isfinite(x):
            raise ValueError("drift values must be finite")
        self.n += 1
        self.total += x
        mean = self.total / self.n
        delta = self.settings.delta
        self.statistic_up = self._up.update(x - mean - delta, x)
        self.statistic_down = self._down.update(mean - x - delta, x)
        if self.n < self.settings.min_events:
            return None
        for direction, side, statistic in (
            (Direction.UP, self._up, self.statistic_up),
            (Direction.DOWN, self._down, self.statistic_down),
        ):
            if statistic > self.settings.threshold:
                return self._alarm(direction, side, seq, at)
        return None

    def _alarm(self, direction: Direction, side: _Side, seq: int, at: float) -> DriftAlarm:
        after = side.count_since
        before = self.n - after
        alarm = DriftAlarm(
            direction=direction,
            at=at,
            seq=seq,
            detected_after=after,
            mean_before=(self.total - side.sum_since) / before if before else math.nan,
            mean_after=side.sum_since / after if after else math.nan,
        )
        self.alarms += 1
        self.reset()
        return alarm


def explains(
    alarm: DriftAlarm,
    *,
    version_before: int,
    version_after: int,
    value: float,
    low: float,
    high: float,
) -> bool:
    """Whether a newer model's learning explains ``alarm``'s shift (see the module docstring).

    Args:
        alarm: the shift.
        version_before: the model version that decided most values before the change.
        version_after: the model version that decided most values since the change.
        value: ``version_after`` replayed on the values before the change (in [0, 1] units).
        low: lower end of that value's interval (nan or -inf when unbounded).
        high: upper end.

    >>> a = DriftAlarm(direction=Direction.UP, at=0.0, seq=9, detected_after=200,
    ...                mean_before=0.4, mean_after=0.6)
    >>> explains(a, version_before=3, version_after=4, value=0.58, low=0.5, high=0.66)
    True
    >>> explains(a, version_before=3, version_after=4, value=0.42, low=0.3, high=0.6)
    False
    >>> explains(a, version_before=4, version_after=4, value=0.58, low=0.5, high=0.66)
    False
    """
    if version_after <= version_before:
        return False
    if not all(math.isfinite(v) for v in (value, low, high, alarm.mean_before, alarm.mean_after)):
        return False
    nearer = abs(value - alarm.mean_after) < abs(value - alarm.mean_before)
    return low <= alarm.mean_after <= high and nearer
