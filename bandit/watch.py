"""The counterfactual watch: rolling SNIPS estimates of the learned policy, the baseline and
uniform random, with intervals that stay valid however often they are looked at.

Every joined event is reduced once, when it is seen, to an :class:`Observation`: its reward, its
logged propensity ``p_i`` and the importance weight ``w_i = π(a_i|x_i) / p_i`` of each target:

* ``policy``: the learned model that was serving when the event was decided, as it would serve
  (its pmf under the exploration caps). While it served, ``w_i = 1``; while the guardrail served
  the baseline instead, this is a genuine counterfactual estimate. Each event is scored by the
  model current at its decision, so the estimate is progressive validation of the learned
  policy over the window, and its terms form a martingale difference sequence.
* ``baseline``: the first non-excluded action with probability 1 (``w_i = 1{a_i = b_i} / p_i``).
* ``uniform``: every non-excluded action with probability ``1/K'``.

Estimates are self-normalised IPS (SNIPS, ``Σ w·r / Σ w``; the same estimator and delta-method
standard error as :func:`bandit.estimators.snips`), kept as running sums so an update is O(1).
The improvement ``policy − baseline`` uses the influence terms of both, covariance included.

**Intervals: an anytime-valid confidence sequence, not alpha-spending.** The watch is checked
after every event and the guardrail acts on it. A fixed-sample 95% interval checked that often
excludes the truth eventually with probability → 1. Instead each interval is the two-sided
normal-mixture boundary (Robbins; in the asymptotic form of Waudby-Smith, Arnold, Wu, Ramdas
and Howard, "Time-uniform central limit theory and asymptotic confidence sequences", 2021)::

    estimate ± ( σ̂ · sqrt( 2(nρ² + 1) / (n²ρ²) · ℓ ) + B · ℓ / n ),  ℓ = log( sqrt(nρ² + 1) / α )

with σ̂ the standard deviation of the influence terms, ρ tuned to be tightest at the window size,
and B the largest influence term possible given the weights and rewards seen (a sub-gamma,
Bernstein-style correction: importance weights make the terms heavy-tailed, and without it the
boundary under-covers while the effective sample size is small). By Ville's inequality the
Gaussian boundary covers the running value at *every* n simultaneously with probability ≥ 1 − α
(asymptotically; the tests measure the coverage of the whole boundary on long simulated streams),
so checking after each event costs no extra error. An alpha-spending rule would need a budget
fixed in advance for a monitor that never stops, and its intervals widen with every look; the
confidence sequence widens only like sqrt(log n). Intervals are unbounded until the effective
sample size reaches :data:`MIN_ESS`.

**Rolling window: staggered segments.** A confidence sequence covers a stream from its start; a
monitor must also forget. Every ``window // 2`` events a new segment starts, and a segment ends
after ``window`` events, so two are open at a time; estimates come from the older one, which
holds the last ``window/2`` to ``window`` events. Each segment's sequence has level α: the chance
that the guardrail acts on an interval that misses the truth is ≤ α per segment, whatever the
number of checks, i.e. at most one false alarm per ``window/(2α)`` events on average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bandit.estimators import Estimate
from bandit.events import JoinedEvent

TARGETS: tuple[str, ...] = ("policy", "baseline", "uniform")
"""The policies the watch estimates, in the order of :attr:`Observation.weights`."""
POLICY, BASELINE, UNIFORM = 0, 1, 2
MIN_ESS = 5.0
"""Below this effective sample size an interval is unbounded: a handful of weighted events say
nothing about the variance."""
_NAN = float("nan")


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSettings:
    """How the watch estimates.

    Attributes:
        window: events a segment spans; estimates cover the last ``window/2`` to ``window``.
        alpha: 1 − the confidence sequences' coverage, in (0, 1).
    """

    window: int = 1000
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not 2 <= self.window <= 10_000_000:
            raise ValueError("window must be within 2..10,000,000 events")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be within (0, 1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One joined event as the watch sees it.

    Attributes:
        seq: the joined event's sequence number.
        decided_at: decision time, seconds since the epoch.
        model_version: the model version that served (or would have served) the decision.
        reward: the joined reward.
        propensity: the logged probability of the chosen action, in (0, 1].
        weights: importance weight of each of :data:`TARGETS`, each ≥ 0.
        explored: whether the draw left the greedy action.
        defaulted: whether the reward is the default (none came in the window).
    """

    seq: int
    decided_at: float
    model_version: int
    reward: float
    propensity: float
    weights: tuple[float, float, float]
    explored: bool
    defaulted: bool


