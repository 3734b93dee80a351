"""Offline evaluation of candidate policies on logged joined events (Personalizer's
counterfactual evaluation), by progressive validation.

Each candidate starts from a fresh model and walks the logged events in order: it first gives
its distribution for the event (its probability of the logged action, over the logged
propensity, is the importance weight), then learns the event. So it is always judged on events
it has not seen, as it would have been online, and the IPS and SNIPS estimates of
:mod:`bandit.estimators` apply. Per-event terms are also summed into 5-minute buckets, enough
to rebuild either estimate, with the same normal interval, over any union of buckets (the time
series Personalizer reports).

Pure: events come from a callable (so a store can page them), and nothing reads the clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from bandit import estimators
from bandit.config import LearningMode, ServiceConfiguration
from bandit.estimators import Estimate, FloatArray
from bandit.events import JoinedEvent, RankRequest
from bandit.exploration import served_distribution
from bandit.policy import Policy, PolicyFactory

BUCKET_SECONDS = 300.0
"""Width of the time buckets the per-event terms are summed in (5 minutes)."""

Events = Callable[[], Iterable[JoinedEvent]]
"""Yields the logged joined events in log order; called once per candidate."""


class PolicySource(StrEnum):
    """Where an evaluated policy came from (Personalizer's ``policySource``)."""

    ONLINE = "Online"
    BASELINE = "Baseline"
    RANDOM = "Random"
    CUSTOM = "Custom"
    OPTIMIZED = "OfflineExperimentation"


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A policy to evaluate.

    Attributes:
        name, arguments, source: how results name it.
        factory: builds the fresh policy (``factory(None)``).
        epsilon: when not None the policy's distribution goes through the exploration caps with
            this budget, as the service would serve it in Online mode; when None it is used as
            returned, with excluded actions masked out.
        min_propensity: the caps' requested floor.
    """

    name: str
    arguments: str
    source: PolicySource
    factory: PolicyFactory
    epsilon: float | None = None
    min_propensity: float = 0.0

    def configuration(self) -> ServiceConfiguration | None:
        """The caps the candidate is served under, as a service configuration (None: uncapped).

        Raises:
            InvalidServiceConfiguration: ``epsilon`` or ``min_propensity`` is outside [0, 1].
        """
        if self.epsilon is None:
            return None
        return ServiceConfiguration(
            exploration_percentage=self.epsilon, min_propensity=self.min_propensity
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    """Sums of one time bucket's per-event terms (w = importance weight, r = reward).

    ``start`` is the bucket's start (seconds since the epoch, a multiple of the width).
    """

    start: float
    n: int
    wr: float
    w: float
    wr2: float
    w2: float
    wwr: float
    nonzero: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyResult:
    """A candidate's estimated value over the whole window, and its buckets in time order."""

    name: str
    arguments: str
    source: PolicySource
    ips: Estimate
    snips: Estimate
    buckets: tuple[Bucket, ...]


def served_pmf(
    policy: Policy, request: RankRequest, config: ServiceConfiguration | None
) -> list[float]:
    """A candidate's distribution for ``request``, as evaluated.

    With ``config`` (:meth:`Candidate.configuration`): what Online serving would serve under
    its caps, by :func:`bandit.exploration.served_distribution`. The logged request's
    ``maxExploration`` is not applied, so every candidate is valued at the same budget. Without:
    the policy's pmf as it is, through :func:`masked_pmf`.
    """
    if config is None:
        return masked_pmf(policy.predict_one(request), request.excluded_mask())
    capped = served_distribution(
        policy, request, config, mode=LearningMode.ONLINE, max_exploration=None
    )
    return list(capped.pmf)


def masked_pmf(pmf: Sequence[float], excluded: Sequence[bool]) -> list[float]:
    """``pmf`` with excluded actions (and negative or non-finite entries) at 0, renormalised;
    uniform over the non-excluded actions when nothing is left.

    >>> masked_pmf([0.5, 0.25, 0.25], [True, False, False])
    [0.0, 0.5, 0.5]
    """
    masked = [
        0.0 if ex or not math.isfinite(p) else max(p, 0.0)
        for p, ex in zip(pmf, excluded, strict=True)
    ]
    mass = sum(masked)
    if mass <= 0.0:
        allowed = len(masked) - sum(excluded)
        return [0.0 if ex else 1.0 / allowed for ex in excluded]
    return [p / mass for p in masked]


StepObserver = Callable[[JoinedEvent, Sequence[float]], None]
"""Called with each event and the candidate's distribution for it, before it learns it."""


def replay(
    events: Iterable[JoinedEvent],
    candidate: Candidate,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_step: StepObserver | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Progressive validation of one candidate from a fresh model.

    Returns:
        ``(times, weights, rewards)``, each of shape (n,): the decision time, the importance
        weight π(logged action)/propensity, and the logged reward of every event.

    Raises:
        InterruptedError: ``should_stop`` returned true.
    """
    policy = candidate.factory(None)
    config = candidate.configuration()
    times: list[float] = []
    weights: list[float] = []
    rewards: list[float] = []
    for i, event in enumerate(events):
        if should_stop is not None and i % 256 == 0 and should_stop():
            raise InterruptedError("the evaluation was stopped")
        decision = event.decision
        request = decision.request
        pmf = served_pmf(policy, request, config)
        if on_step is not None:
            on_step(event, pmf)
        times.append(decision.timestamp)
        weights.append(pmf[decision.chosen_index] / decision.propensity)
        rewards.append(event.reward)
        policy.learn_one(event)
    return np.asarray(times), np.asarray(weights), np.asarray(rewards)


def buckets(times: FloatArray, weights: FloatArray, rewards: FloatArray) -> tuple[Bucket, ...]:
    """Sum per-event terms into :data:`BUCKET_SECONDS` buckets, in time order.

    >>> b = buckets(np.array([0.0, 10.0, 400.0]), np.array([1.0, 2.0, 0.0]), np.ones(3))
    >>> [(x.start, x.n, x.wr, x.nonzero) for x in b]
    [(0.0, 2, 3.0, 2), (300.0, 1, 0.0, 0)]
    """
    if times.size == 0:
        return ()
    keys = np.floor(times / BUCKET_SECONDS) * BUCKET_SECONDS
    wr = weights * rewards
    out = []
    for key in np.unique(keys):
        m = keys == key
        w, t = weights[m], wr[m]
        out.append(
            Bucket(
                start=float(key),
                n=int(m.sum()),
                wr=float(t.sum()),
                w=float(w.sum()),
                wr2=float((t * t).sum()),
                w2=float((w * w).sum()),
                wwr=float((w * t).sum()),
                nonzero=int((w > 0).sum()),
            )
        )
    return tuple(out)


def evaluate(
    events: Events,
    candidates: Sequence[Candidate],
    *,
    alpha: float = 0.05,
    should_stop: Callable[[], bool] | None = None,
) -> list[PolicyResult]:
    """Replay every candidate over the same events; IPS and SNIPS with (1 − alpha) intervals."""
    results = []
    for candidate in candidates:
        times, weights, rewards = replay(events(), candidate, should_stop=should_stop)
        results.append(
            PolicyResult(
                name=candidate.name,
                arguments=candidate.arguments,
                source=candidate.source,
                ips=estimators.ips(rewards, weights, alpha=alpha),
                snips=estimators.snips(rewards, weights, alpha=alpha),
                buckets=buckets(times, weights, rewards),
            )
        )
    return results


def combine(parts: Iterable[Bucket], alpha: float = 0.05) -> tuple[Estimate, Estimate] | None:
    """IPS and SNIPS estimates over a union of buckets (None when they hold no events).

    The normal intervals equal those :func:`bandit.estimators.ips` and
    :func:`bandit.estimators.snips` give on the same events.
    """
    items = list(parts)
    n = sum(b.n for b in items)
    if n == 0:
        return None
    wr, w = sum(b.wr for b in items), sum(b.w for b in items)
    wr2, w2, wwr = (sum(b.wr2 for b in items), sum(b.w2 for b in items), sum(b.wwr for b in items))
    ess = w * w / w2 if w2 > 0 else 0.0
    ips_value = wr / n
    ips_var = max(wr2 - n * ips_value * ips_value, 0.0) / (n - 1) if n > 1 else math.inf
    snips_value = wr / w if w != 0 else 0.0
    mean_w = w / n if w != 0 else 1.0
    spread = max(wr2 - 2 * snips_value * wwr + snips_value**2 * w2, 0.0) / mean_w**2
    snips_var = spread / (n - 1) if n > 1 else math.inf
    out = []
    for value, var in ((ips_value, ips_var), (snips_value, snips_var)):
        se = math.sqrt(var / n)
        low, high = estimators.normal_interval(value, se, alpha)
        out.append(Estimate(estimate=value, ci_low=low, ci_high=high, std_error=se, ess=ess, n=n))
    return out[0], out[1]


def optimization_grid() -> list[tuple[str, str]]:
    """The learning settings an optimizing evaluation tries: (name, arguments) pairs.

    Exploration algorithm × learning rate × interactions, named ``Hyper1``… as Personalizer
    named its discovered settings.

    >>> len(optimization_grid()), optimization_grid()[0]
    (12, ('Hyper1', '--cb_explore_adf --cb_type mtr --power_t 0 -l 0.001 -q ::'))
    """
    grid: list[tuple[str, str]] = []
    for explore in ("", "--squarecb --gamma_scale 10"):
        for rate in ("0.001", "0.01", "0.1"):
            for interactions in ("-q ::", ""):
                parts = ["--cb_explore_adf --cb_type mtr --power_t 0", f"-l {rate}"]
                parts += [p for p in (interactions, explore) if p]
                grid.append((f"Hyper{len(grid) + 1}", " ".join(parts)))
    return grid


def best(results: Sequence[PolicyResult], sources: Iterable[PolicySource]) -> PolicyResult | None:
    """The result with the highest SNIPS estimate among those from ``sources``."""
    allowed = set(sources)
    eligible = [r for r in results if r.source in allowed and math.isfinite(r.snips.estimate)]
    return max(eligible, key=lambda r: r.snips.estimate, default=None)
