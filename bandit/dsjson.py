"""DSJSON, VW's decision-service JSON: the one place requests and joined events become VW input.

A rank request becomes one ``c`` object: every ``contextFeatures`` object is merged into ``c``
(its top-level keys are namespaces) and each action's ``features`` objects are merged into one
element of ``c._multi``. Keys starting with ``_`` are dropped, as Personalizer ignores them and
VW reserves them. A joined event adds the label: ``_label_cost = −reward``,
``_label_probability``, ``_labelIndex`` (0-based), ``_label_Action`` (1-based), and the logged
``a``/``p`` arrays (chosen action first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bandit.events import Action, Decision, JoinedEvent, JSONObject, RankRequest


def merge_features(objects: tuple[JSONObject, ...]) -> JSONObject:
    """Merge feature objects into one; later keys win; ``_``-prefixed keys are dropped.

    >>> merge_features(({"user": {"a": 1}}, {"_hidden": 1, "time": "am"}))
    {'user': {'a': 1}, 'time': 'am'}
    """
    if len(objects) == 1:
        only = objects[0]
        # The common case, one object without reserved keys, needs no copy (nothing mutates it).
        # A loop, not any(<generator>): this runs for every action of every rank and learn.
        for key in only:
            if key.startswith("_"):
                break
        else:
            return only
    merged: JSONObject = {}
    for obj in objects:
        for key, value in obj.items():
            if not key.startswith("_"):
                merged[key] = value
    return merged


def context_object(request: RankRequest) -> JSONObject:
    """The DSJSON ``c`` object: shared context plus one ``_multi`` entry per action."""
    c = dict(merge_features(request.context_features))
    c["_multi"] = [merge_features(a.features) for a in request.actions]
    return c


def context_line(request: RankRequest) -> str:
    """The unlabelled DSJSON line VW predicts on."""
    return json.dumps({"c": context_object(request)}, separators=(",", ":"))


def iso_time(timestamp: float) -> str:
    """Seconds since the epoch as an ISO-8601 UTC string with milliseconds.

    >>> iso_time(0.0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def joined_object(event: JoinedEvent) -> dict[str, Any]:
    """The labelled DSJSON object of a joined event."""
    d = event.decision
    order = [d.chosen_index] + [i for i in range(len(d.pmf)) if i != d.chosen_index]
    return {
        "_label_cost": -event.reward,
        "_label_probability": d.propensity,
        "_label_Action": d.chosen_index + 1,
        "_labelIndex": d.chosen_index,
        "o": [{"v": event.reward, "EventId": d.event_id}] if not event.defaulted else [],
        "Timestamp": iso_time(d.timestamp),
        "Version": "1",
        "EventId": d.event_id,
        "a": [i + 1 for i in order],
        "c": context_object(d.request),
        "p": [d.pmf[i] for i in order],
        "VWState": {"m": str(d.model_version)},
        "_skipLearn": False,
    }


def learn_object(event: JoinedEvent) -> dict[str, Any]:
    """What VW needs to learn a joined event: the label fields, ``a``/``p`` and ``c``.

    The same label as :func:`joined_object` without the log-only fields (timestamp, ids,
    outcomes), which VW ignores and which cost time on every learned event.
    """
    d = event.decision
    chosen = d.chosen_index
    # The chosen action moved to the front, the others in order (list methods rather than
    # comprehensions: this runs for every learned event).
    actions = list(range(1, len(d.pmf) + 1))
    actions.insert(0, actions.pop(chosen))
    pmf = list(d.pmf)
    pmf.insert(0, pmf.pop(chosen))
    return {
        "_label_cost": -event.reward,
        "_label_probability": d.pmf[chosen],
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "a": actions,
        "c": context_object(d.request),
        "p": pmf,
    }


def joined_line(event: JoinedEvent) -> str:
    """The labelled DSJSON line VW learns from."""
    return json.dumps(joined_object(event), separators=(",", ":"))


# --- Reading logged DSJSON (off-policy evaluation) -------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedEvent:
    """One labelled DSJSON line read back: what was offered, served, chosen and earned.

    Attributes:
        event_id: the logged ``EventId``.
        timestamp: decision time in seconds since the epoch (0.0 when not logged).
        request: the request rebuilt from ``c``: one context object (``c`` without ``_multi``)
            and one feature object per ``_multi`` entry. Action ids come from an entry's ``_id``
            or ``_tag`` when present, else its 0-based index; actions logged with probability 0
            are excluded.
        pmf: the logged distribution over the actions in request order (sums to 1 ± 1e-6 when
            the log carries the full ``a``/``p`` arrays).
        chosen_index: 0-based index of the served action.
        propensity: the logged probability of the served action (> 0).
        reward: ``−_label_cost``.
        defaulted: no reward came and the default reward was learned (``o`` logged empty).
        model_version: the serving model version from ``VWState.m`` (0 when absent).
        skip_learn: the line carries ``_skipLearn: true``.
    """

    event_id: str
    timestamp: float
    request: RankRequest
    pmf: tuple[float, ...]
    chosen_index: int
    propensity: float
    reward: float
    defaulted: bool = False
    model_version: int = 0
    skip_learn: bool = False


def parse_logged(line: str) -> LoggedEvent:
    """Read one labelled DSJSON line (as :func:`joined_line` writes, or Personalizer logged).

    Raises:
        ValueError: the line is not a labelled DSJSON object with at least one action.

    >>> e = parse_logged('{"_label_cost": -1, "_label_probability": 0.8, "_labelIndex": 1,'
    ...                  ' "a": [2, 1], "p": [0.8, 0.2], "EventId": "e1", "c": {"u": {"x": 1},'
    ...                  ' "_multi": [{"i": {"id": "a"}}, {"i": {"id": "b"}}]}}')
    >>> (e.chosen_index, e.propensity, e.reward, e.pmf)
    (1, 0.8, 1.0, (0.2, 0.8))
    """
    obj = json.loads(line)
    if not isinstance(obj, dict) or not isinstance(obj.get("c"), dict):
        raise ValueError("not a DSJSON object with a 'c' context")
    c = obj["c"]
    multi = c.get("_multi")
    if not isinstance(multi, list) or not multi:
        raise ValueError("the DSJSON context has no '_multi' actions")
    k = len(multi)
    if "_label_cost" not in obj or "_label_probability" not in obj:
        raise ValueError("the DSJSON line carries no label")
    if "_labelIndex" in obj:
        chosen = int(obj["_labelIndex"])
    elif "_label_Action" in obj:
        chosen = int(obj["_label_Action"]) - 1
    else:
        chosen = int(obj["a"][0]) - 1
    if not 0 <= chosen < k:
        raise ValueError(f"chosen action {chosen} is not among the {k} logged actions")
    propensity = float(obj["_label_probability"])
    if not 0.0 < propensity <= 1.0:
        raise ValueError("the logged propensity must be in (0, 1]")
    pmf = _logged_pmf(obj, k, chosen, propensity)
    ids = [str(m.get("_id", m.get("_tag", i))) for i, m in enumerate(multi)]
    context = {key: value for key, value in c.items() if not key.startswith("_")}
    request = RankRequest(
        event_id=str(obj.get("EventId", "")),
        context_features=(context,),
        actions=tuple(
            Action(id=i, features=(merge_features((m,)),)) for i, m in zip(ids, multi, strict=True)
        ),
        excluded_action_ids=tuple(i for i, p in zip(ids, pmf, strict=True) if p <= 0.0),
    )
    stamp = obj.get("Timestamp")
    version = obj.get("VWState", {}).get("m", 0) if isinstance(obj.get("VWState"), dict) else 0
    return LoggedEvent(
        event_id=request.event_id,
        timestamp=datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else 0.0,
        request=request,
        pmf=pmf,
        chosen_index=chosen,
        propensity=propensity,
        reward=0.0 - float(obj["_label_cost"]),
        defaulted=obj.get("o") == [],
        model_version=int(version) if str(version).isdigit() else 0,
        skip_learn=bool(obj.get("_skipLearn", False)),
    )


def _logged_pmf(obj: dict[str, Any], k: int, chosen: int, propensity: float) -> tuple[float, ...]:
    actions, probabilities = obj.get("a"), obj.get("p")
    if isinstance(actions, list) and isinstance(probabilities, list) and len(actions) == k:
        pmf = [0.0] * k
        for a, p in zip(actions, probabilities, strict=True):
            pmf[int(a) - 1] = float(p)
        pmf[chosen] = propensity
        return tuple(pmf)
    # Only the chosen action's probability is known: spread the rest evenly.
    rest = (1.0 - propensity) / (k - 1) if k > 1 else 0.0
    return tuple(propensity if i == chosen else rest for i in range(k))


def logged_to_joined(event: LoggedEvent, seq: int = 0) -> JoinedEvent:
    """The joined event a logged line records, so a policy can learn it (progressive validation).

    >>> e = parse_logged(joined_line(logged_to_joined(parse_logged(
    ...     '{"_label_cost": 0, "_label_probability": 1, "_labelIndex": 0, "a": [1], "p": [1],'
    ...     ' "c": {"_multi": [{"i": {"id": "a"}}]}}'))))
    >>> (e.chosen_index, e.propensity, e.reward)
    (0, 1.0, 0.0)
    """
    decision = Decision(
        event_id=event.event_id,
        timestamp=event.timestamp,
        request=event.request,
        pmf=event.pmf,
        chosen_index=event.chosen_index,
        model_version=event.model_version,
        activated_at=event.timestamp,
        close_at=event.timestamp,
    )
    return JoinedEvent(
        decision=decision,
        reward=event.reward,
        reward_count=0 if event.defaulted else 1,
        defaulted=event.defaulted,
        joined_at=event.timestamp,
        seq=seq,
    )