def observe(event: JoinedEvent, policy_pmf: Sequence[float]) -> Observation:
    """Reduce a joined event, given the learned policy's served pmf for its request.

    Args:
        event: the joined event.
        policy_pmf: the distribution the learned model would serve for ``event``'s request
            (after the exploration caps), one probability per offered action.

    >>> from bandit.events import Action, Decision, RankRequest
    >>> request = RankRequest(event_id="e", context_features=(),
    ...                       actions=(Action(id="a"), Action(id="b")))
    >>> decision = Decision(event_id="e", timestamp=0.0, request=request, pmf=(0.8, 0.2),
    ...                     chosen_index=1, model_version=3)
    >>> event = JoinedEvent(decision=decision, reward=1.0, reward_count=1, defaulted=False,
    ...                     joined_at=1.0, seq=7)
    >>> observe(event, [0.5, 0.5]).weights
    (2.5, 0.0, 2.5)
    """
    decision = event.decision
    request = decision.request
    chosen = decision.chosen_index
    if len(policy_pmf) != len(request.actions):
        raise ValueError("policy_pmf must have one probability per offered action")
    p = decision.propensity
    if not p > 0.0:
        raise ValueError("the chosen action's logged propensity must be positive")
    mask = request.excluded_mask()
    allowed = len(mask) - sum(mask)
    baseline = 1.0 if chosen == request.baseline_index() else 0.0
    return Observation(
        seq=event.seq,
        decided_at=decision.timestamp,
        model_version=decision.model_version,
        reward=event.reward,
        propensity=p,
        weights=(max(policy_pmf[chosen], 0.0) / p, baseline / p, 1.0 / (allowed * p)),
        explored=decision.explored,
        defaulted=event.defaulted,
    )


def cs_radius(std: float, n: int, alpha: float, horizon: float, bound: float = 0.0) -> float:
    """Half-width of the two-sided confidence sequence for a mean at ``n``.

    The normal-mixture boundary ``std·sqrt(2(nρ²+1)/(n²ρ²)·ℓ)`` plus the sub-gamma term
    ``bound·ℓ/n``, with ``ℓ = log(sqrt(nρ²+1)/α)``. The second term is Bernstein's price for
    terms as large as ``bound``: importance weights make single terms large while the estimated
    variance is still small, which the Gaussian part alone under-covers. It fades as 1/n, against
    1/sqrt(n) for the first.

    Args:
        std: standard deviation of one term (σ̂ of the influence terms), ≥ 0.
        n: terms so far.
        alpha: 1 − coverage, uniformly over every n ≥ 1.
        horizon: the n (> 0) at which the boundary is tightest; ρ² = (−2 log α +
            log(1 − 2 log α)) / horizon.
        bound: the largest absolute term seen, ≥ 0.

    Returns:
        The radius (inf when n < 2 or std is not finite).

    >>> round(cs_radius(1.0, 1000, 0.05, 1000) * math.sqrt(1000), 2)
    3.04
    >>> cs_radius(1.0, 1000, 0.05, 1000) > cs_radius(1.0, 2000, 0.05, 1000)
    True
    """
    if n < 2 or not math.isfinite(std):
        return math.inf
    log_alpha = math.log(alpha)
    rho2 = (-2.0 * log_alpha + math.log(1.0 - 2.0 * log_alpha)) / horizon
    grow = n * rho2 + 1.0
    ell = 0.5 * math.log(grow) - log_alpha
    return std * math.sqrt(2.0 * grow / (n * n * rho2) * ell) + bound * ell / n


