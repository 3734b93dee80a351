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

from dataclasses import dataclass, replace

from bandit.config import LearningMode
from bandit.events import JoinedEvent
from bandit.exploration import apply_caps
from bandit.policy import Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class ImitationCounts:
    """Totals over a set of apprentice events.

    Attributes:
        number_of_events: events learned in Apprentice mode.
        sum_of_rewards: their rewards (what the baseline earned).
        number_of_imitated_events: events where the learned policy's greedy action was the
            baseline.
        sum_of_imitated_rewards: the rewards of those events.
    """

    number_of_events: int = 0
    sum_of_rewards: float = 0.0
    number_of_imitated_events: int = 0
    sum_of_imitated_rewards: float = 0.0

    def add(self, reward: float, imitated: bool) -> ImitationCounts:
        """These counts with one more event.

        >>> ImitationCounts().add(0.5, True).add(1.0, False)
        ImitationCounts(number_of_events=2, sum_of_rewards=1.5, number_of_imitated_events=1, sum_of_imitated_rewards=0.5)
        """  # noqa: E501
        return ImitationCounts(
            number_of_events=self.number_of_events + 1,
            sum_of_rewards=self.sum_of_rewards + reward,
            number_of_imitated_events=self.number_of_imitated_events + imitated,
            sum_of_imitated_rewards=self.sum_of_imitated_rewards + (reward if imitated else 0.0),
        )

    @property
    def imitation_rate(self) -> float:
        """Share of events imitated, in [0, 1] (0 with no events)."""
        return (
            self.number_of_imitated_events / self.number_of_events if self.number_of_events else 0.0
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprenticeMetrics:
    """Apprentice totals since Apprentice mode was turned on, and of the last learner batch.

    Times are seconds since the epoch; ``last_processed_event_time`` is the decision time of
    the newest apprentice event learned (``start_time`` until one is).
    """

    start_time: float
    last_processed_event_time: float
    total: ImitationCounts = ImitationCounts()
    last_batch: ImitationCounts = ImitationCounts()

    def add(self, event: JoinedEvent, imitated: bool) -> ApprenticeMetrics:
        """These metrics with one more learned apprentice event in the total."""
        return replace(
            self,
            last_processed_event_time=max(self.last_processed_event_time, event.decision.timestamp),
            total=self.total.add(event.reward, imitated),
        )


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
