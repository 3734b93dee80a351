"""Rank body decoding (:func:`server.api.schemas.parse_rank`): what it builds, what it refuses."""

from __future__ import annotations

import json
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from bandit.errors import InvalidRankRequest
from bandit.events import Action, RankRequest
from server.api.schemas import MAX_ID_LENGTH, parse_rank


def parse(body: Any) -> RankRequest:
    return parse_rank(json.dumps(body).encode(), max_actions=50)


def test_actions_are_plain_actions_equal_to_constructed_ones() -> None:
    request = parse(
        {
            "eventId": "e",
            "contextFeatures": [{"user": {"tier": "gold"}}],
            "actions": [
                {"id": "a", "features": [{"item": {"price": 3}}, {"tags": [1.5, 2]}]},
                {"id": "b"},
                {"id": "c", "features": None},
                {"id": "d", "features": []},
            ],
        }
    )
    assert request.actions == (
        Action(id="a", features=({"item": {"price": 3}}, {"tags": [1.5, 2]})),
        Action(id="b"),
        Action(id="c"),
        Action(id="d"),
    )
    # the class itself, not a look-alike: a stored request must compare equal on a replay
    assert all(type(a) is Action for a in request.actions)
    assert all(type(a.features) is tuple for a in request.actions)


@pytest.mark.parametrize(
    ("ids", "message", "target"),
    [
        (["a", ""], "actions[1].id must be a non-empty string.", "actions[1].id"),
        (["", "a", "a"], "actions[0].id must be a non-empty string.", "actions[0].id"),
        (["a", "b", "a"], "action id 'a' is repeated.", "actions"),
        (["a", "a", "x" * 257], "action id 'a' is repeated.", "actions"),
        (
            ["a", "x" * (MAX_ID_LENGTH + 1)],
            f"actions[1].id must be at most {MAX_ID_LENGTH} characters.",
            "actions[1].id",
        ),
    ],
)
def test_the_first_bad_action_id_is_named(ids: list[str], message: str, target: str) -> None:
    with pytest.raises(InvalidRankRequest) as caught:
        parse({"actions": [{"id": i} for i in ids]})
    assert caught.value.message == message
    assert caught.value.target == target


def test_longest_id_is_accepted() -> None:
    assert parse({"actions": [{"id": "x" * MAX_ID_LENGTH}]}).actions[0].id == "x" * MAX_ID_LENGTH


feature_values = st.one_of(
    st.text(max_size=5),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
)
feature_objects = st.dictionaries(
    st.text(min_size=1, max_size=4),
    st.one_of(feature_values, st.dictionaries(st.text(max_size=4), feature_values, max_size=3)),
    max_size=3,
)
action_bodies = st.builds(
    lambda id_, features, how: (
        {"id": id_}
        if how == "absent"
        else {"id": id_, "features": None if how == "null" else features}
    ),
    st.text(min_size=1, max_size=6),
    st.lists(feature_objects, max_size=3),
    st.sampled_from(["absent", "null", "list"]),
)


@given(st.lists(action_bodies, min_size=1, max_size=8, unique_by=lambda a: a["id"]))
def test_actions_match_the_body(actions: list[dict[str, Any]]) -> None:
    request = parse({"eventId": "e", "actions": actions})
    assert request.actions == tuple(
        Action(id=a["id"], features=tuple(a.get("features") or ())) for a in actions
    )
