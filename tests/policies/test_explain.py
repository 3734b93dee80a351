"""Inference explanations: per-feature scores that sum exactly to VW's own score for the action."""

from __future__ import annotations

import random
from typing import Any

import hypothesis.strategies as st
import pytest
import vowpal_wabbit_next as vw
from hypothesis import given, settings

from bandit.dsjson import context_line
from bandit.events import Action, RankRequest
from policies import DEFAULT_ARGUMENTS, VWPolicy
from policies.vw import CONSTANT_NAME, Explanation, vw_line
from tests.conftest import decision, joined, rank_request

NO_INTERACTIONS = "--cb_explore_adf --epsilon 0.2 --cb_type mtr"
PAIR = "--cb_explore_adf --epsilon 0.2 --cb_type mtr -q ui"
ARGUMENTS = [DEFAULT_ARGUMENTS, NO_INTERACTIONS, PAIR]
TOLERANCE = 1e-5
K = 3


def world_request(rng: random.Random, event_id: str, *, key: str = "user") -> RankRequest:
    """A context with a string, a number and a nested namespace; actions with features."""
    tier = rng.choice(["gold", "silver", "bronze"])
    context = ({key: {"tier": tier, "visits": rng.uniform(0, 5)}, "geo": {"x": rng.random()}},)
    return rank_request(
        event_id,
        k=K,
        context=context,
        features=lambda i: {"item": {"id": f"a{i}", "price": 1.0 + i}},
    )


def trained(arguments: str, *, key: str = "user", events: int = 400) -> VWPolicy:
    """A policy that learned a world where gold users reward a0 and others a2."""
    rng = random.Random(7)
    policy = VWPolicy(arguments, epsilon=0.2)
    for seq in range(1, events + 1):
        request = world_request(rng, f"e{seq}", key=key)
        chosen = rng.randrange(K)
        gold = request.context_features[0][key]["tier"] == "gold"  # type: ignore[index]
        reward = 1.0 if chosen == (0 if gold else 2) else 0.0
        pmf = tuple(1.0 / K for _ in range(K))
        policy.learn_one(joined(decision(request=request, pmf=pmf, chosen=chosen), reward, seq=seq))
    # Explanations come from the model as a server holds it: restored from its bytes.
    return VWPolicy(arguments, epsilon=0.2, model=policy.to_bytes())


def raw_scores(policy: VWPolicy, request: RankRequest) -> list[float]:
    """VW's raw score (the cost it ranks by) of every action, read from VW's own computation
    tree on a workspace restored from the policy's bytes."""
    tokens = [*policy.arguments.split(), "--quiet"]
    workspace = vw.Workspace(tokens, model_data=policy.to_bytes(), enable_debug_tree=True)
    examples = vw.DSJsonFormatParser(workspace).parse_json(
        vw_line(context_line(request).encode()).decode()
    )
    _, tree = workspace.predict_one(examples)
    node: Any = tree
    while node.name != "csoaa_ldf-rank":
        node = node.children[0]
    return [float(child.partial_prediction) for child in node.children]


def learned_on(request: RankRequest, arguments: str = DEFAULT_ARGUMENTS) -> VWPolicy:
    """A model that learned from ``request`` itself (every action chosen, with varied rewards),
    so every feature and pair of it has a weight; restored from its bytes."""
    policy = VWPolicy(arguments, epsilon=0.2)
    k = len(request.actions)
    pmf = tuple(1.0 / k for _ in range(k))
    for seq in range(1, 4 * k + 1):
        chosen = seq % k
        reward = (seq * 0.37) % 1.0
        policy.learn_one(joined(decision(request=request, pmf=pmf, chosen=chosen), reward, seq=seq))
    return VWPolicy(arguments, epsilon=0.2, model=policy.to_bytes())


def explained(policy: VWPolicy, request: RankRequest, index: int) -> Explanation:
    explanation = policy.explain(request, index)
    assert explanation is not None
    return explanation


@pytest.mark.parametrize("arguments", ARGUMENTS)
def test_scores_sum_to_the_models_own_prediction(arguments: str) -> None:
    policy = trained(arguments)
    rng = random.Random(11)
    spread = []
    for n in range(6):
        request = world_request(rng, f"q{n}")
        raw = raw_scores(policy, request)
        spread.append(max(raw) - min(raw))
        for index in range(K):
            explanation = explained(policy, request, index)
            total = sum(score for _, score in explanation.features)
            assert total == pytest.approx(-raw[index], abs=TOLERANCE)
            assert explanation.score == pytest.approx(-raw[index], abs=TOLERANCE)
            assert explanation.index == index
    assert max(spread) > 0.1  # the model learned something: the actions' scores differ


