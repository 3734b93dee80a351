"""The distribution banditd serves: learning mode, request budget and exploration caps (DESIGN
§2.4, §3).

:func:`served_distribution` is the one place that decides it, for serving, the watcher, offline
evaluation and the simulator alike: the learning mode says where the pmf comes from and which
budget applies, the request's ``maxExploration`` may lower that budget, and :func:`apply_caps`
enforces the caps.

Given the policy's probabilities p over K offered actions, the excluded mask and a budget ε, the
served distribution q satisfies:

* q sums to 1 (|Σ−1| ≤ 1e-6) and excluded actions get 0;
* the greedy action g (the most probable non-excluded action, lowest index on ties) keeps at
  least 1−ε: the total mass off g is ≤ ε;
* every non-excluded action gets q ≥ floor, where
  ``floor = min(min_propensity, ε/(K'−1), 1/K')`` for ε > 0 and K' non-excluded actions
  (0 when ε = 0). The 1/K' term only binds when ε > (K'−1)/K', where no distribution could
  give every action ε/(K'−1).

So importance weights of served decisions are bounded by 1/floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bandit.config import LearningMode, ServiceConfiguration
from bandit.events import RankRequest
from bandit.policy import Policy


@dataclass(frozen=True, slots=True)
class Capped:
    """A capped distribution, its greedy action and the floor it honours."""

    pmf: tuple[float, ...]
    greedy_index: int
    floor: float


def propensity_floor(epsilon: float, n_allowed: int, min_propensity: float) -> float:
    """The smallest probability each non-excluded action is served with.

    >>> propensity_floor(0.2, 10, 0.01)
    0.01
    >>> round(propensity_floor(0.2, 10, 0.5), 6)
    0.022222
    >>> propensity_floor(0.0, 10, 0.5)
    0.0
    """
    if epsilon <= 0.0 or n_allowed <= 1:
        return 0.0
    return min(min_propensity, epsilon / (n_allowed - 1), 1.0 / n_allowed)


def apply_caps(
    pmf: Sequence[float],
    excluded: Sequence[bool],
    epsilon: float,
    min_propensity: float,
) -> Capped:
    """Cap exploration at ``epsilon`` and lift every offered action to the floor.

    Args:
        pmf: the policy's probabilities, one per offered action (need not sum to 1; negative or
            non-finite entries count as 0).
        excluded: for each action, whether it must get probability 0.
        epsilon: the exploration budget in [0, 1].
        min_propensity: the requested floor.

    Returns:
        The served distribution (same length as ``pmf``), its greedy index and the floor.

    Raises:
        ValueError: lengths differ, or every action is excluded.

    >>> [round(p, 6) for p in apply_caps([0.1, 0.6, 0.3], [False, False, False], 0.2, 0.05).pmf]
    [0.066667, 0.8, 0.133333]
    >>> apply_caps([0.5, 0.5], [True, False], 0.2, 0.05).pmf
    (0.0, 1.0)
    """
    k = len(pmf)
    if len(excluded) != k:
        raise ValueError("pmf and excluded differ in length")
    epsilon = min(max(epsilon, 0.0), 1.0)
    if k > 1 and not any(excluded):
        # Fast path: a pmf that already honours every invariant (an ε-greedy policy's with the
        # service's ε always does) is served as it is.
        total = sum(pmf)
        if math.isfinite(total) and abs(total - 1.0) <= 1e-6:
            greedy = max(range(k), key=pmf.__getitem__)  # the first maximum: lowest index
            floor = propensity_floor(epsilon, k, min_propensity)
            if min(pmf) >= floor and total - pmf[greedy] <= min(epsilon, 1.0 - floor):
                # The greedy action takes exactly what the others leave, as on the full path
                # (a pmf summing to 1 − 1e-16 would otherwise be served as it is).
                served = list(pmf)
                served[greedy] = 0.0
                served[greedy] = 1.0 - sum(served)
                return Capped(pmf=tuple(served), greedy_index=greedy, floor=floor)
    # Plain loops below: this runs for every rank the fast path turns away (a fresh model's
    # uniform pmf, say), and generator or lambda calls per action cost more than the arithmetic.
    allowed = [i for i in range(k) if not excluded[i]]
    if not allowed:
        raise ValueError("every action is excluded")
    q = [0.0] * k
    total = 0.0
    # The greedy action is the input's argmax (lowest index on ties), chosen before normalising:
    # dividing can round two nearly equal probabilities to one value.
    greedy = allowed[0]
    best = -1.0
    for i in allowed:
        v = pmf[i]
        if v > 0.0 and v != math.inf:  # NaN, negatives and infinities count as 0
            q[i] = v
            total += v
            if v > best:
                greedy, best = i, v
    if total <= 0.0 or total == math.inf:
        if total > 0.0:  # finite values summing past the float range
            scale = max(q)
            total = 0.0
            for i in allowed:
                q[i] /= scale
                total += q[i]
        else:
            greedy = allowed[0]
            for i in allowed:
                q[i] = 1.0 / len(allowed)
            total = 1.0
    if total != 1.0:
        for i in allowed:
            q[i] /= total
    floor = propensity_floor(epsilon, len(allowed), min_propensity)
    if len(allowed) > 1:
        budget = min(epsilon, 1.0 - floor)
        off = 0.0
        for i in allowed:
            if i != greedy:
                if q[i] < floor:
                    q[i] = floor
                off += q[i]
        if off > budget:
            # Shrink only what lies above the floor, proportionally; (K'−1)·floor ≤ budget.
            # Scale as (room above the floor) / (mass above it): 1 − excess/spare would cancel
            # catastrophically for tiny budgets and could dip below the floor.
            others = [i for i in allowed if i != greedy]
            spare = sum(q[i] - floor for i in others)
            room = max(budget - len(others) * floor, 0.0)
            scale = room / spare if spare > 0 else 0.0
            for i in others:
                q[i] = floor + (q[i] - floor) * scale
        q[greedy] = 0.0
        q[greedy] = 1.0 - sum(q)
    else:
        q[greedy] = 1.0
    return Capped(pmf=tuple(q), greedy_index=greedy, floor=floor)


def apprentice_pmf(excluded: Sequence[bool], epsilon: float) -> list[float]:
    """The distribution Apprentice mode asks for, before the exploration caps.

    The baseline (the first non-excluded action) gets ``1 − epsilon`` and every other
    non-excluded action ``epsilon / (K' − 1)``; excluded actions get 0. With ``epsilon = 0``, or
    when only the baseline is offered, it is the baseline with probability 1. Sums to 1.

    Args:
        excluded: for each offered action, whether it must get probability 0 (not all true).
        epsilon: the apprentice exploration rate ε_a in [0, 1].

    >>> apprentice_pmf([False, False, False], 0.2)
    [0.8, 0.1, 0.1]
    >>> apprentice_pmf([True, False, False], 0.0)
    [0.0, 1.0, 0.0]
    """
    allowed = [i for i, is_excluded in enumerate(excluded) if not is_excluded]
    if not allowed:
        raise ValueError("every action is excluded")
    pmf = [0.0] * len(excluded)
    others = allowed[1:]
    if epsilon <= 0.0 or not others:
        pmf[allowed[0]] = 1.0
        return pmf
    pmf[allowed[0]] = 1.0 - epsilon
    share = epsilon / len(others)
    for i in others:
        pmf[i] = share
    return pmf


def served_distribution(
    policy: Policy,
    request: RankRequest,
    config: ServiceConfiguration,
    *,
    mode: LearningMode,
    max_exploration: float | None,
) -> Capped:
    """The distribution served for ``request`` in learning ``mode`` under ``config``'s caps.

    * ``Online``: ``policy``'s pmf, capped with ε = ``explorationPercentage``.
    * ``Apprentice``: :func:`apprentice_pmf` with ε = ``apprenticeExplorationPercentage``
      (the baseline with probability 1 when it is 0), capped with that ε.
    * ``LoggingOnly``: the baseline with probability 1 (ε = 0).

    ``max_exploration`` (the request's ``maxExploration``, or None) lowers ε, never raises it.
    ``policy`` is asked only in Online mode. The result honours every invariant of the module
    docstring with that ε and ``config.min_propensity``; the mode is passed apart from the
    configuration because the watcher and offline evaluation value the learned policy as Online
    serving would, whatever mode the loop is in.

    Args:
        policy: the model that serves in Online mode.
        request: the rank request; its excluded actions get 0.
        config: supplies the budgets and the requested floor (``min_propensity``).
        mode: the learning mode to serve in.
        max_exploration: the request's budget, or None for the mode's budget as it is.

    Raises:
        ValueError: every action is excluded.
    """
    excluded = request.excluded_mask()
    if mode is LearningMode.ONLINE:
        epsilon = config.exploration_percentage
    elif mode is LearningMode.APPRENTICE:
        epsilon = config.apprentice_exploration
    else:
        epsilon = 0.0
    if max_exploration is not None:
        epsilon = min(epsilon, max_exploration)
    if mode is LearningMode.ONLINE:
        pmf = policy.predict_one(request)
    else:
        pmf = apprentice_pmf(excluded, epsilon)
    return apply_caps(pmf, excluded, epsilon, config.min_propensity)
