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
from datetime import UTC, datetime
from typing import Any

from bandit.events import JoinedEvent, JSONObject, RankRequest


def merge_features(objects: tuple[JSONObject, ...]) -> JSONObject:
    """Merge feature objects into one; later keys win; ``_``-prefixed keys are dropped.

    >>> merge_features(({"user": {"a": 1}}, {"_hidden": 1, "time": "am"}))
    {'user': {'a': 1}, 'time': 'am'}
    """
    merged: JSONObject = {}
    for obj in objects:
        for key, value in obj.items():
            if not key.startswith("_"):
                merged[key] = value
    return merged


def context_object(request: RankRequest) -> JSONObject:
    """The DSJSON ``c`` object: shared context plus one ``_multi`` entry per action."""
    c = merge_features(request.context_features)
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


def joined_line(event: JoinedEvent) -> str:
    """The labelled DSJSON line VW learns from."""
    return json.dumps(joined_object(event), separators=(",", ":"))
