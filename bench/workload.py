"""The benchmark's workload: deterministic rank bodies, rewards, and the same examples as DSJSON.

Every rank body offers :data:`N_ACTIONS` actions with :data:`ACTION_FEATURES` features each, and
carries :data:`CONTEXT_FEATURES` context features in four namespaces, as a Personalizer client
would send them. Bodies come from a seeded generator, so two runs send the same bytes. Rewards
come for a share of events, chosen by the event's number so the Lua scripts, the Python load
generator and the backlog seeder agree without sharing state.

The DSJSON lines are what the server hands VW for the same bodies (DESIGN §2.2 and §2.10): the
bare VW loop parses exactly these, so its events/s is the ceiling of the server's learner and of
its predict step.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

N_ACTIONS = 10
ACTION_FEATURES = 3
CONTEXT_NAMESPACES = ("user", "device", "time", "session")
FEATURES_PER_NAMESPACE = 5
CONTEXT_FEATURES = len(CONTEXT_NAMESPACES) * FEATURES_PER_NAMESPACE
REWARD_SHARE = 0.5

JSONObject = dict[str, Any]

_COMPACT = (",", ":")
_TIERS = ("free", "basic", "plus", "gold", "platinum")
_COUNTRIES = ("de", "fr", "us", "jp", "br", "in", "ng", "se")
_OSES = ("android", "ios", "windows", "macos", "linux")
_BROWSERS = ("chrome", "firefox", "safari", "edge")
_PARTS_OF_DAY = ("night", "morning", "afternoon", "evening")
_CATEGORIES = ("news", "sport", "music", "games", "cooking", "travel", "science", "film")
_SOURCES = ("search", "direct", "email", "social")


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """What the load generators send.

    Attributes:
        seed: seed of the body generator; the same seed gives byte-identical bodies.
        n_bodies: distinct rank bodies, cycled by the load generators.
        reward_share: share of events that get a reward, in [0, 1] (in steps of 0.01).
    """

    seed: int = 5
    n_bodies: int = 256
    reward_share: float = REWARD_SHARE


def _context(rng: random.Random) -> list[JSONObject]:
    user = {
        "tier": rng.choice(_TIERS),
        "country": rng.choice(_COUNTRIES),
        "age": rng.randint(16, 80),
        "tenureDays": rng.randint(0, 2000),
        "churnRisk": round(rng.random(), 3),
    }
    device = {
        "os": rng.choice(_OSES),
        "browser": rng.choice(_BROWSERS),
        "mobile": rng.random() < 0.6,
        "screenWidth": rng.choice((360, 390, 768, 1280, 1920)),
        "bandwidthMbps": round(rng.uniform(1, 300), 1),
    }
    time_of_day = {
        "partOfDay": rng.choice(_PARTS_OF_DAY),
        "weekday": rng.randint(0, 6),
        "weekend": rng.random() < 0.3,
        "hour": rng.randint(0, 23),
        "holiday": rng.random() < 0.05,
    }
    session = {
        "source": rng.choice(_SOURCES),
        "pagesViewed": rng.randint(1, 40),
        "secondsOnSite": rng.randint(1, 3600),
        "lastCategory": rng.choice(_CATEGORIES),
        "cartItems": rng.randint(0, 5),
    }
    return [{"user": user}, {"device": device}, {"time": time_of_day}, {"session": session}]


def _actions(rng: random.Random) -> list[JSONObject]:
    return [
        {
            "id": f"article-{i}",
            "features": [
                {
                    "item": {
                        "category": rng.choice(_CATEGORIES),
                        "ageHours": rng.randint(0, 96),
                        "quality": round(rng.random(), 3),
                    }
                }
            ],
        }
        for i in range(N_ACTIONS)
    ]


def rank_bodies(workload: Workload) -> list[JSONObject]:
    """``workload.n_bodies`` Personalizer rank bodies, without ``eventId`` (senders add it).

    Each has :data:`N_ACTIONS` actions of :data:`ACTION_FEATURES` features and
    :data:`CONTEXT_FEATURES` context features.

    >>> bodies = rank_bodies(Workload(n_bodies=2))
    >>> len(bodies), len(bodies[0]["actions"]), count_context_features(bodies[0])
    (2, 10, 20)
    """
    rng = random.Random(workload.seed)
    return [
        {"contextFeatures": _context(rng), "actions": _actions(rng)}
        for _ in range(workload.n_bodies)
    ]


def count_context_features(body: JSONObject) -> int:
    """Leaf features across a body's ``contextFeatures`` objects."""
    return sum(_leaves(obj) for obj in body["contextFeatures"])


def count_action_features(action: JSONObject) -> int:
    """Leaf features across one action's ``features`` objects."""
    return sum(_leaves(obj) for obj in action["features"])


def _leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values())
    return 1


