"""HTTP request and response schemas: JSON bodies in, typed values out, and back.

One of the three places where raw dicts become typed values (with store rows and DSJSON).
Validation follows Personalizer's documented limits; every violation is a 400 with a message
that names the field.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

import msgspec

from bandit.errors import InvalidRankRequest, InvalidRequest, InvalidRewardRequest
from bandit.events import Action, Decision, RankRequest

MAX_ID_LENGTH = 256


_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def decode_json(body: bytes, error: type[InvalidRequest] = InvalidRequest) -> Any:
    """Decode a JSON body strictly; raise ``error`` on failure.

    NaN, Infinity, numbers beyond double range, invalid UTF-8 (lone surrogates included) and
    nesting deeper than msgspec's recursion limit are rejected, so every float that gets
    through is finite.
    """
    try:
        return _decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise error(f"the request body is not valid JSON: {exc}.") from exc


# Personalizer's feature rules as types, checked by msgspec while it decodes: each feature
# object maps namespaces to values; values are strings, numbers, booleans, null, numeric arrays
# or objects of the same. Two levels are typed; deeper objects are rare and left to VW's own
# parser, whose errors become InvalidRankRequest too. msgspec's nesting limit keeps pathological
# depths (which VW's parser cannot take) out.
_Leaf = str | int | float | bool | None | list[float]
_Inner = dict[str, _Leaf | dict[str, Any]]
_FeatureObject = dict[str, _Leaf | _Inner]


class _ActionBody(msgspec.Struct):
    id: str
    # An empty list when absent, so msgspec.convert can make an Action of it; null stays None.
    features: list[_FeatureObject] | None = msgspec.field(default_factory=list)


class _RankBody(msgspec.Struct):
    actions: list[_ActionBody]
    contextFeatures: list[_FeatureObject] | None = None
    excludedActions: list[str] | None = None
    eventId: str | None = None
    deferActivation: bool | None = None
    maxExploration: float | None = None


_decode_rank = msgspec.json.Decoder(_RankBody).decode


def _actions(bodies: list[_ActionBody]) -> tuple[Action, ...]:
    try:
        # msgspec builds the frozen dataclasses in C: half the time of calling their __init__.
        return msgspec.convert(bodies, tuple[Action, ...], from_attributes=True)
    except msgspec.ValidationError:  # an action sent "features": null
        return tuple(Action(id=a.id, features=tuple(a.features or ())) for a in bodies)


def parse_whole_number(text: str, what: str) -> int:
    """A non-negative whole number written in ASCII digits (``str.isdigit`` also accepts ``²``
    and other digits ``int`` refuses). Python's int has no overflow; callers bound it.

    Raises:
        InvalidRequest: ``text`` is empty or not ASCII digits only (a 400 naming ``what``).

    >>> parse_whole_number("0042", "top")
    42
    """
    if not (text.isascii() and text.isdigit()):
        raise InvalidRequest(f"{what} must be a non-negative integer, got {text!r}.", target=what)
    return int(text)


def check_id(value: str, what: str) -> str:
    """``value``, an event or action id: 1 to :data:`MAX_ID_LENGTH` characters, no NUL.

    Raises:
        InvalidRankRequest: it is not (``target`` is ``what``).
    """
    if not value:
        raise InvalidRankRequest(f"{what} must be a non-empty string.", target=what)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRankRequest(f"{what} must be at most {MAX_ID_LENGTH} characters.", target=what)
    if "\x00" in value:
        raise InvalidRankRequest(f"{what} must not contain the NUL character.", target=what)
    return value


def _bad_action_ids(ids: list[str]) -> NoReturn:
    # Out of parse_rank, so valid ids cost no loop and no message formatting.
    seen: set[str] = set()
    for index, action_id in enumerate(ids):
        check_id(action_id, f"actions[{index}].id")
        if action_id in seen:
            raise InvalidRankRequest(f"action id {action_id!r} is repeated.", target="actions")
        seen.add(action_id)
    raise AssertionError("no invalid action id")  # pragma: no cover


def parse_rank(raw: bytes, *, max_actions: int) -> RankRequest:
    """Decode and validate a Personalizer RankRequest body (an event id is made if none is given).

    Raises:
        InvalidRankRequest: the body is not JSON or not a RankRequest; a feature value is not
            allowed; ids are empty, too long or repeated; there are no actions or more than
            ``max_actions``; every action is excluded; ``maxExploration`` is outside [0, 1].
    """
    try:
        body = _decode_rank(raw)
    except msgspec.ValidationError as exc:
        raise InvalidRankRequest(f"invalid rank request: {exc}.") from exc
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidRankRequest(f"the request body is not valid JSON: {exc}.") from exc
    if not body.actions:
        raise InvalidRankRequest("actions must be a non-empty list.", target="actions")
    if len(body.actions) > max_actions:
        raise InvalidRankRequest(
            f"at most {max_actions} actions may be ranked, got {len(body.actions)}.",
            target="actions",
        )
    ids = [a.id for a in body.actions]
    seen = set(ids)
    if len(seen) != len(ids) or not min(map(len, ids)) or max(map(len, ids)) > MAX_ID_LENGTH:
        _bad_action_ids(ids)
    actions = _actions(body.actions)
    excluded = tuple(dict.fromkeys(x for x in body.excludedActions or () if x in seen))
    if len(excluded) == len(actions):
        raise InvalidRankRequest("every action is excluded.", target="excludedActions")
    event_id = check_id(body.eventId, "eventId") if body.eventId is not None else None
    max_exploration = body.maxExploration
    if max_exploration is not None and not 0.0 <= max_exploration <= 1.0:
        raise InvalidRankRequest("maxExploration must be within [0, 1].", target="maxExploration")
    request = RankRequest(
        event_id=event_id or os.urandom(16).hex(),
        context_features=tuple(body.contextFeatures or ()),
        actions=tuple(actions),
        excluded_action_ids=excluded,
        defer_activation=bool(body.deferActivation),
        max_exploration=max_exploration,
    )
    return request


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
