"""The in-process runner drives the real loop; the recommended default policy learns.

Learning tests average seeds 0 and 1 and state their margins: on the linear world the
recommended default's second-half mean expected reward must beat uniform by at least 0.10
(uniform earns ≈ 0.50) and come within 0.13 of the oracle (≈ 0.77; the ε = 0.2 cap alone may
cost ≈ 0.05); on the abrupt-change world its last-quarter reward must climb at least 0.05 above
the 200 rounds after the change, come within 0.06 of its pre-change level, and beat uniform by
at least 0.08.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sims.presets import PRESETS, RECOMMENDED, parse_policy
from sims.runner import event_prefix, run, run_loop, run_with_logs
from sims.scenarios import SCENARIOS

SHORT = replace(SCENARIOS["linear"], rounds=400)
SEEDS = (0, 1)


def test_same_seed_same_result_and_oracle_has_no_regret() -> None:
    a = run(SHORT, PRESETS["egreedy"], 5)
    b = run(SHORT, PRESETS["egreedy"], 5)
    assert np.array_equal(a.expected, b.expected) and np.array_equal(a.propensity, b.propensity)
    oracle = run(SHORT, PRESETS["oracle"], 5)
    assert oracle.regret()[-1] == pytest.approx(0.0, abs=1e-12)
    assert oracle.mean_reward() == pytest.approx(oracle.best.mean())
    assert np.all(np.diff(a.regret()) >= -1e-12)


def test_runner_logs_propensities_and_reports_every_reward_that_is_sent() -> None:
    result, lines = run_with_logs(SHORT, PRESETS["egreedy"], 0)
    assert result.rounds == 400
    assert np.all(result.propensity > 0.0) and np.all(result.propensity <= 1.0)
    assert result.reported == 400  # the linear world drops nothing
    assert len(lines) == 400  # every window closed and was joined by the end
    assert result.defaulted == 0 and result.late == 0
    assert result.explored is not None and 0 < result.explored < 400 * 0.3


def test_greedy_never_explores_and_uniform_is_not_pulled_to_the_first_action() -> None:
    greedy = run(SHORT, PRESETS["greedy"], 0)
    assert greedy.explored == 0 and np.all(greedy.propensity == 1.0)
    uniform = run(SHORT, PRESETS["uniform"], 0)
    assert np.allclose(uniform.propensity, 0.1)
    baseline = run(SHORT, PRESETS["baseline"], 0)
    assert baseline.explored == 0


def test_delayed_world_learns_late_and_missing_rewards_as_the_default() -> None:
    scenario = replace(SCENARIOS["delayed"], rounds=600)
    result = run(scenario, PRESETS["egreedy"], 0)
    assert result.late is not None and result.late > 0  # exponential delays overrun the window
    assert result.defaulted is not None
    # Dropped and late rewards both end up defaulted (deferred events activate after 1 s).
    assert result.defaulted >= 600 - result.reported
    assert result.reported < 600 * 0.9


def test_many_actions_never_serve_an_excluded_action() -> None:
    scenario = replace(SCENARIOS["many-actions"], rounds=300)
    result, loop = run_loop(scenario, PRESETS["egreedy"], 0)
    prefix = event_prefix(scenario, 0)
    excluded_seen = 0
    for t in range(scenario.rounds):
        decision = loop.store.get_decision(prefix + str(t))
        assert decision is not None
        mask = decision.request.excluded_mask()
        excluded_seen += sum(mask)
        assert not mask[decision.chosen_index]
        assert all(p == 0.0 for p, ex in zip(decision.pmf, mask, strict=True) if ex)
    assert excluded_seen > 0
    assert result.best.mean() >= result.expected.mean()


def test_recommended_default_beats_uniform_and_approaches_the_oracle_on_linear() -> None:
    scenario = SCENARIOS["linear"]

    def second_half(name: str) -> float:
        spec = RECOMMENDED if name == "recommended" else PRESETS[name]
        return float(np.mean([run(scenario, spec, seed).second_half_mean() for seed in SEEDS]))

    learned, uniform, oracle = (second_half(n) for n in ("recommended", "uniform", "oracle"))
    assert learned >= uniform + 0.10
    assert learned >= oracle - 0.13


def test_recommended_default_recovers_after_an_abrupt_change() -> None:
    scenario = SCENARIOS["abrupt"]
    change = int(scenario.params["change_at"])
    quarter = scenario.rounds // 4
    runs = [run(scenario, RECOMMENDED, seed).expected for seed in SEEDS]
    uniform = [run(scenario, PRESETS["uniform"], seed).expected for seed in SEEDS]
    before = np.mean([e[change - quarter : change].mean() for e in runs])
    after_change = np.mean([e[change : change + 200].mean() for e in runs])
    recovered = np.mean([e[-quarter:].mean() for e in runs])
    assert after_change <= before - 0.05  # the change hurt
    assert recovered >= after_change + 0.05  # learning pulled it back up
    assert recovered >= before - 0.06
    assert recovered >= np.mean([e[-quarter:].mean() for e in uniform]) + 0.08


def test_parse_policy_reads_presets_caps_and_raw_arguments() -> None:
    assert parse_policy("squarecb@0.1").exploration == 0.1
    raw = parse_policy("--cb_explore_adf --epsilon 0.3 -q ::@0.3")
    assert raw.arguments == "--cb_explore_adf --epsilon 0.3 -q ::" and raw.exploration == 0.3
    with pytest.raises(ValueError):
        parse_policy("egreedy@1.5")


def test_simulator_publishes_a_version_only_when_something_new_was_learned() -> None:
    """The in-process loop keeps the trainer's schedule: no version is published while nothing
    new was learned, not even before the first reward window closes (decisions every 3 s, a
    step with each, a 5 s window and a 4 s period)."""
    scenario = replace(
        SCENARIOS["linear"],
        rounds=20,
        interval=3.0,
        tick=1.0,
        reward_wait_time=5.0,
        model_export_frequency=4.0,
    )
    _, loop = run_loop(scenario, PRESETS["egreedy"], 0)
    counts = [m.learned_count for m in loop.store.list_models()]  # newest first
    assert len(counts) > 1
    assert counts == sorted(set(counts), reverse=True)
