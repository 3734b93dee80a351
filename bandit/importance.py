"""Feature importance: how much a policy's estimated value drops without each namespace.

A namespace is a top-level key of a context or action feature object (VW keys namespaces on
them). For each namespace the candidate is replayed from a fresh model (progressive validation,
:mod:`bandit.evaluation`) on the same events with that namespace removed everywhere; its drop
is the SNIPS estimate with all features minus the estimate without it. Scores rescale the
drops to 0–100: the largest drop scores 100, no drop (or a gain) scores 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from bandit import estimators
from bandit.evaluation import Candidate, Events, replay
from bandit.events import Action, JoinedEvent, JSONObject


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceScore:
    """A namespace's importance.

    Attributes:
        namespace: the top-level feature key.
        score: 0 (least important) to 100 (the largest drop).
        drop: estimated value with every namespace minus without this one.
        value: estimated value without this namespace (SNIPS).
    """

    namespace: str
    score: float
    drop: float
    value: float


def namespaces(events: Iterable[JoinedEvent]) -> list[str]:
    """Every namespace used in the events' context and action features, sorted.

    Keys starting with ``_`` are ignored, as Personalizer ignores them.
    """
    found: set[str] = set()
    for event in events:
        request = event.decision.request
        for obj in request.context_features:
            found.update(k for k in obj if not k.startswith("_"))
        for action in request.actions:
            for obj in action.features:
                found.update(k for k in obj if not k.startswith("_"))
    return sorted(found)


def _drop(objects: tuple[JSONObject, ...], namespace: str) -> tuple[JSONObject, ...]:
    return tuple({k: v for k, v in obj.items() if k != namespace} for obj in objects)


def without(event: JoinedEvent, namespace: str) -> JoinedEvent:
    """The event with ``namespace`` removed from its context and every action.

    >>> from bandit.events import Decision, RankRequest
    >>> req = RankRequest(event_id="e", context_features=({"u": 1, "t": 2},),
    ...                   actions=(Action(id="a", features=({"u": 3, "i": 4},)),))
    >>> d = Decision(event_id="e", timestamp=0.0, request=req, pmf=(1.0,), chosen_index=0,
    ...              model_version=0)
    >>> e = without(JoinedEvent(decision=d, reward=1.0, reward_count=1, defaulted=False,
    ...                         joined_at=0.0), "u")
    >>> e.decision.request.context_features, e.decision.request.actions[0].features
    (({'t': 2},), ({'i': 4},))
    """
    request = event.decision.request
    stripped = replace(
        request,
        context_features=_drop(request.context_features, namespace),
        actions=tuple(
            Action(id=a.id, features=_drop(a.features, namespace)) for a in request.actions
        ),
    )
    return replace(event, decision=replace(event.decision, request=stripped))


def _value(
    events: Iterable[JoinedEvent], candidate: Candidate, stop: Callable[[], bool] | None
) -> float:
    _, weights, rewards = replay(events, candidate, should_stop=stop)
    return estimators.snips(rewards, weights).estimate


def importance(
    events: Events,
    candidate: Candidate,
    names: list[str],
    *,
    should_stop: Callable[[], bool] | None = None,
) -> list[NamespaceScore]:
    """Score each of ``names`` by the drop in ``candidate``'s value without it.

    Returns:
        One score per namespace, most important first (ties by name).
    """
    base = _value(events(), candidate, should_stop)
    drops = {}
    values = {}
    for name in names:
        values[name] = _value((without(e, name) for e in events()), candidate, should_stop)
        drops[name] = base - values[name]
    largest = max((d for d in drops.values() if d > 0), default=0.0)
    scores = [
        NamespaceScore(
            namespace=name,
            # min(): the largest drop divided by itself can round to 100.00000000000001.
            score=min(100.0 * max(drops[name], 0.0) / largest, 100.0) if largest > 0 else 0.0,
            drop=drops[name],
            value=values[name],
        )
        for name in names
    ]
    return sorted(scores, key=lambda s: (-s.score, -s.drop, s.namespace))
