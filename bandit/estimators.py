"""Off-policy estimators: the value of a target policy from decisions logged under another.

Pure, vectorised numpy. Every estimator takes per-event arrays of the logged data and returns an
:class:`Estimate` with a confidence interval: normal (from the estimator's per-event terms) by
default, or a percentile bootstrap when a seeded ``numpy.random.Generator`` is passed in.

Notation, for ``n`` logged events: ``rewards`` r_i, ``logging`` propensities p_i > 0 of the logged
actions, ``target`` probabilities π_i of the same actions under the evaluated policy, and
importance weights ``w_i = π_i / p_i`` (optionally clipped). For DM and DR, ``target_pmf`` and
``predicted`` rewards have shape (n, K): one column per action slot, padded columns carry π = 0.

* IPS ``mean(w·r)``: unbiased when every action π can take has p > 0 (and no clipping).
* SNIPS ``Σ w·r / Σ w``: slightly biased, lower variance when rewards sit far from zero.
* DM ``mean(Σ_a π(a)·q̂(a))``: no variance from weights, biased by the reward model q̂.
* DR ``DM + mean(w·(r − q̂(chosen)))``: unbiased like IPS, lower variance when q̂ is good.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
_BOOTSTRAP_CELLS = 4_000_000  # resample matrix cells per chunk: bounds memory at ~32 MB


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """An estimated policy value with its uncertainty.

    Attributes:
        estimate: the estimated mean reward of the target policy.
        ci_low: lower end of the (1 − alpha) confidence interval.
        ci_high: upper end; ``ci_low ≤ estimate ≤ ci_high`` for normal intervals.
        std_error: standard error of ``estimate`` (from the per-event terms).
        ess: effective sample size of the weights, in [0, n] (n for DM).
        n: number of logged events used.
    """

    estimate: float
    ci_low: float
    ci_high: float
    std_error: float
    ess: float
    n: int


def importance_weights(
    target: FloatArray, logging: FloatArray, clip: float | None = None
) -> FloatArray:
    """Importance weights ``w = target / logging``, clipped at ``clip`` when given.

    Args:
        target: π(a_i|x_i), the evaluated policy's probability of each logged action, shape (n,).
        logging: p_i > 0, the logged propensity of each logged action, shape (n,).
        clip: upper bound on each weight (> 0), or None.

    Returns:
        Weights ≥ 0, shape (n,).

    >>> importance_weights(np.array([1.0, 0.0, 1.0]), np.array([0.5, 0.5, 0.1]), clip=5.0)
    array([2., 0., 5.])
    """
    target = np.asarray(target, dtype=np.float64)
    logging = np.asarray(logging, dtype=np.float64)
    if target.shape != logging.shape:
        raise ValueError("target and logging differ in shape")
    if np.any(logging <= 0.0):
        raise ValueError("logged propensities must be positive")
    weights = target / logging
    if clip is not None:
        if clip <= 0.0:
            raise ValueError("clip must be positive")
        weights = np.minimum(weights, clip)
    return weights


def effective_sample_size(weights: FloatArray) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²``, in [0, n]; 0 when every weight is 0.

    >>> effective_sample_size(np.array([1.0, 1.0, 1.0, 1.0]))
    4.0
    >>> effective_sample_size(np.array([4.0, 0.0, 0.0, 0.0]))
    1.0
    """
    weights = np.asarray(weights, dtype=np.float64)
    largest = float(np.max(np.abs(weights))) if weights.size else 0.0
    if largest <= 0.0:
        return 0.0
    scaled = weights / largest  # the ratio is scale-free; scaling avoids under- and overflow
    return float(np.sum(scaled)) ** 2 / float(np.sum(scaled * scaled))


def normal_interval(estimate: float, std_error: float, alpha: float = 0.05) -> tuple[float, float]:
    """The two-sided (1 − alpha) normal interval ``estimate ± z·std_error``.

    >>> [round(v, 3) for v in normal_interval(0.5, 0.1)]
    [0.304, 0.696]
    """
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    return estimate - z * std_error, estimate + z * std_error


