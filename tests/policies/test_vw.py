"""VW adapter: argument validation, the service ε, learning from DSJSON, the label VW sees."""

from __future__ import annotations

import math
from pathlib import Path

import hypothesis.strategies as st
import pytest
import vowpal_wabbit_next as vw
from hypothesis import given, settings

from bandit.dsjson import joined_line
from bandit.errors import InvalidPolicyConfiguration
from policies import DEFAULT_ARGUMENTS, VWPolicy, validate_arguments
from tests.conftest import decision, joined, rank_request

ABS = 1e-6  # VW returns float32 probabilities
DECOY = "existing.txt"  # a readable file in the test's working directory

ACCEPTED = [
    DEFAULT_ARGUMENTS,
    "--cb_explore_adf --squarecb",
    "--cb_explore_adf --cover 3",
    "--cb_explore_adf --bag 5",
    "--cb_explore_adf --regcbopt",
    "--cb_explore_adf --epsilon 0.1 -q ::",
]

REJECTED = {
    "no-explore": "--cb_adf",
    "unknown-flag": "--cb_explore_adf --bogus_flag",
    "final-regressor": "--cb_explore_adf -f model.vw",
    "readable-model": "--cb_explore_adf --readable_model x",
    "cache-file": "--cb_explore_adf --cache_file c",
    "daemon": "--cb_explore_adf --daemon",
    "invert-hash": "--cb_explore_adf --invert_hash h",
    "data-first": "-d file --cb_explore_adf",
    "invert-hash-equals": "--cb_explore_adf --invert_hash=h.txt",
    "too-long": "--cb_explore_adf " + "-q :: " * 200,
    "unbalanced-quotes": "--cb_explore_adf --epsilon '0.1",
    # Short options take their value attached too (boost program_options): -fFILE is -f FILE.
    "final-regressor-attached": "--cb_explore_adf -fmodel.vw",
    "predictions-attached": "--cb_explore_adf -ppredictions.txt",
    "raw-predictions-attached": "--cb_explore_adf -rraw.txt",
    "data-attached": f"-d{DECOY} --cb_explore_adf",
    # VW raises ValueError, not RuntimeError, for this one; PUT /policy answered 500.
    "negative-bag": "--cb_explore_adf --bag -3",
}


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


# --- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize("arguments", ACCEPTED)
def test_validate_arguments_accepts(arguments: str) -> None:
    validate_arguments(arguments)
    policy = VWPolicy(arguments, epsilon=0.2)
    assert policy.arguments == arguments


@pytest.mark.parametrize("arguments", list(REJECTED.values()), ids=list(REJECTED))
def test_validate_arguments_rejects(
    arguments: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run in a scratch directory holding one readable file: a file flag that slipped through
    # would read it or write next to it.
    monkeypatch.chdir(tmp_path)
    (tmp_path / DECOY).write_text("1 | a\n")
    with pytest.raises(InvalidPolicyConfiguration) as info:
        validate_arguments(arguments)
    assert info.value.code == "InvalidPolicyConfiguration"
    with pytest.raises(InvalidPolicyConfiguration):
        VWPolicy(arguments, epsilon=0.2)
    assert [p.name for p in tmp_path.iterdir()] == [DECOY]


@pytest.mark.parametrize("arguments", ACCEPTED)
def test_every_accepted_algorithm_returns_a_distribution(arguments: str) -> None:
    """``predict_one`` promises probabilities that sum to 1 whatever the exploration algorithm."""
    policy = VWPolicy(arguments, epsilon=0.2)
    request = rank_request()
    fresh = policy.predict_one(request)
    for i in range(40):
        policy.learn_one(joined(decision(chosen=i % 4), 1.0 if i % 4 == 2 else 0.0, seq=i + 1))
    trained = policy.predict_one(request)
    for pmf in (fresh, trained):
        assert len(pmf) == 4
        assert all(0.0 <= p <= 1.0 + ABS for p in pmf)
        assert math.fsum(pmf) == pytest.approx(1.0, abs=ABS)


# --- the service ε ---------------------------------------------------------------------------


@pytest.mark.parametrize("service_epsilon", [0.0, 0.1, 0.3])
@pytest.mark.parametrize(
    "arguments", ["--cb_explore_adf --epsilon 0.5", "--cb_explore_adf --epsilon=0.5"]
)
def test_service_epsilon_overrides_the_epsilon_argument(
    arguments: str, service_epsilon: float
) -> None:
    k = 4
    policy = VWPolicy(arguments, epsilon=service_epsilon)
    policy.learn_one(joined(decision(k=k, chosen=1), 1.0))
    pmf = policy.predict_one(rank_request(k=k))
    greedy = argmax(pmf)
    assert greedy == 1
    assert pmf[greedy] == pytest.approx(1 - service_epsilon + service_epsilon / k, abs=ABS)
    for i in range(k):
        if i != greedy:
            assert pmf[i] == pytest.approx(service_epsilon / k, abs=ABS)


def test_untrained_epsilon_greedy_ties_every_action() -> None:
    pmf = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2).predict_one(rank_request())
    assert pmf == pytest.approx([0.25] * 4, abs=ABS)


