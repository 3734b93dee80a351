"""The Policy contract: every implementation runs the same checks (DESIGN §2.3)."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from bandit.errors import InvalidPolicyConfiguration
from bandit.events import JSONObject, RankRequest
from bandit.exploration import apply_caps
from bandit.policy import Policy, PolicyFactory
from policies import (
    DEFAULT_ARGUMENTS,
    BaselinePolicy,
    UniformPolicy,
    VWPolicy,
    make_factory,
)
from tests.conftest import decision, joined, rank_request

SUM_TOL = 1e-6  # VW returns float32 probabilities
HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

FACTORIES: dict[str, PolicyFactory] = {
    "vw-default": lambda data: VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2, model=data),
    "uniform": lambda _data: UniformPolicy(),
    "baseline": lambda _data: BaselinePolicy(),
}


@pytest.fixture(params=sorted(FACTORIES), ids=str)
def factory(request: pytest.FixtureRequest) -> PolicyFactory:
    return FACTORIES[request.param]


def priced(index: int) -> JSONObject:
    """Action ``a{index}``'s features: its id and a numeric price."""
    return {"item": {"id": f"a{index}", "price": index + 1}}


def offer(
    event_id: str, k: int, *, user: str = "gold", excluded: tuple[str, ...] = ()
) -> RankRequest:
    """``k`` priced actions for a ``user``-tier user in the morning slot."""
    return rank_request(
        event_id,
        k=k,
        context=({"user": {"tier": user}}, {"time": {"slot": "am"}}),
        features=priced,
        excluded=excluded,
    )


@st.composite
def requests(draw: st.DrawFn) -> RankRequest:
    k = draw(st.integers(min_value=1, max_value=12))
    excluded = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    excluded[draw(st.integers(0, k - 1))] = False
    return offer(
        draw(st.text(min_size=1, max_size=8)),
        k,
        user=draw(st.sampled_from(["gold", "silver", "bronze"])),
        excluded=tuple(f"a{i}" for i in range(k) if excluded[i]),
    )


def train(policy: Policy, n: int = 30) -> None:
    for i in range(n):
        request = offer("train", 4, user=["gold", "silver"][i % 2])
        served = decision(f"train-{i + 1}", request=request, chosen=i % 4)
        policy.learn_one(joined(served, 1.0 if i % 4 == 2 else 0.0, seq=i + 1))


def check_distribution(pmf: list[float], request: RankRequest) -> None:
    assert len(pmf) == len(request.actions)
    assert all(isinstance(p, float) for p in pmf)
    assert all(0.0 <= p <= 1.0 + SUM_TOL for p in pmf)
    assert math.fsum(pmf) == pytest.approx(1.0, abs=SUM_TOL)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=requests())
def test_fresh_policy_returns_a_distribution_over_the_offered_actions(
    factory: PolicyFactory, request: RankRequest
) -> None:
    check_distribution(factory(None).predict_one(request), request)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=requests())
def test_trained_policy_returns_a_distribution_over_the_offered_actions(
    factory: PolicyFactory, request: RankRequest
) -> None:
    policy = factory(None)
    train(policy)
    check_distribution(policy.predict_one(request), request)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=requests())
def test_caps_zero_the_excluded_actions_whatever_the_policy_says(
    factory: PolicyFactory, request: RankRequest
) -> None:
    """Policies need not give excluded actions zero themselves; the caps do."""
    pmf = factory(None).predict_one(request)
    mask = request.excluded_mask()
    capped = apply_caps(pmf, mask, 0.2, 0.01)
    assert all(q == 0.0 for q, ex in zip(capped.pmf, mask, strict=True) if ex)
    assert math.fsum(capped.pmf) == pytest.approx(1.0, abs=SUM_TOL)


def test_predictions_are_deterministic(factory: PolicyFactory) -> None:
    policy = factory(None)
    train(policy)
    request = offer("p", 5)
    assert policy.predict_one(request) == policy.predict_one(request)


def test_to_bytes_and_factory_round_trip_preserves_predictions(factory: PolicyFactory) -> None:
    policy = factory(None)
    train(policy)
    data = policy.to_bytes()
    assert isinstance(data, bytes)
    restored = factory(data)
    assert restored.arguments == policy.arguments
    for k in (1, 3, 4, 7):
        request = offer(f"p{k}", k, excluded=("a0",) if k > 1 else ())
        assert restored.predict_one(request) == pytest.approx(policy.predict_one(request), abs=1e-6)


def test_learning_accepts_defaulted_events(factory: PolicyFactory) -> None:
    policy = factory(None)
    request = offer("d", 3)
    policy.learn_one(joined(decision("d", request=request, chosen=1), 0.0, defaulted=True))
    check_distribution(policy.predict_one(request), request)


def test_arguments_name_the_policy(factory: PolicyFactory) -> None:
    arguments = factory(None).arguments
    assert isinstance(arguments, str)
    assert arguments


@pytest.mark.parametrize(
    ("arguments", "kind"),
    [
        pytest.param("uniform", UniformPolicy, id="uniform"),
        pytest.param(" Baseline ", BaselinePolicy, id="baseline"),
        pytest.param(DEFAULT_ARGUMENTS, VWPolicy, id="vw-default"),
    ],
)
def test_make_factory_builds_the_named_policy(arguments: str, kind: type) -> None:
    policy = make_factory(arguments, epsilon=0.2)(None)
    assert isinstance(policy, kind)


def test_make_factory_validates_vw_arguments_up_front() -> None:
    with pytest.raises(InvalidPolicyConfiguration):
        make_factory("--cb_adf", epsilon=0.2)
