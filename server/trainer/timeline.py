"""The dashboard's time series: one sample per trainer report, thinned to cover an hour.

Every chart on the dashboard is drawn from these samples on the trainer's clock, so every chart
can show the same span (1 min to 1 h): the traffic (store totals, so every edge's ranks count),
the learner's lag, and the watch's estimates as of each sample. Recent samples are kept ``step``
seconds apart, older ones ``coarse_step`` apart, none older than ``span``; the number kept is
bounded by ``fine_span / step + span / coarse_step + 2`` whatever the report cadence.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from bandit.watch import WatchSnapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """The loop at one moment.

    Attributes:
        at: seconds since the epoch (the trainer's clock).
        decisions: decisions stored so far (every edge's ranks).
        rewards: rewards stored so far.
        lag_events: events the learner has not learned yet (pending join + joined unlearned).
        lag_seconds: how long the oldest pending decision's window has been closed (0 if none).
        model_version: the trainer's serving model version.
        tripped: whether the guardrail's baseline was serving.
        snapshot: the watch's window as of this moment.
    """

    at: float
    decisions: int
    rewards: int
    lag_events: int
    lag_seconds: float
    model_version: int
    tripped: bool
    snapshot: WatchSnapshot


class Timeline:
    """Samples in time order: ``step`` apart over the last ``fine_span`` seconds, ``coarse_step``
    apart before that, back to ``span`` seconds (the newest sample is always kept). Safe to use
    from several threads (the trainer writes its report from worker threads).

    >>> from bandit.watch import Watch, WatchSettings
    >>> snap = Watch(WatchSettings()).snapshot()
    >>> t = Timeline(step=1.0, fine_span=10.0, coarse_step=5.0, span=30.0)
    >>> for i in range(121):
    ...     t.add(Sample(at=i * 0.5, decisions=i, rewards=i, lag_events=0, lag_seconds=0.0,
    ...                  model_version=1, tripped=False, snapshot=snap))
    >>> ats = [s.at for s in t.samples()]
    >>> ats[0] >= 60.0 - 30.0, ats[-1], len(ats) <= 10 / 1 + 30 / 5 + 2
    (True, 60.0, True)
    """

    def __init__(
        self,
        *,
        step: float = 1.0,
        fine_span: float = 300.0,
        coarse_step: float = 15.0,
        span: float = 3600.0,
    ) -> None:
        if not 0.0 < step <= coarse_step and 0.0 < fine_span <= span:
            raise ValueError("need 0 < step <= coarse_step and 0 < fine_span <= span")
        self.step, self.fine_span = step, fine_span
        self.coarse_step, self.span = coarse_step, span
        self._fine: deque[Sample] = deque()
        self._coarse: deque[Sample] = deque()
        self._lock = threading.Lock()

    def add(self, sample: Sample, limit: int | None = None) -> None:
        """Append ``sample`` (times must not go backwards), thinning what is older, and keep at
        most ``limit`` samples (the oldest go first)."""
        with self._lock:
            self._add(sample)
            while limit is not None and len(self._coarse) + len(self._fine) > max(limit, 1):
                (self._coarse or self._fine).popleft()

    def _add(self, sample: Sample) -> None:
        fine = self._fine
        if len(fine) >= 2 and fine[-1].at - fine[-2].at < self.step:
            fine[-1] = sample  # keep the newest; the one before stays `step` behind it
        else:
            fine.append(sample)
        while fine and fine[0].at < sample.at - self.fine_span:
            old = fine.popleft()
            if not self._coarse or old.at - self._coarse[-1].at >= self.coarse_step:
                self._coarse.append(old)
        while self._coarse and self._coarse[0].at < sample.at - self.span:
            self._coarse.popleft()

    def samples(self) -> list[Sample]:
        """Every kept sample, oldest first."""
        with self._lock:
            return [*self._coarse, *self._fine]
