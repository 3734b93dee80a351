"""Feature importance: how much a policy's estimated value drops without each feature.

A *feature* is a key of a namespace object (``{"user": {"tier": "gold", "visits": 3}}`` has
``user.tier`` and ``user.visits``); a namespace whose value is not an object (a string, a number,
an array) is one feature, named by the namespace alone. Keys starting with ``_`` are ignored, as
Personalizer ignores them. Context and action features are scored alike, by the name the client
sent.

Method (drop-one-feature replay): the candidate is replayed from a fresh model (progressive
validation, :mod:`bandit.evaluation`) on the same events once with every feature and once with
each feature removed everywhere; a feature's *drop* is the SNIPS estimate with all features minus
the estimate without it. Because every replay learns from scratch on the events it is judged on,
a drop is what the policy would have lost online without that feature — redundant features
(one can stand in for the other) both score low, which a permutation of a trained model's input
would not show either. Scores rescale the drops to 0–100: the largest drop scores 100, no drop
(or a gain) scores 0.

Interactions: for the :data:`INTERACTION_TOP` features with the largest drops, each pair is also
replayed without both. The pair's *interaction* is ``drop(a) + drop(b) − drop(a, b)`` (the
second-order difference of the value): positive when the value lies in the combination (each
feature is worth something only with the other), negative when either can stand in for the
other, about 0 when they add up. It is scored on the features' scale.

Stability: the events are split into their first and second half by count, and each half is
scored alone (features only). The result reports the Spearman rank correlation of the two
halves' drops clipped at 0 (as scores are: the order among features that do not help is noise,
and ties them), and the top-k overlap: the share of the k features each half ranks first that
both share, k being the number of features scoring at least :data:`IMPORTANT_SCORE` on all the
events (at least one).

Cost: ``1 + F + P`` replays of all N events and ``2 (1 + F)`` replays of N/2, for F features and
P = C(min(F, INTERACTION_TOP), 2) pairs: ``N (2 + 2F + P)`` learned events.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from bandit import estimators
from bandit.evaluation import Candidate, Events, replay
from bandit.events import Action, JoinedEvent, JSONObject

WHOLE = "*"
"""The feature name of a namespace whose value is not an object (the namespace is the feature)."""

INTERACTION_TOP = 3
"""Interactions are scored between pairs of this many most important features."""

IMPORTANT_SCORE = 25.0
"""Features scoring at least this on all events set k of the stability's top-k overlap."""


@dataclass(frozen=True, slots=True, order=True)
class Feature:
    """One feature: ``namespace`` and the key inside it (:data:`WHOLE` for the namespace)."""

    namespace: str
    name: str = WHOLE

    @property
    def label(self) -> str:
        """``namespace.name``, or the namespace alone for a whole namespace.

        >>> Feature("user", "tier").label, Feature("time").label
        ('user.tier', 'time')
        """
        return self.namespace if self.name == WHOLE else f"{self.namespace}.{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureScore:
    """A feature's (or a pair's) importance.

    Attributes:
        features: one feature, or two for an interaction.
        score: 0 (least important) to 100 (the largest single-feature drop).
        drop: estimated value with every feature minus without these (SNIPS).
        interaction: for a pair, ``drop(a) + drop(b) − drop(a, b)``; None for one feature.
        halves: the feature's drop on the first and on the second half (None for a pair).
    """

    features: tuple[Feature, ...]
    score: float
    drop: float
    interaction: float | None = None
    halves: tuple[float, float] | None = None

    @property
    def label(self) -> str:
        """The features' labels joined by ``^``."""
        return "^".join(f.label for f in self.features)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stability:
    """How much the ranking moves between the two halves of the events.

    Attributes:
        rank_correlation: Spearman's rho of the halves' drops clipped at 0 (None with fewer
            than two features, or when a half's clipped drops are all equal).
        top_k_overlap: share of the top k features of the two halves they have in common.
        k: the number of features that scored at least :data:`IMPORTANT_SCORE` (at least 1).
        events: the number of events in the first and in the second half.
    """

    rank_correlation: float | None
    top_k_overlap: float
    k: int
    events: tuple[int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Importance:
    """Every feature's and interaction's score, most important first, and the stability."""

    scores: list[FeatureScore]
    stability: Stability | None
    events: int
    replays: int


def features(events: Iterable[JoinedEvent]) -> list[Feature]:
    """Every feature used in the events' context and action features, sorted."""
    found: set[Feature] = set()

    def add(obj: JSONObject) -> None:
        for key, value in obj.items():
            if key.startswith("_"):
                continue
            if isinstance(value, dict):
                inner = [Feature(key, k) for k in value if not str(k).startswith("_")]
                found.update(inner or [Feature(key)])
            else:
                found.add(Feature(key))

    for event in events:
        request = event.decision.request
        for obj in request.context_features:
            add(obj)
        for action in request.actions:
            for obj in action.features:
                add(obj)
    return sorted(found)


def _strip_one(obj: JSONObject, dropped: frozenset[Feature]) -> JSONObject:
    out: JSONObject = {}
    for key, value in obj.items():
        if Feature(key) in dropped:
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if Feature(key, k) not in dropped}
        out[key] = value
    return out