def encode_body(body: JSONObject, event_id: str | None = None) -> bytes:
    """The compact JSON bytes of a rank body, with ``eventId`` first when given."""
    if event_id is not None:
        body = {"eventId": event_id, **body}
    return json.dumps(body, separators=_COMPACT).encode()


def body_tail(body: JSONObject) -> str:
    """A body's JSON without its opening brace: senders write ``{"eventId":"…",`` + tail.

    >>> body_tail({"actions": []})
    '"actions":[]}'
    """
    return json.dumps(body, separators=_COMPACT)[1:]


def is_rewarded(n: int, share: float = REWARD_SHARE) -> bool:
    """Whether the ``n``-th event of a sender gets a reward (``share`` of every 100 do).

    >>> sum(is_rewarded(n) for n in range(1000))
    500
    """
    return n % 100 < round(share * 100)


def reward_value(n: int) -> float:
    """The reward the ``n``-th event gets when it gets one: 0, 0.25, 0.5, 0.75 or 1.

    >>> [reward_value(n) for n in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 0.0]
    """
    return (n % 5) / 4


def reward_body(n: int) -> bytes:
    """The reward request body for the ``n``-th event."""
    return json.dumps({"value": reward_value(n)}, separators=_COMPACT).encode()


# --- The same examples as DSJSON (what the server gives VW) -----------------------------------


def _merge(objects: list[JSONObject]) -> JSONObject:
    merged: JSONObject = {}
    for obj in objects:
        for key, value in obj.items():
            if not key.startswith("_"):
                merged[key] = value
    return merged


def context_object(body: JSONObject) -> JSONObject:
    """The DSJSON ``c`` object of a rank body: merged context plus one ``_multi`` per action."""
    c = _merge(body["contextFeatures"])
    c["_multi"] = [_merge(a["features"]) for a in body["actions"]]
    return c


def context_line(body: JSONObject) -> str:
    """The unlabelled DSJSON line VW predicts on for a rank body."""
    return json.dumps({"c": context_object(body)}, separators=_COMPACT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Label:
    """A logged outcome for one example: the served pmf, the draw and the reward."""

    pmf: tuple[float, ...]
    chosen_index: int
    reward: float
    defaulted: bool


def label_for(n: int, *, epsilon: float = 0.2, share: float = REWARD_SHARE) -> Label:
    """A plausible logged outcome for the ``n``-th example: ε-greedy pmf, seeded draw.

    >>> label = label_for(3)
    >>> abs(sum(label.pmf) - 1.0) < 1e-9, label.pmf[label.chosen_index] > 0
    (True, True)
    """
    rng = random.Random(n)
    greedy = n % N_ACTIONS
    floor = epsilon / N_ACTIONS
    pmf = tuple(1.0 - epsilon + floor if i == greedy else floor for i in range(N_ACTIONS))
    chosen = rng.choices(range(N_ACTIONS), weights=pmf)[0]
    rewarded = is_rewarded(n, share)
    return Label(
        pmf=pmf,
        chosen_index=chosen,
        reward=reward_value(n) if rewarded else 0.0,
        defaulted=not rewarded,
    )


def joined_line(body: JSONObject, label: Label, *, event_id: str, timestamp: float) -> str:
    """The labelled DSJSON line VW learns from (``_label_cost = −reward``, chosen first)."""
    chosen = label.chosen_index
    order = [chosen] + [i for i in range(len(label.pmf)) if i != chosen]
    stamp = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    obj = {
        "_label_cost": -label.reward,
        "_label_probability": label.pmf[chosen],
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "o": [] if label.defaulted else [{"v": label.reward, "EventId": event_id}],
        "Timestamp": stamp,
        "Version": "1",
        "EventId": event_id,
        "a": [i + 1 for i in order],
        "c": context_object(body),
        "p": [label.pmf[i] for i in order],
        "VWState": {"m": "1"},
        "_skipLearn": False,
    }
    return json.dumps(obj, separators=_COMPACT)


def learn_line(body: JSONObject, label: Label) -> str:
    """The DSJSON line banditd's learner gives VW: :func:`joined_line` without the fields VW
    ignores (outcomes, ids, timestamp, version), which its learner leaves out.

    >>> line = json.loads(learn_line(rank_bodies(Workload(n_bodies=1))[0], label_for(0)))
    >>> sorted(line)
    ['_labelIndex', '_label_Action', '_label_cost', '_label_probability', 'a', 'c', 'p']
    """
    chosen = label.chosen_index
    order = [chosen] + [i for i in range(len(label.pmf)) if i != chosen]
    obj = {
        "_label_cost": -label.reward,
        "_label_probability": label.pmf[chosen],
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "a": [i + 1 for i in order],
        "c": context_object(body),
        "p": [label.pmf[i] for i in order],
    }
    return json.dumps(obj, separators=_COMPACT)
