"""Apprentice-mode metrics: how often the learned policy would have chosen the baseline.

In Apprentice mode the loop serves the baseline (the first non-excluded action) and keeps
learning from the real rewards. Before the learner learns each such event, the policy it has
so far is asked which action it would have served; when that is the baseline, the event is
*imitated*. Personalizer reports the totals as ``latestApprenticeModeMetrics``: the reward the
baseline earned on all events, and on the imitated ones.

Personalizer always serves the baseline in Apprentice mode. banditd can also explore a little
(``apprenticeExplorationPercentage`` ε_a, :func:`bandit.exploration.apprentice_pmf`), which
makes the apprentice logs valid off-policy data: :mod:`bandit.graduation` values the learned
policy on them. The counts then hold the rewards of the actions actually served, and an event
is imitated when the learned policy's greedy action is the baseline, whichever action was
served.
"""

from __future__ import annotations

from bandit.config import LearningMode
from bandit.events import JoinedEvent
from bandit.exploration import apply_caps
from bandit.policy import Policy


def greedy_index(policy: Policy, event: JoinedEvent) -> int:
    """``policy``'s greedy action for the event's request.

    The most probable non-excluded action, lowest index on ties, as in
    :func:`bandit.exploration.apply_caps`.
    """
    request = event.decision.request
    pmf = policy.predict_one(request)
    return apply_caps(pmf, request.excluded_mask(), 0.0, 0.0).greedy_index


def imitates(policy: Policy, event: JoinedEvent) -> bool:
    """Whether ``policy``'s greedy action for the event's request is the baseline.

    Without apprentice exploration the baseline is always the action served.
    """
    return greedy_index(policy, event) == event.decision.request.baseline_index()


def is_apprentice(event: JoinedEvent) -> bool:
    """Whether the event was served in Apprentice mode."""
    return event.decision.learning_mode is LearningMode.APPRENTICE
