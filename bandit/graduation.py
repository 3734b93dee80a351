"""Apprentice graduation: the learned policy's value against the baseline's, estimated from the
apprentice logs, and the rule that moves the loop from Apprentice to Online (DESIGN §3).

With apprentice exploration ε_a > 0 every non-excluded action has a logged probability > 0, so
the apprentice logs are valid off-policy data. For each such event, before the learner learns
it, the learner's current model names its greedy action ``g`` (progressive validation, as
:class:`bandit.loop.Learner`'s observer sees it). Two targets are valued, each deterministic:

* ``policy``: the learned policy's greedy choice, ``w = 1{a = g} / p``;
* ``baseline``: the first non-excluded action ``b``, ``w = 1{a = b} / p``;

with ``a`` the action served and ``p`` its logged propensity. Estimates are SNIPS, kept as
running sums (:class:`bandit.sequential.Moments`), and the improvement ``policy − baseline``
uses both targets' influence terms, covariance included. Because each event is scored by the
model as it was before learning that event, the policy estimate is the average value of the
successive models over the stream, and its terms form a martingale difference sequence. It
values the *greedy* choice: Online serves it with probability 1 − ε (``explorationPercentage``).

Events whose logged distribution leaves out an offered action (served with ε_a = 0, or with
``maxExploration`` 0) are skipped: they say nothing about actions the baseline never tries.

**Intervals: the anytime-valid confidence sequence of** :mod:`bandit.sequential` **, not
alpha-spending.** The graduation rule is checked after every learner batch, indefinitely; a
fixed-sample 95% interval checked that often would eventually clear zero by chance. The
normal-mixture confidence sequence (with its Bernstein term for large importance weights)
covers the running value at every n at once with probability ≥ 1 − α, so the chance of a
graduation on a policy that is not better is ≤ α however long Apprentice mode lasts. It is
tuned to be tightest at ``apprenticeGraduationMinEvents``, the first n a graduation may happen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bandit.estimators import Estimate
from bandit.events import MOMENT_VECTORS, JoinedEvent, MomentSums
from bandit.sequential import Moments

ALPHA = 0.05
"""1 − the coverage of the reported intervals, uniformly over the whole apprentice stream."""
POLICY, BASELINE = 0, 1


def evaluation_weights(event: JoinedEvent, greedy: int) -> tuple[float, float] | None:
    """Importance weights of the learned policy's greedy choice and of the baseline.

    Args:
        event: a joined apprentice event.
        greedy: the learned policy's greedy action for the event's request (its index).

    Returns:
        ``(w_policy, w_baseline)``, each ≥ 0; None when the logged distribution gives some
        non-excluded action probability 0 (the event cannot value every policy).

    >>> from bandit.events import Action, Decision, RankRequest
    >>> request = RankRequest(event_id="e", context_features=(),
    ...                       actions=(Action(id="a"), Action(id="b")))
    >>> decision = Decision(event_id="e", timestamp=0.0, request=request, pmf=(0.8, 0.2),
    ...                     chosen_index=1, model_version=1)
    >>> event = JoinedEvent(decision=decision, reward=1.0, reward_count=1, defaulted=False,
    ...                     joined_at=1.0)
    >>> evaluation_weights(event, greedy=1)
    (5.0, 0.0)
    """
    decision = event.decision
    request = decision.request
    pmf = decision.pmf
    excluded = request.excluded_mask()
    if any(not x and not p > 0.0 for p, x in zip(pmf, excluded, strict=True)):
        return None
    chosen = decision.chosen_index
    inverse = 1.0 / pmf[chosen]
    return (
        inverse if chosen == greedy else 0.0,
        inverse if chosen == request.baseline_index() else 0.0,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprenticeValue:
    """The learned policy against the baseline over the evaluated apprentice events.

    Estimates are nan (intervals unbounded) until enough events carry weight.

    Attributes:
        evaluated_events: apprentice events with full support that were scored.
        policy: SNIPS value of the learned policy's greedy choice, with its interval.
        baseline: SNIPS value of the baseline, with its interval.
        improvement: ``policy − baseline`` with its interval.
    """

    evaluated_events: int
    policy: Estimate
    baseline: Estimate
    improvement: Estimate


class ApprenticeEvaluation:
    """Running SNIPS of the learned policy and the baseline over apprentice events; O(1) per event.

    >>> evaluation = ApprenticeEvaluation()
    >>> for w_policy, w_baseline, reward in [(2.0, 0.0, 1.0), (0.0, 2.0, 0.0)] * 20:
    ...     evaluation.add_weights(w_policy, w_baseline, reward)
    >>> value = evaluation.value(horizon=100)
    >>> (value.evaluated_events, value.policy.estimate, value.improvement.estimate)
    (40, 1.0, 1.0)
    >>> value.improvement.ci_low > 0
    True
    """

    def __init__(self, moments: Moments | None = None) -> None:
        self.moments = moments if moments is not None else Moments(2)

    @property
    def n(self) -> int:
        """Events evaluated."""
        return self.moments.n

    def add(self, event: JoinedEvent, greedy: int) -> bool:
        """Score one event given the learned policy's greedy action; returns whether it counted."""
        weights = evaluation_weights(event, greedy)
        if weights is None:
            return False
        self.add_weights(weights[0], weights[1], event.reward)
        return True

    def add_weights(self, w_policy: float, w_baseline: float, reward: float) -> None:
        """Add one event's importance weights and reward."""
        self.moments.add((w_policy, w_baseline), reward)

    def value(self, horizon: float, alpha: float = ALPHA) -> ApprenticeValue:
        """The estimates, with confidence sequences at level ``alpha`` tightest at ``horizon``."""
        m = self.moments
        horizon = max(float(horizon), 2.0)
        return ApprenticeValue(
            evaluated_events=m.n,
            policy=m.estimate(POLICY, alpha, horizon),
            baseline=m.estimate(BASELINE, alpha, horizon),
            improvement=m.difference(POLICY, BASELINE, alpha, horizon),
        )

    def sums(self) -> MomentSums:
        """The running sums, as a record to store (infinities only before the first event)."""
        m = self.moments
        return MomentSums(
            n=m.n,
            rmin=m.rmin,
            rmax=m.rmax,
            **{name: tuple(getattr(m, name)) for name in MOMENT_VECTORS},
        )

    @classmethod
    def from_sums(cls, sums: MomentSums) -> ApprenticeEvaluation:
        """Restore :meth:`sums` output."""
        moments = Moments(2)
        moments.n, moments.rmin, moments.rmax = sums.n, sums.rmin, sums.rmax
        for name in MOMENT_VECTORS:
            setattr(moments, name, [float(v) for v in getattr(sums, name)])
        return cls(moments)


def graduates(value: ApprenticeValue, min_events: int) -> bool:
    """Whether the loop should move to Online: enough events, and the improvement's lower
    confidence bound above zero.

    >>> nan = float("nan")
    >>> unknown = Estimate(estimate=nan, ci_low=nan, ci_high=nan, std_error=nan, ess=0.0, n=0)
    >>> graduates(ApprenticeValue(evaluated_events=0, policy=unknown, baseline=unknown,
    ...                           improvement=unknown), 1)
    False
    """
    low = value.improvement.ci_low
    return value.evaluated_events >= min_events and math.isfinite(low) and low > 0.0