@pytest.mark.parametrize("arguments", ARGUMENTS)
def test_the_greedy_action_has_the_highest_explained_score(arguments: str) -> None:
    policy = trained(arguments)
    rng = random.Random(3)
    for n in range(5):
        request = world_request(rng, f"g{n}")
        pmf = policy.predict_one(request)
        scores = [explained(policy, request, i).score for i in range(K)]
        assert max(range(K), key=pmf.__getitem__) == max(range(K), key=scores.__getitem__)


def test_features_and_interactions_are_named_as_sent() -> None:
    policy = trained(DEFAULT_ARGUMENTS)
    request = world_request(random.Random(5), "n")
    names = {name for name, _ in explained(policy, request, 1).features}
    singles = {"user.tier", "user.visits", "geo.x", "item.id", "item.price", CONSTANT_NAME}
    assert singles <= names
    assert "item.price^user.tier" in names  # -q :: pairs the action's namespace with the user's
    assert all(n in singles or "^" in n for n in names), names
    plain = trained(NO_INTERACTIONS)
    assert {name for name, _ in explained(plain, request, 1).features} == singles


def test_the_scores_favour_the_rewarded_action_through_the_tier() -> None:
    policy = trained(NO_INTERACTIONS)
    request = rank_request(
        "t",
        k=K,
        context=({"user": {"tier": "gold", "visits": 1.0}, "geo": {"x": 0.5}},),
        features=lambda i: {"item": {"id": f"a{i}", "price": 1.0 + i}},
    )
    first = dict(explained(policy, request, 0).features)
    # a0 is rewarded for gold users: its id feature (learned as that) supports it.
    assert first["item.id"] > 0.0


def test_a_renamed_namespace_is_named_as_the_client_sent_it() -> None:
    key = "é用户"
    policy = trained(DEFAULT_ARGUMENTS, key=key, events=200)
    request = world_request(random.Random(9), "u", key=key)
    explanation = explained(policy, request, 0)
    names = {name for name, _ in explanation.features}
    assert {f"{key}.tier", f"{key}.visits"} <= names
    assert {f"item.id^{key}.tier", f"{key}.tier^item.id"} & names, names
    assert not any("%" in name for name in names), names
    total = sum(score for _, score in explanation.features)
    assert total == pytest.approx(-raw_scores(policy, request)[0], abs=TOLERANCE)


def test_an_interleaved_model_is_not_explained() -> None:
    policy = trained("--cb_explore_adf --bag 3 -q ::", events=50)
    assert policy.explain(world_request(random.Random(1), "b"), 0) is None


def test_learning_after_an_explanation_explains_the_new_model() -> None:
    policy = VWPolicy(NO_INTERACTIONS, epsilon=0.2)
    request = world_request(random.Random(2), "l")
    before = explained(policy, request, 0).score
    policy.learn_one(joined(decision(request=request, pmf=(1 / 3,) * 3, chosen=0), 1.0, seq=1))
    after = explained(policy, request, 0)
    assert after.score != before
    assert sum(s for _, s in after.features) == pytest.approx(after.score, abs=TOLERANCE)


NAMES = {"user", "u2", "item", "é", "geo", "x", "中文", "t"}
KEYS = st.sampled_from(sorted(NAMES))
LEAVES = st.one_of(
    st.floats(-3, 3, allow_nan=False).map(lambda v: round(v, 3)),
    st.sampled_from(["a", "b", "金", "long value"]),
    st.booleans(),
    st.lists(st.floats(-2, 2, allow_nan=False).map(lambda v: round(v, 3)), max_size=3),
)
NAMESPACES = st.dictionaries(
    KEYS, st.one_of(LEAVES, st.dictionaries(KEYS, LEAVES, max_size=3)), max_size=3
)


@settings(max_examples=60, deadline=None)
@given(context=NAMESPACES, actions=st.lists(NAMESPACES, min_size=1, max_size=3))
def test_arbitrary_features_are_explained_exactly(
    context: dict[str, Any], actions: list[dict[str, Any]]
) -> None:
    request = RankRequest(
        event_id="h",
        context_features=(context,),
        actions=tuple(Action(id=f"a{i}", features=(f,)) for i, f in enumerate(actions)),
    )
    policy = learned_on(request)
    raw = raw_scores(policy, request)
    for index in range(len(actions)):
        explanation = explained(policy, request, index)
        total = sum(score for _, score in explanation.features)
        assert total == pytest.approx(-raw[index], abs=TOLERANCE)
        # Every share is named by keys the request holds, as sent (none left as an index,
        # none in the VW boundary's encoded form).
        for name, _ in explanation.features:
            if name != CONSTANT_NAME:
                parts = {key for term in name.split("^") for key in term.split(".")}
                assert parts <= NAMES, name
