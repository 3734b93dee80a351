"""HTTP request and response schemas: JSON bodies in, typed values out, and back.

One of the three places where raw dicts become typed values (with store rows and DSJSON).
Validation follows Personalizer's documented limits; every violation is a 400 with a message
that names the field.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from bandit.errors import InvalidRankRequest, InvalidRequest, InvalidRewardRequest
from bandit.events import Action, Decision, JSONObject, RankRequest

MAX_ID_LENGTH = 256
MAX_FEATURE_DEPTH = 8


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(body: bytes, error: type[InvalidRequest] = InvalidRequest) -> Any:
    """Decode a JSON body strictly (no NaN/Infinity); raise ``error`` on failure."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"the request body is not valid JSON: {exc}.") from exc


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRankRequest(f"{what} must be a non-empty string.", target=what)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRankRequest(f"{what} must be at most {MAX_ID_LENGTH} characters.", target=what)
    return value


def _check_value(value: Any, where: str, depth: int) -> None:
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidRankRequest(f"{where} must be a finite number.", target=where)
        return
    if isinstance(value, list):
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise InvalidRankRequest(f"{where}: arrays may hold only numbers.", target=where)
            if not math.isfinite(item):
                raise InvalidRankRequest(f"{where} must hold finite numbers.", target=where)
        return
    if isinstance(value, dict):
        if depth >= MAX_FEATURE_DEPTH:
            raise InvalidRankRequest(
                f"{where}: features nest deeper than {MAX_FEATURE_DEPTH} levels.", target=where
            )
        for key, inner in value.items():
            _check_value(inner, f"{where}.{key}", depth + 1)
        return
    raise InvalidRankRequest(f"{where} has an unsupported value type.", target=where)


def _feature_objects(value: Any, where: str) -> tuple[JSONObject, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRankRequest(f"{where} must be a list of JSON objects.", target=where)
    out = []
    for i, obj in enumerate(value):
        if not isinstance(obj, dict):
            raise InvalidRankRequest(f"{where}[{i}] must be a JSON object.", target=where)
        _check_value(obj, f"{where}[{i}]", 0)
        out.append(obj)
    return tuple(out)


def parse_rank(body: Any, *, max_actions: int) -> RankRequest:
    """Validate a Personalizer RankRequest body.

    Raises:
        InvalidRankRequest: the body is not an object, an action or feature is malformed, ids
            are too long or repeated, there are no actions, more than ``max_actions``, or every
            action is excluded.
    """
    if not isinstance(body, dict):
        raise InvalidRankRequest("the rank request must be a JSON object.")
    actions_raw = body.get("actions")
    if not isinstance(actions_raw, list) or not actions_raw:
        raise InvalidRankRequest("actions must be a non-empty list.", target="actions")
    if len(actions_raw) > max_actions:
        raise InvalidRankRequest(
            f"at most {max_actions} actions may be ranked, got {len(actions_raw)}.",
            target="actions",
        )
    actions = []
    seen: set[str] = set()
    for i, raw in enumerate(actions_raw):
        if not isinstance(raw, dict):
            raise InvalidRankRequest(f"actions[{i}] must be a JSON object.", target="actions")
        action_id = _check_id(raw.get("id"), f"actions[{i}].id")
        if action_id in seen:
            raise InvalidRankRequest(f"action id {action_id!r} is repeated.", target="actions")
        seen.add(action_id)
        features = _feature_objects(raw.get("features"), f"actions[{i}].features")
        actions.append(Action(id=action_id, features=features))
    context = _feature_objects(body.get("contextFeatures"), "contextFeatures")
    excluded_raw = body.get("excludedActions") or []
    if not isinstance(excluded_raw, list) or not all(isinstance(x, str) for x in excluded_raw):
        raise InvalidRankRequest(
            "excludedActions must be a list of action ids.", target="excludedActions"
        )
    excluded = tuple(dict.fromkeys(x for x in excluded_raw if x in seen))
    if len(excluded) == len(actions):
        raise InvalidRankRequest("every action is excluded.", target="excludedActions")
    event_id = body.get("eventId")
    event_id = uuid.uuid4().hex if event_id is None else _check_id(event_id, "eventId")
    defer = body.get("deferActivation")
    if defer is not None and not isinstance(defer, bool):
        raise InvalidRankRequest("deferActivation must be a boolean.", target="deferActivation")
    max_exploration = body.get("maxExploration")
    if max_exploration is not None:
        if isinstance(max_exploration, bool) or not isinstance(max_exploration, int | float):
            raise InvalidRankRequest("maxExploration must be a number.", target="maxExploration")
        if not 0.0 <= max_exploration <= 1.0:
            raise InvalidRankRequest(
                "maxExploration must be within [0, 1].", target="maxExploration"
            )
        max_exploration = float(max_exploration)
    return RankRequest(
        event_id=event_id,
        context_features=context,
        actions=tuple(actions),
        excluded_action_ids=excluded,
        defer_activation=bool(defer),
        max_exploration=max_exploration,
    )


def rank_response(decision: Decision) -> dict[str, Any]:
    """Personalizer's RankResponse: the chosen action first, then the rest in request order."""
    actions = decision.request.actions
    chosen = decision.chosen_index
    order = [chosen] + [i for i in range(len(actions)) if i != chosen]
    return {
        "ranking": [{"id": actions[i].id, "probability": decision.pmf[i]} for i in order],
        "eventId": decision.event_id,
        "rewardActionId": actions[chosen].id,
    }


def parse_reward_value(body: Any) -> object:
    """The ``value`` of a RewardRequest body (range checks happen in the loop)."""
    if not isinstance(body, dict) or "value" not in body:
        raise InvalidRewardRequest(
            'the reward request must be a JSON object like {"value": 1.0}.', target="value"
        )
    return body["value"]


def dumps(payload: Any) -> str:
    """Compact JSON for responses."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)