def bootstrap_interval(
    numerator: FloatArray,
    denominator: FloatArray,
    rng: np.random.Generator,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ratio ``Σ numerator / Σ denominator``.

    Every estimator here is such a ratio (IPS, DM and DR with ``denominator = 1``; SNIPS with
    the weights), so one resampler serves all. Events are resampled with replacement as
    multinomial counts, ``n_boot`` times, in chunks that bound memory.

    Args:
        numerator: per-event terms, shape (n,).
        denominator: per-event terms, shape (n,); resampled sums must be non-zero to count.
        rng: the seeded generator the resamples are drawn from.
        n_boot: number of resamples.
        alpha: 1 − the interval's nominal coverage.

    Returns:
        (low, high) percentiles alpha/2 and 1 − alpha/2 of the resampled estimates.

    >>> rng = np.random.default_rng(0)
    >>> low, high = bootstrap_interval(np.ones(50), np.ones(50), rng, n_boot=100)
    >>> (low, high)
    (1.0, 1.0)
    """
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    n = numerator.shape[0]
    if n == 0:
        return float("nan"), float("nan")
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    pvals = np.full(n, 1.0 / n)
    estimates: list[FloatArray] = []
    for start in range(0, n_boot, chunk):
        counts = rng.multinomial(n, pvals, size=min(chunk, n_boot - start)).astype(np.float64)
        num = counts @ numerator
        den = counts @ denominator
        ok = den != 0.0
        estimates.append(num[ok] / den[ok])
    values = np.concatenate(estimates)
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _ratio_estimate(
    numerator: FloatArray,
    denominator: FloatArray,
    *,
    ess: float,
    alpha: float,
    rng: np.random.Generator | None,
    n_boot: int,
) -> Estimate:
    n = int(numerator.shape[0])
    if n == 0:
        nan = float("nan")
        return Estimate(estimate=nan, ci_low=nan, ci_high=nan, std_error=nan, ess=0.0, n=0)
    mean_den = float(np.mean(denominator))
    value = float(np.mean(numerator)) / mean_den if mean_den != 0.0 else 0.0
    # Delta method: the influence of event i on the ratio is (num_i − value·den_i) / mean(den).
    influence = (numerator - value * denominator) / (mean_den if mean_den != 0.0 else 1.0)
    std_error = float(np.std(influence, ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    if rng is None:
        low, high = normal_interval(value, std_error, alpha)
    else:
        low, high = bootstrap_interval(numerator, denominator, rng, n_boot=n_boot, alpha=alpha)
    return Estimate(estimate=value, ci_low=low, ci_high=high, std_error=std_error, ess=ess, n=n)


def ips(
    rewards: FloatArray,
    weights: FloatArray,
    *,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
    n_boot: int = 1000,
) -> Estimate:
    """Inverse propensity scoring: ``mean(w·r)``.

    Args:
        rewards: logged rewards r_i, shape (n,).
        weights: importance weights w_i ≥ 0, shape (n,) (see :func:`importance_weights`).
        alpha: 1 − the interval's nominal coverage.
        rng: a seeded generator for a bootstrap interval; None for a normal interval.
        n_boot: bootstrap resamples.

    >>> ips(np.array([1.0, 0.0]), np.array([2.0, 0.0])).estimate
    1.0
    """
    rewards, weights = _vectors(rewards, weights)
    return _ratio_estimate(
        weights * rewards,
        np.ones_like(weights),
        ess=effective_sample_size(weights),
        alpha=alpha,
        rng=rng,
        n_boot=n_boot,
    )


def snips(
    rewards: FloatArray,
    weights: FloatArray,
    *,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
    n_boot: int = 1000,
) -> Estimate:
    """Self-normalised IPS: ``Σ w·r / Σ w`` (0 when every weight is 0).

    Arguments as for :func:`ips`; the normal interval uses the delta method.

    >>> snips(np.array([1.0, 0.0]), np.array([2.0, 0.0])).estimate
    1.0
    """
    rewards, weights = _vectors(rewards, weights)
    return _ratio_estimate(
        weights * rewards,
        weights,
        ess=effective_sample_size(weights),
        alpha=alpha,
        rng=rng,
        n_boot=n_boot,
    )


def dm(
    target_pmf: FloatArray,
    predicted: FloatArray,
    *,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
    n_boot: int = 1000,
) -> Estimate:
    """The direct method: ``mean(Σ_a π(a|x_i)·q̂(x_i, a))``.

    Args:
        target_pmf: the evaluated policy's distribution per event, shape (n, K); rows sum to 1.
        predicted: the reward model's prediction per event and action, shape (n, K).
        alpha, rng, n_boot: as for :func:`ips`.

    >>> dm(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])).estimate
    0.5
    """
    target_pmf, predicted = _matrices(target_pmf, predicted)
    terms = np.sum(target_pmf * predicted, axis=1)
    n = float(terms.shape[0])
    return _ratio_estimate(terms, np.ones_like(terms), ess=n, alpha=alpha, rng=rng, n_boot=n_boot)


def dr(
    rewards: FloatArray,
    weights: FloatArray,
    target_pmf: FloatArray,
    predicted: FloatArray,
    chosen: npt.NDArray[np.int64],
    *,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
    n_boot: int = 1000,
) -> Estimate:
    """Doubly robust: ``mean(Σ_a π(a|x_i)·q̂(x_i, a) + w_i·(r_i − q̂(x_i, a_i)))``.

    Args:
        rewards: logged rewards, shape (n,).
        weights: importance weights of the logged actions, shape (n,).
        target_pmf: the evaluated policy's distribution per event, shape (n, K).
        predicted: reward model predictions, shape (n, K).
        chosen: column of the logged action in each row, shape (n,), values in [0, K).
        alpha, rng, n_boot: as for :func:`ips`.

    >>> dr(np.array([1.0]), np.array([2.0]), np.array([[1.0, 0.0]]),
    ...    np.array([[0.5, 0.0]]), np.array([0])).estimate
    1.5
    """
    rewards, weights = _vectors(rewards, weights)
    target_pmf, predicted = _matrices(target_pmf, predicted)
    chosen = np.asarray(chosen, dtype=np.int64)
    rows = np.arange(rewards.shape[0])
    if target_pmf.shape[0] != rewards.shape[0] or chosen.shape != rewards.shape:
        raise ValueError("rewards, weights, chosen and the matrices' rows must agree")
    terms = np.sum(target_pmf * predicted, axis=1) + weights * (rewards - predicted[rows, chosen])
    return _ratio_estimate(
        terms,
        np.ones_like(terms),
        ess=effective_sample_size(weights),
        alpha=alpha,
        rng=rng,
        n_boot=n_boot,
    )


def _vectors(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError("expected two vectors of the same length")
    return x, y


def _matrices(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError("expected two (n, K) matrices of the same shape")
    return x, y