class Moments:
    """Running sums from which SNIPS and its influence covariances follow, for k targets.

    With ``V_j = Σ w_j r / Σ w_j`` and influence ``ψ_j = w_j (r − V_j) / mean(w_j)``,
    ``Σ ψ_j ψ_k`` expands into the sums of ``w_j w_k``, ``w_j w_k r`` and ``w_j w_k r²``.
    """

    __slots__ = ("k", "n", "rmax", "rmin", "sw", "swr", "sww", "swwr", "swwrr", "wmax")

    def __init__(self, k: int = len(TARGETS)) -> None:
        self.k = k
        self.n = 0
        self.rmin = math.inf
        self.rmax = -math.inf
        self.wmax = [0.0] * k
        self.sw = [0.0] * k
        self.swr = [0.0] * k
        self.sww = [0.0] * (k * k)
        self.swwr = [0.0] * (k * k)
        self.swwrr = [0.0] * (k * k)

    def add(self, weights: Sequence[float], reward: float) -> None:
        """Add one event's target weights and its reward."""
        k = self.k
        self.n += 1
        self.rmin = min(self.rmin, reward)
        self.rmax = max(self.rmax, reward)
        rr = reward * reward
        for j in range(k):
            wj = weights[j]
            self.wmax[j] = max(self.wmax[j], wj)
            self.sw[j] += wj
            self.swr[j] += wj * reward
            for i in range(j, k):
                ww = wj * weights[i]
                cell = j * k + i
                self.sww[cell] += ww
                self.swwr[cell] += ww * reward
                self.swwrr[cell] += ww * rr

    def value(self, j: int) -> float:
        """SNIPS value of target ``j`` (nan while no event carries weight for it)."""
        return self.swr[j] / self.sw[j] if self.sw[j] > 0.0 else _NAN

    def ess(self, j: int) -> float:
        """Kish's effective sample size of target ``j``'s weights, in [0, n]."""
        ww = self.sww[j * self.k + j]
        return self.sw[j] ** 2 / ww if ww > 0.0 else 0.0

    def covariance(self, j: int, i: int) -> float:
        """``Σ ψ_j ψ_i / (n − 1)``: covariance of two targets' influence terms (nan if n < 2)."""
        if self.n < 2 or self.sw[j] <= 0.0 or self.sw[i] <= 0.0:
            return _NAN
        a, b = min(j, i), max(j, i)
        cell = a * self.k + b
        vj, vi = self.value(j), self.value(i)
        total = self.swwrr[cell] - (vj + vi) * self.swwr[cell] + vj * vi * self.sww[cell]
        scale = (self.sw[j] / self.n) * (self.sw[i] / self.n)
        return total / scale / (self.n - 1) if scale > 0.0 else _NAN

    def bound(self, j: int) -> float:
        """The largest influence term of target ``j`` can be: ``max w_j · max|r − V_j| / w̄_j``."""
        if self.sw[j] <= 0.0:
            return math.inf
        v = self.value(j)
        spread = max(self.rmax - v, v - self.rmin, 0.0)
        return self.wmax[j] * spread / (self.sw[j] / self.n)

    def estimate(self, j: int, alpha: float, horizon: float) -> Estimate:
        """Target ``j``'s SNIPS estimate with its confidence-sequence interval."""
        return self._interval(
            self.value(j), self.covariance(j, j), self.bound(j), self.ess(j), alpha, horizon
        )

    def difference(self, j: int, i: int, alpha: float, horizon: float) -> Estimate:
        """``value(j) − value(i)`` with its confidence-sequence interval; ess is the smaller."""
        var = self.covariance(j, j) + self.covariance(i, i) - 2.0 * self.covariance(j, i)
        bound = self.bound(j) + self.bound(i)
        ess = min(self.ess(j), self.ess(i))
        return self._interval(self.value(j) - self.value(i), var, bound, ess, alpha, horizon)

    def _interval(
        self, value: float, variance: float, bound: float, ess: float, alpha: float, horizon: float
    ) -> Estimate:
        n = self.n
        if not math.isfinite(value):
            return Estimate(estimate=_NAN, ci_low=_NAN, ci_high=_NAN, std_error=_NAN, ess=ess, n=n)
        std = math.sqrt(max(variance, 0.0)) if math.isfinite(variance) else math.inf
        radius = cs_radius(std, n, alpha, horizon, bound) if ess >= MIN_ESS else math.inf
        return Estimate(
            estimate=value,
            ci_low=value - radius,
            ci_high=value + radius,
            std_error=std / math.sqrt(n) if n > 0 else math.inf,
            ess=ess,
            n=n,
        )