def _strip(objects: tuple[JSONObject, ...], dropped: frozenset[Feature]) -> tuple[JSONObject, ...]:
    return tuple(_strip_one(obj, dropped) for obj in objects)


def without(event: JoinedEvent, dropped: Iterable[Feature]) -> JoinedEvent:
    """The event with the ``dropped`` features removed from its context and every action.

    >>> from bandit.events import Decision, RankRequest
    >>> req = RankRequest(event_id="e", context_features=({"u": {"a": 1, "b": 2}, "t": 2},),
    ...                   actions=(Action(id="a", features=({"u": {"a": 3}, "i": 4},)),))
    >>> d = Decision(event_id="e", timestamp=0.0, request=req, pmf=(1.0,), chosen_index=0,
    ...              model_version=0)
    >>> e = without(JoinedEvent(decision=d, reward=1.0, reward_count=1, defaulted=False,
    ...                         joined_at=0.0), [Feature("u", "a"), Feature("t")])
    >>> e.decision.request.context_features, e.decision.request.actions[0].features
    (({'u': {'b': 2}},), ({'u': {}, 'i': 4},))
    """
    gone = frozenset(dropped)
    request = event.decision.request
    stripped = replace(
        request,
        context_features=_strip(request.context_features, gone),
        actions=tuple(Action(id=a.id, features=_strip(a.features, gone)) for a in request.actions),
    )
    return replace(event, decision=replace(event.decision, request=stripped))


def _value(
    events: Iterable[JoinedEvent], candidate: Candidate, stop: Callable[[], bool] | None
) -> float:
    _, weights, rewards = replay(events, candidate, should_stop=stop)
    if weights.size == 0:
        return 0.0
    return estimators.snips(rewards, weights).estimate


def _drops(
    events: Events,
    candidate: Candidate,
    groups: Sequence[tuple[Feature, ...]],
    stop: Callable[[], bool] | None,
    base: float | None = None,
) -> tuple[float, list[float]]:
    """The value with every feature, and its drop without each group."""
    if base is None:
        base = _value(events(), candidate, stop)
    return base, [base - _value((without(e, g) for e in events()), candidate, stop) for g in groups]


def _scale(drop: float, largest: float) -> float:
    # min(): the largest drop divided by itself can round to 100.00000000000001.
    return min(100.0 * max(drop, 0.0) / largest, 100.0) if largest > 0 else 0.0


