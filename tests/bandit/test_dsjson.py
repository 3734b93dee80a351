"""DSJSON codec: the ``c`` object VW predicts on and the labelled line it learns from."""

from __future__ import annotations

import doctest
import json
import math
from typing import Any

import hypothesis.strategies as st
from hypothesis import given

from bandit import dsjson
from bandit.dsjson import context_line, context_object, joined_line, joined_object
from bandit.events import Action, Decision, JoinedEvent, JSONObject, RankRequest

keys = st.text(alphabet="_abcxyz", min_size=1, max_size=4)
leaves = st.one_of(
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.text(max_size=8),
    st.booleans(),
)
values = st.one_of(leaves, st.dictionaries(keys, leaves, max_size=3))
feature_objects = st.dictionaries(keys, values, max_size=4)


@st.composite
def requests(draw: st.DrawFn) -> RankRequest:
    k = draw(st.integers(min_value=1, max_value=8))
    actions = tuple(
        Action(id=f"a{i}", features=tuple(draw(st.lists(feature_objects, max_size=3))))
        for i in range(k)
    )
    return RankRequest(
        event_id=draw(st.text(min_size=1, max_size=16)),
        context_features=tuple(draw(st.lists(feature_objects, max_size=4))),
        actions=actions,
    )


def merged_in_order(objects: tuple[JSONObject, ...]) -> JSONObject:
    out: JSONObject = {}
    for obj in objects:
        out.update({k: v for k, v in obj.items() if not k.startswith("_")})
    return out


@given(requests())
def test_context_object_drops_private_keys_and_merges_in_order(request: RankRequest) -> None:
    c = context_object(request)
    assert [k for k in c if k.startswith("_")] == ["_multi"]
    assert {k: v for k, v in c.items() if k != "_multi"} == merged_in_order(
        request.context_features
    )


@given(requests())
def test_context_object_has_one_multi_entry_per_action(request: RankRequest) -> None:
    multi = context_object(request)["_multi"]
    assert len(multi) == len(request.actions)
    for entry, action in zip(multi, request.actions, strict=True):
        assert entry == merged_in_order(action.features)
        assert not any(k.startswith("_") for k in entry)


@given(requests())
def test_context_line_is_the_json_of_the_c_object(request: RankRequest) -> None:
    assert json.loads(context_line(request)) == {"c": context_object(request)}


def test_later_objects_win_on_key_clashes() -> None:
    request = RankRequest(
        event_id="e",
        context_features=({"user": {"a": 1}, "_id": 7}, {"user": {"b": 2}, "t": "am"}),
        actions=(Action(id="x", features=({"f": 1}, {"f": 2, "_multi": "no"})),),
    )
    assert context_object(request) == {"user": {"b": 2}, "t": "am", "_multi": [{"f": 2}]}


@st.composite
def joined_events(draw: st.DrawFn) -> JoinedEvent:
    request = draw(requests())
    k = len(request.actions)
    weights = draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k))
    chosen = draw(st.integers(0, k - 1))
    weights[chosen] = max(weights[chosen], 0.01)
    total = math.fsum(weights)
    pmf = tuple(w / total for w in weights)
    decision = Decision(
        event_id=request.event_id,
        timestamp=draw(st.floats(0.0, 4e9)),
        request=request,
        pmf=pmf,
        chosen_index=chosen,
        greedy_index=max(range(k), key=lambda i: pmf[i]),
        model_version=draw(st.integers(0, 1000)),
    )
    defaulted = draw(st.booleans())
    return JoinedEvent(
        decision=decision,
        reward=0.0 if defaulted else draw(st.floats(-1.0, 1.0)),
        reward_count=0 if defaulted else 1,
        defaulted=defaulted,
        joined_at=decision.timestamp + 600.0,
        seq=draw(st.integers(1, 10_000)),
    )


@given(joined_events())
def test_joined_object_label_fields(event: JoinedEvent) -> None:
    d = event.decision
    obj = joined_object(event)
    assert obj["_label_cost"] == -event.reward
    assert obj["_label_probability"] == d.pmf[d.chosen_index]
    assert obj["_labelIndex"] == d.chosen_index
    assert obj["_label_Action"] == d.chosen_index + 1
    assert obj["EventId"] == d.event_id
    assert obj["c"] == context_object(d.request)
    assert obj["_skipLearn"] is False
    assert obj["o"] == ([] if event.defaulted else [{"v": event.reward, "EventId": d.event_id}])


@given(joined_events())
def test_joined_object_a_and_p_are_aligned_with_chosen_first(event: JoinedEvent) -> None:
    d = event.decision
    obj = joined_object(event)
    a: list[int] = obj["a"]
    p: list[float] = obj["p"]
    k = len(d.pmf)
    assert a[0] == d.chosen_index + 1
    assert sorted(a) == list(range(1, k + 1))
    assert len(p) == k
    assert all(p[j] == d.pmf[a[j] - 1] for j in range(k))
    assert p[0] == d.propensity


@given(joined_events())
def test_joined_line_is_the_json_of_the_joined_object(event: JoinedEvent) -> None:
    parsed: dict[str, Any] = json.loads(joined_line(event))
    assert parsed == joined_object(event)


def test_module_doctests_pass() -> None:
    result = doctest.testmod(dsjson)
    assert result.attempted > 0
    assert result.failed == 0


def test_learn_object_carries_the_same_label_as_the_log_line() -> None:
    """VW learns from learn_object; it must agree with the exported DSJSON on every label field."""
    from bandit.dsjson import joined_object, learn_object
    from bandit.events import Action, Decision, JoinedEvent, RankRequest

    request = RankRequest(
        event_id="e",
        context_features=({"u": {"a": 1}},),
        actions=tuple(Action(id=f"a{i}", features=({"x": {"i": str(i)}},)) for i in range(4)),
    )
    decision = Decision(
        event_id="e",
        timestamp=5.0,
        request=request,
        pmf=(0.1, 0.2, 0.6, 0.1),
        chosen_index=2,
        model_version=3,
    )
    event = JoinedEvent(
        decision=decision, reward=0.5, reward_count=1, defaulted=False, joined_at=9.0
    )
    full, lean = joined_object(event), learn_object(event)
    for key in ("_label_cost", "_label_probability", "_label_Action", "_labelIndex", "a", "c", "p"):
        assert lean[key] == full[key], key
