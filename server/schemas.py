"""HTTP request and response schemas: JSON bodies in, typed values out, and back.

One of the three places where raw dicts become typed values (with store rows and DSJSON).
Validation follows Personalizer's documented limits; every violation is a 400 with a message
that names the field.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from bandit.errors import InvalidRankRequest, InvalidRequest, InvalidRewardRequest
from bandit.events import Action, Decision, JSONObject, RankRequest

MAX_ID_LENGTH = 256
MAX_FEATURE_DEPTH = 8


_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def decode_json(body: bytes, error: type[InvalidRequest] = InvalidRequest) -> Any:
    """Decode a JSON body strictly; raise ``error`` on failure.

    NaN, Infinity, numbers beyond double range and invalid UTF-8 (lone surrogates included) are
    rejected, so every float that gets through is finite.
    """
    try:
        return _decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise error(f"the request body is not valid JSON: {exc}.") from exc


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRankRequest(f"{what} must be a non-empty string.", target=what)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRankRequest(f"{what} must be at most {MAX_ID_LENGTH} characters.", target=what)
    return value


_SCALARS = (str, int, float, bool, type(None))


def _check_object(obj: dict[str, Any], where: str, depth: int) -> None:
    # Values are decoded JSON (so numbers are finite); only arrays and nesting need checks.
    for key, value in obj.items():
        if type(value) in _SCALARS:
            continue
        if isinstance(value, dict):
            if depth >= MAX_FEATURE_DEPTH:
                raise InvalidRankRequest(
                    f"{where}.{key}: features nest deeper than {MAX_FEATURE_DEPTH} levels.",
                    target=where,
                )
            _check_object(value, f"{where}.{key}", depth + 1)
        elif isinstance(value, list):
            for item in value:
                if type(item) is not float and type(item) is not int:
                    raise InvalidRankRequest(
                        f"{where}.{key}: arrays may hold only numbers.", target=where
                    )
        else:
            raise InvalidRankRequest(f"{where}.{key} has an unsupported value type.", target=where)


def _feature_objects(value: Any, where: str) -> tuple[JSONObject, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRankRequest(f"{where} must be a list of JSON objects.", target=where)
    out = []
    for i, obj in enumerate(value):
        if not isinstance(obj, dict):
            raise InvalidRankRequest(f"{where}[{i}] must be a JSON object.", target=where)
        _check_object(obj, f"{where}[{i}]", 1)
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
    event_id = os.urandom(16).hex() if event_id is None else _check_id(event_id, "eventId")
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


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON for responses."""
    return _encode(payload)
