"""The crash search at the VW boundary: arbitrary feature objects fed to VW in a child process.

The strategies here generate what a client could send as ``contextFeatures`` and action
``features`` — and more: unicode keys and values at every position, VW's reserved ``_`` keys
below the top level, nesting, arrays of mixed types, empty keys, ``null``, booleans, integers
beyond 64 bits, non-finite floats, long strings and many keys. :mod:`tests.policies.vw_worker`
runs each example in a fork that exits like a process, so a crash is seen on the example that
caused it.

``python -m tests.policies.vw_search [--raw] [--examples N]`` runs the search outside pytest and
prints every crashing example (``--raw``: VW without the mapping, to find the crash classes).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from policies.vw import DEFAULT_ARGUMENTS, MARKER
from tests.policies.vw_worker import Outcome, Worker

ARGUMENTS = (
    DEFAULT_ARGUMENTS,
    "--cb_explore_adf --squarecb",
    "--cb_explore_adf --bag 3 -q ui --interactions :::",
)
"""The default arguments (``-q ::``) and two others: different learners, explicit interactions
(``u``, ``i`` and three-way wildcards)."""

# VW's DSJSON parser gives keys starting with "_" meanings at any depth.
RESERVED = (
    "_multi",
    "_slots",
    "_outcomes",
    "_label",
    "_labelIndex",
    "_label_cost",
    "_label_probability",
    "_label_Action",
    "_text",
    "_tag",
    "_id",
    "_inc",
    "_a",
    "_p",
    "_o",
    "_ba",
    "_df",
    "_original_label_cost",
    "_skipLearn",
    "__aid",
    "c",
    "a",
    "p",
)

first_characters = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=127),
    st.characters(min_codepoint=128, max_codepoint=255),  # Latin-1: U+0080-U+00FF, U+00A0
    st.characters(min_codepoint=256, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
    st.sampled_from([MARKER, "%", " ", ":", "|", "~", "\x7f", "\x00", "é", "中", "\u00a0"]),
)
keys = st.one_of(
    st.text(max_size=6),
    st.builds(lambda a, b: a + b, first_characters, st.text(max_size=5)),
    st.sampled_from(RESERVED),
    st.sampled_from(("", "u", "i", "x", "user", MARKER + "%C3%A9", MARKER + MARKER)),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2),
    st.integers(min_value=2**64 - 2, max_value=2**64 + 2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 3.4e38, 3.5e38]),
)
strings = st.one_of(
    st.text(max_size=12),
    st.builds(lambda a, b: a + b, first_characters, st.text(max_size=6)),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(0, 3000)),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, strings)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(keys, inner, max_size=5),
    ),
    max_leaves=12,
)
feature_objects = st.one_of(
    st.dictionaries(keys, values, max_size=5),
    st.dictionaries(keys, leaves, min_size=20, max_size=60),  # many keys
)
examples = st.fixed_dictionaries(
    {
        "context": st.lists(feature_objects, max_size=3),
        "actions": st.lists(st.lists(feature_objects, max_size=2), min_size=1, max_size=4),
        "arguments": st.sampled_from(ARGUMENTS),
        "mode": st.sampled_from(("predict", "learn")),
        "reward": st.sampled_from((0.0, 1.0, -1.0, 0.5)),
    }
)


def run_example(worker: Worker, example: dict[str, Any], *, mapped: bool) -> Outcome:
    """Feed one generated example to the worker."""
    return worker.run(
        example["context"],
        example["actions"],
        arguments=example["arguments"],
        mode=example["mode"],
        mapped=mapped,
        reward=example["reward"],
    )


def search(count: int, *, mapped: bool) -> tuple[int, list[tuple[dict[str, Any], Outcome]]]:
    """Run ``count`` generated examples (derandomized); return the count and every failure:
    a crash or a hang, and (``mapped``) an exception other than the documented
    ``InvalidRankRequest``."""
    found: list[tuple[dict[str, Any], Outcome]] = []
    ran = 0
    with Worker() as worker:

        @settings(
            max_examples=count,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(examples)
        def one(example: dict[str, Any]) -> None:
            nonlocal ran
            ran += 1
            outcome = run_example(worker, example, mapped=mapped)
            if outcome.kind == "ok":
                return
            if outcome.kind == "rejected" and not (
                mapped and not outcome.detail.startswith("InvalidRankRequest")
            ):
                return
            found.append((example, outcome))

        one()
    return ran, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--raw", action="store_true", help="VW without the mapping")
    parser.add_argument("--examples", type=int, default=1000)
    args = parser.parse_args()
    ran, found = search(args.examples, mapped=not args.raw)
    for example, outcome in found:
        print(outcome.kind, outcome.detail[:80], json.dumps(example, ensure_ascii=True)[:600])
    print(f"{ran} examples, {len(found)} failed ({'raw' if args.raw else 'mapped'})")


if __name__ == "__main__":
    main()
