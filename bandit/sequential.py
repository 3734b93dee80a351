"""Sequential SNIPS: running sums from which self-normalised IPS estimates of several target
policies, their difference and anytime-valid intervals follow in O(1) per event.

**Intervals: an anytime-valid confidence sequence, not alpha-spending.** The watch
(:mod:`bandit.watch`) is checked after every event and the guardrail acts on it. A fixed-sample
95% interval checked that often excludes the truth eventually with probability → 1. Instead
each interval is the two-sided normal-mixture boundary (Robbins; in the asymptotic form of
Waudby-Smith, Arnold, Wu, Ramdas and Howard, "Time-uniform central limit theory and asymptotic
confidence sequences", 2021)::

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bandit.estimators import Estimate

MIN_ESS = 5.0
"""Below this effective sample size an interval is unbounded: a handful of weighted events say
nothing about the variance."""
_NAN = float("nan")


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

    def __init__(self, k: int = 3) -> None:
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
