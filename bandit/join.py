"""Join rules: when a decision's reward window closes and what reward it is learned with.

The store finds candidates; these pure functions decide. Rules (DESIGN §2.7–2.9):

* The window opens at rank time, or at activation for a deferred event, and lasts
  ``rewardWaitTime``. A deferred event activated after its would-be window closed is expired
  and never learned, as is one never activated.
* A reward is counted when it was stored before the window closed and before the event was
  joined; otherwise it is kept as late and never learned. For a deferred event that includes a
  reward that arrived before its activation (clients may race the two calls); if the event is
  never activated, or expires, its rewards are kept but never learned.
* ``earliest`` keeps the first counted reward, ``sum`` adds them; no counted reward means the
  default reward.
* Every event waits its full window, so fast rewards are not favoured over slow ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bandit.config import Aggregation
from bandit.events import (
    Activation,
    ActivationOutcome,
    Decision,
    JoinedEvent,
    Reward,
    RewardOutcome,
)

JOIN_GRACE = 2.0
"""Seconds past ``close_at`` before an event is joined, so rewards still in a write batch land."""


def close_at(start: float, wait: float) -> float:
    """End of a reward window that opens at ``start``."""
    return start + wait


def is_late(close_at: float | None, received_at: float, *, joined: bool) -> bool:
    """Whether a reward arriving at ``received_at`` misses a window closing at ``close_at``.

    ``close_at`` is None while a deferred event waits for activation: not late yet.
    """
    if joined:
        return True
    return close_at is not None and received_at > close_at


def reward_outcome(*, active: bool, late: bool) -> RewardOutcome:
    """What storing a reward of a known event did: late, stored, or stored for an event that
    is not active yet (a deferred one).

    >>> reward_outcome(active=False, late=False)
    <RewardOutcome.INACTIVE: 'inactive'>
    """
    if late:
        return RewardOutcome.LATE
    return RewardOutcome.STORED if active else RewardOutcome.INACTIVE


def activate(decision: Decision, activation: Activation) -> tuple[Decision, ActivationOutcome]:
    """Apply an activation to a decision (idempotent).

    >>> from bandit.events import Action, RankRequest
    >>> req = RankRequest(event_id="e", context_features=(), actions=(Action(id="a"),),
    ...                   defer_activation=True)
    >>> d = Decision(event_id="e", timestamp=0.0, request=req, pmf=(1.0,), chosen_index=0,
    ...              model_version=0, active=False)
    >>> activate(d, Activation(event_id="e", at=5.0, wait=10.0))[1].value
    'activated'
    >>> activate(d, Activation(event_id="e", at=11.0, wait=10.0))[1].value
    'expired'
    """
    if decision.active:
        return decision, ActivationOutcome.ALREADY_ACTIVE
    if activation.at > decision.timestamp + activation.wait:
        return decision, ActivationOutcome.EXPIRED
    activated = replace(
        decision,
        active=True,
        activated_at=activation.at,
        close_at=close_at(activation.at, activation.wait),
    )
    return activated, ActivationOutcome.ACTIVATED


def aggregate(values: Sequence[float], aggregation: Aggregation) -> float:
    """Combine the counted rewards of one event, in arrival order.

    >>> aggregate([0.5, 1.0], Aggregation.EARLIEST)
    0.5
    >>> aggregate([0.5, 1.0], Aggregation.SUM)
    1.5
    """
    if not values:
        raise ValueError("no rewards to aggregate")
    if aggregation is Aggregation.EARLIEST:
        return values[0]
    return float(sum(values))


def join(
    decision: Decision,
    rewards: Sequence[Reward],
    *,
    aggregation: Aggregation,
    default_reward: float,
    now: float,
) -> JoinedEvent:
    """Build the joined event of a closed window from its counted rewards (in arrival order)."""
    values = [r.value for r in rewards]
    if values:
        return JoinedEvent(
            decision=decision,
            reward=aggregate(values, aggregation),
            reward_count=len(values),
            defaulted=False,
            joined_at=now,
        )
    return JoinedEvent(
        decision=decision, reward=default_reward, reward_count=0, defaulted=True, joined_at=now
    )


def is_due(decision: Decision, now: float, grace: float = JOIN_GRACE) -> bool:
    """Whether the decision's window closed at least ``grace`` seconds ago."""
    return decision.active and decision.close_at is not None and decision.close_at + grace <= now


def rejoin(
    event: JoinedEvent,
    rewards: Sequence[Reward],
    *,
    aggregation: Aggregation,
    default_reward: float,
) -> JoinedEvent:
    """A joined event's reward recomputed under new reward settings (for a retrain).

    ``rewards`` are the event's counted rewards as stored. An event that got none takes the new
    default reward; one whose rewards are not stored (imported from a log) keeps its reward.

    >>> from bandit.events import Action, RankRequest
    >>> req = RankRequest(event_id="e", context_features=(), actions=(Action(id="a"),))
    >>> d = Decision(event_id="e", timestamp=0.0, request=req, pmf=(1.0,), chosen_index=0,
    ...              model_version=0)
    >>> e = JoinedEvent(decision=d, reward=0.0, reward_count=0, defaulted=True, joined_at=1.0)
    >>> rejoin(e, [], aggregation=Aggregation.SUM, default_reward=-0.5).reward
    -0.5
    """
    if event.defaulted:
        return replace(event, reward=default_reward)
    if not rewards:
        return event
    return replace(event, reward=aggregate([r.value for r in rewards], aggregation))
