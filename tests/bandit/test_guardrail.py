"""The guardrail's state machine: when it trips, when it recovers, and what it records."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.estimators import Estimate
from bandit.guardrail import Guardrail, GuardrailSettings, GuardrailState
from bandit.watch import Observation, Watch, WatchSettings

SETTINGS = GuardrailSettings(margin=0.05, min_events=100)


def estimate(value: float, radius: float, n: int) -> Estimate:
    return Estimate(
        estimate=value, ci_low=value - radius, ci_high=value + radius, std_error=radius / 3,
        ess=float(n), n=n,
    )  # fmt: skip


estimates = st.builds(
    estimate,
    st.floats(min_value=-1.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=1.0),
    st.integers(min_value=0, max_value=400),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(estimates, max_size=60))
def test_transitions_follow_the_rules_exactly(seq: list[Estimate]) -> None:
    g = Guardrail(SETTINGS)
    for t, e in enumerate(seq):
        before = g.state
        change = g.check(e, now=float(t), seq=t)
        enough = e.n >= SETTINGS.min_events
        if before is GuardrailState.SERVING:
            should = enough and e.ci_high < -SETTINGS.margin
            assert (change is not None) == should
        else:
            assert (change is not None) == (enough and e.ci_low > 0.0)
        if change is not None:
            assert change.state is g.state is not before
            assert change.improvement == e and change.seq == t and change.reason
            assert g.since == float(t)
        assert g.trips - g.recoveries == (1 if g.tripped else 0)
    assert len(g.history) == g.trips + g.recoveries


def test_the_reason_states_the_evidence() -> None:
    g = Guardrail(SETTINGS)
    trip = g.check(estimate(-0.3, 0.1, 150), now=5.0)
    assert trip is not None and trip.state is GuardrailState.TRIPPED
    assert "-0.2000" in trip.reason and "-0.0500" in trip.reason and "150 events" in trip.reason
    assert g.reason == trip.reason and g.tripped


def test_disabled_never_trips_and_disabling_releases() -> None:
    g = Guardrail(GuardrailSettings(enabled=False, min_events=10))
    assert g.check(estimate(-1.0, 0.01, 1000), now=1.0) is None
    g.configure(SETTINGS, now=2.0)
    assert g.check(estimate(-1.0, 0.01, 1000), now=3.0) is not None
    released = g.configure(GuardrailSettings(enabled=False), now=4.0)
    assert released is not None and released.state is GuardrailState.SERVING
    assert released.improvement is None and not g.tripped


def test_release_by_hand_only_acts_when_tripped() -> None:
    g = Guardrail(SETTINGS)
    assert g.release(1.0, "manual") is None
    g.check(estimate(-0.5, 0.1, 200), now=2.0)
    back = g.release(3.0, "model v3 activated by hand")
    assert back is not None and back.reason == "model v3 activated by hand"
    assert g.recoveries == 0  # a manual release is not evidence of recovery


def test_a_watched_stream_trips_when_the_policy_turns_bad_and_recovers_when_it_is_good() -> None:
    """On-policy logs with the baseline explored at 20 %: the policy is worth 0.8, then 0.2, then
    0.8 again against the baseline's 0.5. Trips within a window of the change and recovers within
    a window of the second change."""
    rng = np.random.default_rng(7)
    window = 500
    watch = Watch(WatchSettings(window=window))
    g = Guardrail(GuardrailSettings(margin=0.05, min_events=150))
    changes: list[tuple[int, GuardrailState]] = []
    for t in range(3000):
        policy_value = 0.2 if 1000 <= t < 2000 else 0.8
        baseline = rng.random() < 0.2
        p = 0.2 if baseline else 0.8
        reward = float(rng.random() < (0.5 if baseline else policy_value))
        weights = (0.0 if baseline else 1.0 / 0.8, (1.0 if baseline else 0.0) / p, 0.5 / p)
        watch.add(
            Observation(
                seq=t,
                decided_at=float(t),
                model_version=1,
                reward=reward,
                propensity=p,
                weights=weights,
                explored=baseline,
                defaulted=False,
            )
        )
        change = g.check(watch.improvement(), now=float(t), seq=t)
        if change is not None:
            changes.append((t, change.state))
    assert [s for _, s in changes] == [GuardrailState.TRIPPED, GuardrailState.SERVING], changes
    (tripped, _), (recovered, _) = changes
    assert 1000 < tripped <= 1000 + window, tripped
    assert 2000 < recovered <= 2000 + window, recovered
    assert math.isclose(watch.snapshot().baseline.estimate, 0.5, abs_tol=0.2)
