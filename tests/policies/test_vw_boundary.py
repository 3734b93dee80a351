"""The VW boundary (issue 17): no feature object a client can send, or a log can hold, kills the
process; namespace names VW cannot take are mapped to a collision-free ASCII form.

Every example that might crash runs in a child process (:mod:`tests.policies.vw_worker`), so a
crash is observed as an exit status. The unmapped controls prove each crash class is real: the
same input, handed to VW as :mod:`bandit.dsjson` builds it, kills the child.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import msgspec
import pytest
from hypothesis import given, settings

from bandit.errors import InvalidRankRequest
from bandit.events import Action, RankRequest
from policies.vw import DEFAULT_ARGUMENTS, MARKER, VWPolicy, vw_line, vw_name
from tests.conftest import decision, joined, rank_request
from tests.policies.vw_search import ARGUMENTS, search
from tests.policies.vw_worker import Outcome, Worker

EXAMPLES = int(os.environ.get("VW_FUZZ_EXAMPLES", "240"))
"""Generated examples for the mapped search: a bounded run in the suite; ``make fuzz-vw`` raises
it."""

ACTIONS: list[list[Any]] = [[{"a": {"x": 1}}], [{"b": {"y": 1}}]]


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    with Worker() as child:
        yield child


def test_mapped_vw_survives_arbitrary_feature_objects() -> None:
    ran, found = search(EXAMPLES, mapped=True)
    assert ran == EXAMPLES
    summary = [(outcome, repr(example)[:300]) for example, outcome in found[:3]]
    assert not found, f"{len(found)} of {ran} examples failed through the mapping: {summary}"


# One minimal input per crash class the search found (docs/vw-boundary.md). Each kills a
# process that hands it to VW unmapped; the first is issue 17's reproduction.
CRASH_CLASSES: dict[str, tuple[list[Any], list[list[Any]]]] = {
    "context-namespace-latin1-array": ([{"é": [1.0]}], ACTIONS),
    "context-namespace-latin1-object": ([{"é": {"x": 1}}], ACTIONS),
    "context-namespace-cjk-object": ([{"中文": {"x": 1}}], ACTIONS),
    "context-namespace-nbsp-object": ([{"\u00a0": {"x": 1}}], ACTIONS),
    "context-namespace-c1-control-array": ([{"\u0080": [2.0]}], ACTIONS),
    "context-namespace-astral-object": ([{"\U0001f600": {"x": 1}}], ACTIONS),
    "action-namespace-object": ([{"u": {"x": 1}}], [[{"é": {"x": 1}}], [{"b": {"y": 1}}]]),
    "nested-namespace-object": ([{"u": {"é": {"x": 1}}}], ACTIONS),
    "deeply-nested-namespace-array": ([{"u": {"a": {"b": {"中": [1]}}}}], ACTIONS),
    "namespace-inside-an-array": ([{"u": [{"é": {"x": 1}}]}], ACTIONS),
    # An object inside an array: its non-ASCII key crashes VW whatever its value, when an array
    # follows it.
    "array-object-scalar-then-array": ([{"u": [{"Û": 0}, [1]]}], ACTIONS),
    "action-array-object-scalar-then-array": ([], [[{"u": [{"Û": 0}, [1]]}], [{"b": {"y": 1}}]]),
}

# VW's dedup key: inside any namespace it dereferences a table a request never fills.
AID_CLASSES: dict[str, tuple[list[Any], list[list[Any]]]] = {
    "aid-in-namespace": ([{"J": {"__aid": 0}}], ACTIONS),
    "aid-in-default-namespace-object": ([{" ": {"__aid": 0}}], ACTIONS),
    "aid-nested": ([{"J": {"x": {"__aid": 1}}}], ACTIONS),
    "aid-in-action": ([], [[{"i": {"__aid": 5}}], [{"b": {"y": 1}}]]),
}


@pytest.mark.parametrize("mode", ["predict", "learn"])
@pytest.mark.parametrize("case", sorted(CRASH_CLASSES))
def test_non_ascii_first_character_of_a_namespace_kills_vw_unmapped_and_not_mapped(
    worker: Worker, case: str, mode: str
) -> None:
    check_class(worker, *CRASH_CLASSES[case], mode=mode)


@pytest.mark.parametrize("mode", ["predict", "learn"])
@pytest.mark.parametrize("case", sorted(AID_CLASSES))
def test_a_nested_aid_key_kills_vw_unmapped_and_not_mapped(
    worker: Worker, case: str, mode: str
) -> None:
    check_class(worker, *AID_CLASSES[case], mode=mode)


def corrupted(outcome: Outcome) -> bool:
    """Whether VW's memory was corrupted: the process died, or (rarely, as the corruption falls)
    VW threw ``std::bad_alloc`` for an example of a few bytes."""
    return outcome.kind == "crashed" or (
        outcome.kind == "rejected" and "std::bad_alloc" in outcome.detail
    )


def check_class(worker: Worker, context: list[Any], actions: list[list[Any]], *, mode: str) -> None:
    raw = worker.run(context, actions, arguments=DEFAULT_ARGUMENTS, mode=mode, mapped=False)
    assert corrupted(raw), f"unmapped VW survived: {raw}"
    for arguments in ARGUMENTS:
        mapped = worker.run(context, actions, arguments=arguments, mode=mode, mapped=True)
        # What VW refuses once mapped (as it refuses the same shape with ASCII names) is a 400.
        assert mapped.kind == "ok" or (
            mapped.kind == "rejected" and mapped.detail.startswith("InvalidRankRequest")
        ), (arguments, mapped)
    if mode == "learn":  # a logged event, read back by the learner with its values encoded
        raw = worker.run(
            context, actions, arguments=DEFAULT_ARGUMENTS, mode=mode, mapped=False, stored=True
        )
        assert corrupted(raw), f"unmapped VW survived the stored event: {raw}"
        stored = worker.run(
            context, actions, arguments=DEFAULT_ARGUMENTS, mode=mode, mapped=True, stored=True
        )
        assert stored.kind == "ok" or stored.detail.startswith("InvalidRankRequest"), stored


@pytest.mark.parametrize(
    "context",
    [
        [{"é": "x"}, {"中": 1}],  # scalar values: features of the default namespace
        [{"u": {"é": "x", "中": 2.0}}],  # non-ASCII feature names
        [{"ué": {"x": "é"}}],  # non-ASCII after an ASCII first character
        [{"~": {"x": 1}}, {"\x7f": [1]}, {"": {"x": 1}}, {"\x01": {"x": 1}}],
    ],
)
def test_non_ascii_outside_a_namespace_first_character_is_not_a_crash(
    worker: Worker, context: list[Any]
) -> None:
    for mapped in (False, True):
        outcome = worker.run(
            context, ACTIONS, arguments=DEFAULT_ARGUMENTS, mode="learn", mapped=mapped
        )
        assert outcome.kind == "ok", (mapped, outcome)


def test_what_vw_refuses_is_still_an_invalid_rank_request() -> None:
    policy = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2)
    for context in ([{"é": {"x": [1, "s"]}}], [{"u": [{"a": 0}, []]}], [{"u": [[1]]}]):
        request = RankRequest(
            event_id="e",
            context_features=tuple(context),
            actions=tuple(Action(id=f"a{i}", features=tuple(f)) for i, f in enumerate(ACTIONS)),
        )
        with pytest.raises(InvalidRankRequest):
            policy.predict_one(request)


# --- the encoding ---------------------------------------------------------------------------

names = st.one_of(
    st.text(),
    st.builds(lambda tail: MARKER + tail, st.text()),
    st.builds(lambda tail: MARKER + "%" + tail, st.text(alphabet="0123456789ABCDEF%")),
)


@settings(max_examples=500, derandomize=True, database=None)
@given(names, names)
def test_distinct_namespace_names_never_share_a_vw_name(a: str, b: str) -> None:
    if a != b:
        assert vw_name(a) != vw_name(b)


@settings(max_examples=500, derandomize=True, database=None)
@given(names)
def test_a_vw_name_starts_with_ascii_and_ascii_names_are_kept(name: str) -> None:
    mapped = vw_name(name)
    if not name or (name[0] < "\x80" and name[0] != MARKER):
        assert mapped == name
    else:
        assert mapped[0] == MARKER
        assert mapped.isascii() and mapped.isprintable() and " " not in mapped


def test_an_encoded_looking_ascii_name_does_not_collide_with_the_name_it_looks_like() -> None:
    assert vw_name("é") == "^%C3%A9"
    assert vw_name("^%C3%A9") != vw_name("é")


def test_an_ascii_line_reaches_vw_as_it_is() -> None:
    line = b'{"c":{"user":{"tier":"gold"},"_multi":[{"item":{"id":"a"}}]}}'
    assert vw_line(line) is line


def test_keys_are_mapped_values_and_labels_are_not() -> None:
    line = msgspec.json.encode(
        {
            "_label_cost": -1,
            "c": {"é": {"ü": 1, "k": "é", "_x": 1}, "o": "ö", "_multi": [{"中": [{"__aid": 1}]}]},
        }
    )
    assert msgspec.json.decode(vw_line(line)) == {
        "_label_cost": -1,
        "c": {"^%C3%A9": {"^%C3%BC": 1, "k": "é"}, "o": "ö", "_multi": [{"^%E4%B8%AD": [{}]}]},
    }


@pytest.mark.parametrize(
    "line",
    [
        b'{"c":{"user":{"__aid":1},"_multi":[{"item":{"id":"a"}}]}}',
        b'{"c":{"_multi":[{"item":{"_x":1}}]}}',
        b'{"c":{"user":{"_":1},"_multi":[]}}',
        b'{"c":{"user":{"_a":1}}}',
        b'{"_label_cost":-1,"c":{"\\u00e9":{"x":1},"_multi":[]}}',
        b'{"c":{"^":{"x":1},"_multi":[]}}',
    ],
)
def test_a_line_with_a_reserved_key_escape_or_marker_is_rebuilt(line: bytes) -> None:
    mapped = msgspec.json.decode(vw_line(line))
    assert mapped != msgspec.json.decode(line)
    keys: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            keys.extend(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(mapped["c"])
    assert all(k == "_multi" or not k.startswith("_") for k in keys), keys
    assert all(not k or (k[0] < "\x80" and k[0] != MARKER) or k.startswith(MARKER) for k in keys)


def test_mapped_namespaces_keep_apart_what_the_client_kept_apart() -> None:
    # Two user types told apart only by non-ASCII namespace names (and their encoded look-alike):
    # VW must learn a different best action for each.
    policy = VWPolicy("--cb_explore_adf --epsilon 0.0 -q ::", epsilon=0.0)
    users = [{"é": {"v": 1}}, {"中": {"v": 1}}, {"^%C3%A9": {"v": 1}}]
    for _ in range(300):
        for best, user in enumerate(users):
            for action in range(3):
                served = decision(request=rank_request(k=3, context=(user,)), chosen=action)
                policy.learn_one(joined(served, 1.0 if action == best else 0.0))
    for best, user in enumerate(users):
        pmf = policy.predict_one(rank_request(k=3, context=(user,)))
        assert max(range(3), key=pmf.__getitem__) == best, (user, pmf)


def test_features_nested_too_deeply_to_rebuild_are_an_invalid_rank_request() -> None:
    # A rank's decoder admits nesting close to the interpreter's recursion limit; rebuilding
    # such a line deeper in a server's call stack must be a 400, not a RecursionError (500).
    depth = 5000
    line = b'{"c":{"\xc3\xa9":' + b'{"a":' * depth + b"1" + b"}" * depth + b',"_multi":[]}}'
    with pytest.raises(InvalidRankRequest, match="nested too deeply"):
        vw_line(line)


def test_a_lone_surrogate_in_an_imported_log_is_an_invalid_rank_request() -> None:
    # HTTP bodies cannot carry one (the decoder refuses it), but DSJSON read with json can.
    policy = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2)
    req = rank_request(k=3, context=({"u": {"x": "\ud800"}},))
    with pytest.raises(InvalidRankRequest):
        policy.predict_one(req)
    with pytest.raises(InvalidRankRequest):
        policy.learn_one(joined(decision(request=req), 1.0))
