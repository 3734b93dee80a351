"""The guardrail: stop serving the learned policy while it is confidently worse than the baseline.

A two-state machine driven by the watch's improvement estimate ``policy − baseline`` (an
anytime-valid interval, :mod:`bandit.watch`):

* ``serving`` → ``tripped`` when the interval's upper bound is below ``−margin`` and it rests on
  at least ``min_events`` events: the learned policy is worse than the baseline by more than the
  margin, with confidence 1 − α however often this was checked.
* ``tripped`` → ``serving`` when, over at least ``min_events`` events, the lower bound is above 0:
  the (still learning) policy now beats the baseline with the same confidence.

The gap between the two conditions is the hysteresis that keeps it from flapping. Every change is
a :class:`Transition` that says why, in numbers. Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from bandit.estimators import Estimate


class GuardrailState(StrEnum):
    """What is served."""

    SERVING = "serving"
    """The learned policy serves."""
    TRIPPED = "tripped"
    """The baseline serves (within the exploration cap) while the policy keeps learning."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardrailSettings:
    """When the guardrail acts.

    Attributes:
        enabled: whether the guardrail may trip at all.
        margin: how much worse than the baseline (in reward units, ≥ 0) the policy must be
            shown to be before it is replaced.
        min_events: the fewest events an interval must rest on for either transition.
    """

    enabled: bool = True
    margin: float = 0.02
    min_events: int = 200

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin) and self.margin >= 0.0):
            raise ValueError("margin must be a finite number ≥ 0")
        if self.min_events < 2:
            raise ValueError("min_events must be at least 2")


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One change of state and its evidence.

    Attributes:
        state: the state entered.
        at: when, seconds since the epoch.
        reason: a sentence with the numbers behind the change.
        improvement: the ``policy − baseline`` estimate that caused it (None for manual changes).
        seq: position in the stream of the last event behind it (as passed to :meth:`check`).
    """

    state: GuardrailState
    at: float
    reason: str
    improvement: Estimate | None = None
    seq: int = 0


class Guardrail:
    """The state machine; :meth:`check` after each update of the estimate.

    >>> from bandit.estimators import Estimate
    >>> g = Guardrail(GuardrailSettings(margin=0.05, min_events=100))
    >>> bad = Estimate(estimate=-0.3, ci_low=-0.4, ci_high=-0.2, std_error=0.05, ess=90, n=150)
    >>> g.check(bad, now=10.0).state
    <GuardrailState.TRIPPED: 'tripped'>
    >>> g.check(bad, now=11.0) is None
    True
    >>> good = Estimate(estimate=0.2, ci_low=0.1, ci_high=0.3, std_error=0.05, ess=90, n=150)
    >>> g.check(good, now=12.0).state
    <GuardrailState.SERVING: 'serving'>
    """

    def __init__(
        self,
        settings: GuardrailSettings,
        *,
        state: GuardrailState = GuardrailState.SERVING,
        since: float = 0.0,
        reason: str = "",
        history: int = 50,
    ) -> None:
        self.settings = settings
        self.state = state
        self.since = since
        self.reason = reason
        self.trips = 0
        self.recoveries = 0
        self.history: deque[Transition] = deque(maxlen=history)

    @property
    def tripped(self) -> bool:
        """Whether the baseline serves in place of the policy."""
        return self.state is GuardrailState.TRIPPED

    def check(self, improvement: Estimate, now: float, seq: int = 0) -> Transition | None:
        """Apply the rules to the latest ``policy − baseline`` estimate; the change, if any.

        ``seq`` identifies the last event the estimate includes; transitions record it.
        """
        s = self.settings
        if not s.enabled or improvement.n < s.min_events:
            return None
        low, high = improvement.ci_low, improvement.ci_high
        if self.state is GuardrailState.SERVING and high < -s.margin:
            reason = (
                f"policy − baseline is {_fmt(improvement.estimate)} with upper bound "
                f"{_fmt(high)} < −margin ({_fmt(-s.margin)}) over {improvement.n} events"
            )
            self.trips += 1
            return self._enter(GuardrailState.TRIPPED, now, reason, improvement, seq)
        if self.state is GuardrailState.TRIPPED and low > 0.0:
            reason = (
                f"policy − baseline is {_fmt(improvement.estimate)} with lower bound "
                f"{_fmt(low)} > 0 over {improvement.n} events"
            )
            self.recoveries += 1
            return self._enter(GuardrailState.SERVING, now, reason, improvement, seq)
        return None

    def configure(self, settings: GuardrailSettings, now: float) -> Transition | None:
        """Adopt new settings; disabling a tripped guardrail returns serving to the policy."""
        self.settings = settings
        if not settings.enabled and self.tripped:
            return self._enter(GuardrailState.SERVING, now, "the guardrail was disabled", None)
        return None

    def release(self, now: float, reason: str) -> Transition | None:
        """Return serving to the policy by hand (for example after a manual rollback)."""
        if not self.tripped:
            return None
        return self._enter(GuardrailState.SERVING, now, reason, None)

    def _enter(
        self,
        state: GuardrailState,
        now: float,
        reason: str,
        improvement: Estimate | None,
        seq: int = 0,
    ) -> Transition:
        self.state, self.since, self.reason = state, now, reason
        transition = Transition(
            state=state, at=now, reason=reason, improvement=improvement, seq=seq
        )
        self.history.append(transition)
        return transition


def _fmt(value: float) -> str:
    return f"{value:+.4f}"