# --- learning --------------------------------------------------------------------------------


def test_learning_moves_probability_to_the_rewarded_action() -> None:
    policy = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2)
    for i in range(200):
        policy.learn_one(joined(decision(chosen=i % 4), 1.0 if i % 4 == 2 else 0.0, seq=i + 1))
    pmf = policy.predict_one(rank_request())
    assert argmax(pmf) == 2
    assert pmf[2] == pytest.approx(1 - 0.2 + 0.2 / 4, abs=ABS)


def test_restored_model_predicts_what_the_original_does() -> None:
    policy = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2)
    for i in range(50):
        policy.learn_one(joined(decision(chosen=i % 4), 1.0 if i % 4 == 3 else 0.0, seq=i + 1))
    restored = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2, model=policy.to_bytes())
    for k in (2, 4, 6):
        request = rank_request(k=k)
        assert restored.predict_one(request) == pytest.approx(policy.predict_one(request), abs=ABS)


@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(min_value=1, max_value=8),
    data=st.data(),
    reward=st.floats(min_value=-1.0, max_value=1.0),
    propensity=st.floats(min_value=0.01, max_value=1.0),
)
def test_joined_line_puts_the_cb_label_on_the_chosen_action(
    k: int, data: st.DataObject, reward: float, propensity: float
) -> None:
    chosen = data.draw(st.integers(min_value=0, max_value=k - 1))
    if k == 1:
        propensity = 1.0
    rest = (1.0 - propensity) / (k - 1) if k > 1 else 0.0
    pmf = tuple(propensity if i == chosen else rest for i in range(k))
    event = joined(decision(k=k, pmf=pmf, chosen=chosen), reward)
    workspace = vw.Workspace(["--cb_explore_adf", "--quiet"])
    examples = vw.DSJsonFormatParser(workspace).parse_json(joined_line(event))
    assert len(examples) == k + 1
    labels = [ex.get_label() for ex in examples]
    assert all(isinstance(label, vw.CBLabel) for label in labels)
    cb_labels = [label for label in labels if isinstance(label, vw.CBLabel)]
    assert cb_labels[0].shared
    for position, label in enumerate(cb_labels[1:]):
        assert not label.shared
        if position == chosen:
            assert label.label is not None
            action, cost, probability = label.label
            # VW reports the 1-based ``_label_Action`` on the example at ``_labelIndex + 1``.
            assert action == chosen + 1
            assert cost == pytest.approx(-reward, abs=ABS)
            assert probability == pytest.approx(event.decision.propensity, abs=ABS)
        else:
            assert label.label is None


def test_direct_binding_path_matches_the_public_api() -> None:
    """The fast path (vowpal_wabbit_next's bindings) must predict and learn like the wrappers."""
    fast = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2)
    public = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.2)
    assert fast._core is not None, "this vowpal_wabbit_next should expose the bindings"
    public._core = None
    request = rank_request(
        context=({"user": {"kind": "a"}},), features=lambda i: {"item": {"id": f"i{i}"}}
    )
    for step in range(30):
        served = decision(f"e{step}", request=request, chosen=step % 4)
        event = joined(served, float(step % 4 == 2), at=1.0)
        fast.learn_one(event)
        public.learn_one(event)
        assert fast.predict_one(request) == public.predict_one(request)
    assert max(fast.predict_one(request)) > 0.5
