"""Factories the whole suite shares: a rank request, the decision logged for it and the joined
event learned from it. Plain functions, imported by name; each test passes as keywords only what
it varies.

>>> d = decision("e", k=2, at=10.0, wait=5.0)
>>> [a.id for a in d.request.actions], d.pmf, d.close_at
(['a0', 'a1'], (0.5, 0.5), 15.0)
>>> joined(d, 0.5, seq=3).joined_at
15.0
"""

from __future__ import annotations

from collections.abc import Callable

from bandit import join as rules
from bandit.config import LearningMode
from bandit.events import Action, Decision, JoinedEvent, JSONObject, RankRequest


def item_features(index: int) -> JSONObject:
    """The default features of action ``a{index}``: its id in the ``item`` namespace."""
    return {"item": {"id": f"a{index}"}}


def rank_request(
    event_id: str = "e",
    *,
    k: int = 4,
    context: tuple[JSONObject, ...] | None = None,
    features: Callable[[int], JSONObject] | None = item_features,
    excluded: tuple[str, ...] = (),
    defer: bool = False,
    max_exploration: float | None = None,
) -> RankRequest:
    """A request offering ``k`` actions with ids ``a0 … a{k-1}``, in that order.

    Args:
        event_id: the request's event id.
        k: the number of actions offered (≥ 1).
        context: the context features; by default one gold-tier user,
            ``({"user": {"tier": "gold"}},)``.
        features: the one features object of action ``i``; None offers actions without
            features.
        excluded: ids of the excluded actions.
        defer: the request defers activation.
        max_exploration: the request's own exploration cap, if any.
    """
    return RankRequest(
        event_id=event_id,
        context_features=({"user": {"tier": "gold"}},) if context is None else context,
        actions=tuple(
            Action(id=f"a{i}", features=() if features is None else (features(i),))
            for i in range(k)
        ),
        excluded_action_ids=excluded,
        defer_activation=defer,
        max_exploration=max_exploration,
    )


def decision(
    event_id: str = "e",
    *,
    request: RankRequest | None = None,
    at: float = 0.0,
    wait: float = 0.0,
    pmf: tuple[float, ...] | None = None,
    chosen: int = 0,
    greedy: int = 0,
    model_version: int = 1,
    learning_mode: LearningMode = LearningMode.ONLINE,
    k: int = 4,
    context: tuple[JSONObject, ...] | None = None,
    defer: bool = False,
) -> Decision:
    """The decision logged at ``at`` for ``request``.

    The request is ``rank_request(event_id, k=k, context=context, defer=defer)`` unless given.
    An event that does not defer activation is active from ``at`` and its reward window closes
    ``wait`` seconds later; a deferred one is inactive, with neither time set.

    Args:
        pmf: the served distribution over the request's actions (len == number of actions,
            sums to 1 ± 1e-6); uniform by default.
        chosen: 0-based index of the served action.
        greedy: 0-based index of the action the policy ranked first.
    """
    if request is None:
        request = rank_request(event_id, k=k, context=context, defer=defer)
    n = len(request.actions)
    active = not request.defer_activation
    return Decision(
        event_id=event_id,
        timestamp=at,
        request=request,
        pmf=(1.0 / n,) * n if pmf is None else pmf,
        chosen_index=chosen,
        greedy_index=greedy,
        model_version=model_version,
        learning_mode=learning_mode,
        active=active,
        activated_at=at if active else None,
        close_at=rules.close_at(at, wait) if active else None,
    )


def joined(
    decision: Decision,
    reward: float = 1.0,
    *,
    seq: int = 0,
    at: float | None = None,
    defaulted: bool = False,
) -> JoinedEvent:
    """``decision`` joined with ``reward`` at ``at`` (by default when its window closed, or at
    the decision's time if it has none).

    A ``defaulted`` event counts no reward: ``reward`` is then the default reward learned.
    """
    if at is None:
        at = decision.timestamp if decision.close_at is None else decision.close_at
    return JoinedEvent(
        decision=decision,
        reward=reward,
        reward_count=0 if defaulted else 1,
        defaulted=defaulted,
        joined_at=at,
        seq=seq,
    )