class Segment:
    """One stretch of the stream: target moments plus plain summaries of what was served."""

    __slots__ = (
        "defaulted",
        "explored",
        "first_seq",
        "last_seq",
        "moments",
        "propensity_min",
        "propensity_sum",
        "reward_sum",
        "since",
        "until",
    )

    def __init__(self) -> None:
        self.moments = Moments()
        self.reward_sum = 0.0
        self.propensity_sum = 0.0
        self.propensity_min = math.inf
        self.explored = 0
        self.defaulted = 0
        self.first_seq = self.last_seq = 0
        self.since = self.until = _NAN

    @property
    def n(self) -> int:
        """Events in the segment."""
        return self.moments.n

    def add(self, obs: Observation) -> None:
        """Add one observation."""
        if self.moments.n == 0:
            self.first_seq, self.since = obs.seq, obs.decided_at
        self.last_seq, self.until = obs.seq, obs.decided_at
        self.moments.add(obs.weights, obs.reward)
        self.reward_sum += obs.reward
        self.propensity_sum += obs.propensity
        self.propensity_min = min(self.propensity_min, obs.propensity)
        self.explored += obs.explored
        self.defaulted += obs.defaulted


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSnapshot:
    """The watch's estimates over its current window (the older open segment).

    Estimates are nan (and intervals unbounded) until enough events carry weight. ``since`` and
    ``until`` are the decision times of the window's first and last event.
    """

    n: int
    policy: Estimate
    baseline: Estimate
    uniform: Estimate
    improvement: Estimate
    reward_mean: float
    exploration_ratio: float
    propensity_mean: float
    propensity_min: float
    default_ratio: float
    first_seq: int
    last_seq: int
    since: float
    until: float
    alpha: float


def summarize(segment: Segment, alpha: float, horizon: float) -> WatchSnapshot:
    """The snapshot of one segment's estimates at level ``alpha``, tightest at ``horizon``."""
    m, n = segment.moments, segment.n
    return WatchSnapshot(
        n=n,
        policy=m.estimate(POLICY, alpha, horizon),
        baseline=m.estimate(BASELINE, alpha, horizon),
        uniform=m.estimate(UNIFORM, alpha, horizon),
        improvement=m.difference(POLICY, BASELINE, alpha, horizon),
        reward_mean=segment.reward_sum / n if n else _NAN,
        exploration_ratio=segment.explored / n if n else _NAN,
        propensity_mean=segment.propensity_sum / n if n else _NAN,
        propensity_min=segment.propensity_min if n else _NAN,
        default_ratio=segment.defaulted / n if n else _NAN,
        first_seq=segment.first_seq,
        last_seq=segment.last_seq,
        since=segment.since,
        until=segment.until,
        alpha=alpha,
    )


class Watch:
    """The rolling window of staggered segments (see the module docstring).

    >>> watch = Watch(WatchSettings(window=4))
    >>> for seq in range(1, 8):
    ...     watch.add(Observation(seq=seq, decided_at=float(seq), model_version=1, reward=1.0,
    ...                           propensity=0.5, weights=(2.0, 0.0, 1.0), explored=False,
    ...                           defaulted=False))
    >>> snap = watch.snapshot()
    >>> (snap.n, snap.first_seq, snap.last_seq, snap.policy.estimate)
    (3, 5, 7, 1.0)
    """

    def __init__(self, settings: WatchSettings) -> None:
        self.settings = settings
        self.seen = 0
        self._segments: list[Segment] = []

    @property
    def hop(self) -> int:
        """Events between the starts of two segments."""
        return max(self.settings.window // 2, 1)

    def reset(self) -> None:
        """Forget every segment: the next event starts a fresh window."""
        self.seen = 0
        self._segments = []

    def add(self, obs: Observation) -> None:
        """Add one observation to every open segment, opening and closing segments on time."""
        if self.seen % self.hop == 0:
            self._segments.append(Segment())
        self._segments = [s for s in self._segments if s.n < self.settings.window]
        for segment in self._segments:
            segment.add(obs)
        self.seen += 1

    def improvement(self) -> Estimate:
        """``policy − baseline`` over the current window: the guardrail's input, in O(1)."""
        if not self._segments:
            return Moments().difference(POLICY, BASELINE, self.settings.alpha, 2.0)
        return self._segments[0].moments.difference(
            POLICY, BASELINE, self.settings.alpha, float(self.settings.window)
        )

    def snapshot(self) -> WatchSnapshot:
        """Estimates over the current window (an empty one before any event)."""
        segment = self._segments[0] if self._segments else Segment()
        return summarize(segment, self.settings.alpha, float(self.settings.window))
