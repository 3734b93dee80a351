"""The guardrail's fallback: the baseline action, exploring with the whole exploration budget.

:class:`policies.BaselinePolicy` puts probability 1 on the first non-excluded action; after the
caps that explores only at the propensity floor (``minPropensity``, 1 % by default). A fallback
that explored that little would starve the learner it is waiting for, and leave too few logged
decisions off the baseline to show, counterfactually, when the learned policy beats it again.
So the fallback is ε-greedy around the baseline: ``1 − ε`` on the baseline and ``ε`` spread
evenly over the other offered actions — the baseline served within the exploration cap, which
the caps then enforce as for any policy.
"""

from __future__ import annotations

from collections.abc import Callable

from bandit.events import JoinedEvent, RankRequest


class ExploringBaselinePolicy:
    """ε-greedy around the first non-excluded action; learns nothing.

    Args:
        epsilon: the exploration budget in [0, 1], or a callable giving it (read per request, so
            the service's current ``explorationPercentage`` applies).

    >>> from bandit.events import Action, RankRequest
    >>> request = RankRequest(event_id="e", context_features=(),
    ...                       actions=tuple(Action(id=i) for i in "abcd"),
    ...                       excluded_action_ids=("a",))
    >>> [round(p, 6) for p in ExploringBaselinePolicy(0.2).predict_one(request)]
    [0.0, 0.8, 0.1, 0.1]
    """

    arguments = "baseline-exploring"

    def __init__(self, epsilon: float | Callable[[], float]) -> None:
        self._epsilon = epsilon

    @property
    def epsilon(self) -> float:
        """The budget in force now, clipped to [0, 1]."""
        value = self._epsilon() if callable(self._epsilon) else self._epsilon
        return min(max(value, 0.0), 1.0)

    def predict_one(self, request: RankRequest) -> list[float]:
        mask = request.excluded_mask()
        baseline = request.baseline_index()
        others = len(mask) - sum(mask) - 1
        epsilon = self.epsilon if others > 0 else 0.0
        pmf = [0.0 if excluded else epsilon / max(others, 1) for excluded in mask]
        pmf[baseline] = 1.0 - epsilon
        return pmf

    def learn_one(self, event: JoinedEvent) -> None:
        del event

    def to_bytes(self) -> bytes:
        return b""