def _ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties at their average rank.

    >>> _ranks([0.5, 0.1, 0.5]).tolist()
    [2.5, 1.0, 2.5]
    """
    array = np.asarray(values, dtype=float)
    order = np.argsort(array, kind="stable")
    ranks = np.empty(len(array))
    ranks[order] = np.arange(1, len(array) + 1)
    for value in np.unique(array):
        tied = array == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (None when undefined).

    >>> spearman([1, 2, 3], [10, 20, 30]), spearman([1, 2, 3], [3, 2, 1]), spearman([1, 1], [1, 2])
    (1.0, -1.0, None)
    """
    if len(a) < 2:
        return None
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    rho = float(np.corrcoef(ra, rb)[0, 1])
    return rho if math.isfinite(rho) else None


def top_k_overlap(a: Sequence[float], b: Sequence[float], k: int) -> float:
    """Share of the k largest of ``a`` and of ``b`` (by index, ties by index) in common.

    >>> top_k_overlap([3, 2, 1, 0], [2, 3, 0, 1], 2), top_k_overlap([3, 2, 1], [0, 2, 3], 1)
    (1.0, 0.0)
    """

    def top(values: Sequence[float]) -> set[int]:
        return set(sorted(range(len(values)), key=lambda i: (-values[i], i))[:k])

    return len(top(a) & top(b)) / k if k > 0 else 1.0


def _split(events: Events, n: int) -> tuple[Events, Events]:
    half = n // 2

    def first() -> Iterator[JoinedEvent]:
        return itertools.islice(events(), half)

    def second() -> Iterator[JoinedEvent]:
        return itertools.islice(events(), half, n)

    return first, second


def importance(
    events: Events,
    candidate: Candidate,
    names: Sequence[Feature],
    *,
    interactions: bool = True,
    stability: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> Importance:
    """Score each of ``names`` (and pairs of the most important) by the drop without it.

    Args:
        events: yields the events in log order; called once per replay.
        candidate: the policy replayed.
        names: the features to score.
        interactions: also score pairs of the :data:`INTERACTION_TOP` most important.
        stability: also score each half of the events alone.

    Raises:
        InterruptedError: ``should_stop`` returned true.
    """
    n = sum(1 for _ in events())
    singles = [(f,) for f in names]
    base, drops = _drops(events, candidate, singles, should_stop)
    replays = 1 + len(singles)
    largest = max((d for d in drops if d > 0), default=0.0)
    halves: list[tuple[float, float]] | None = None
    summary = None
    if stability and len(names) > 0 and n >= 2:
        first, second = _split(events, n)
        _, one = _drops(first, candidate, singles, should_stop)
        _, two = _drops(second, candidate, singles, should_stop)
        replays += 2 * (1 + len(singles))
        halves = list(zip(one, two, strict=True))
        k = max(1, sum(_scale(d, largest) >= IMPORTANT_SCORE for d in drops))
        summary = Stability(
            rank_correlation=spearman([max(d, 0.0) for d in one], [max(d, 0.0) for d in two]),
            top_k_overlap=top_k_overlap(one, two, min(k, len(names))),
            k=min(k, len(names)),
            events=(n // 2, n - n // 2),
        )
    scores = [
        FeatureScore(
            features=group,
            score=_scale(drop, largest),
            drop=drop,
            halves=None if halves is None else halves[i],
        )
        for i, (group, drop) in enumerate(zip(singles, drops, strict=True))
    ]
    if interactions:
        by_drop = sorted(range(len(names)), key=lambda i: (-drops[i], names[i]))
        top = sorted(by_drop[: min(INTERACTION_TOP, len(names))])
        pairs = list(itertools.combinations(top, 2))
        groups = [(names[i], names[j]) for i, j in pairs]
        _, joint = _drops(events, candidate, groups, should_stop, base)
        replays += len(pairs)
        for (i, j), both in zip(pairs, joint, strict=True):
            value = drops[i] + drops[j] - both
            scores.append(
                FeatureScore(
                    features=(names[i], names[j]),
                    score=_scale(value, largest),
                    drop=both,
                    interaction=value,
                )
            )
    scores.sort(key=lambda s: (-s.score, len(s.features), -s.drop, s.label))
    return Importance(scores=scores, stability=summary, events=n, replays=replays)
