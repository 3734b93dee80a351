"""Sweeps in parallel, their files, and the simulate/evaluate commands."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sims.cli import evaluate_main, simulate_main
from sims.evaluation import estimate, read_logs, replay, write_logs
from sims.plots import plot_regret, plot_rewards
from sims.presets import PRESETS
from sims.report import compare, summarize, text_table, write_results
from sims.runner import run_with_logs
from sims.scenarios import SCENARIOS, load_toml
from sims.sweep import plan, sweep

PNG = b"\x89PNG\r\n\x1a\n"


def test_parallel_sweep_matches_inline_and_writes_json_csv_png(tmp_path: Path) -> None:
    scenarios = [replace(SCENARIOS["linear"], rounds=200), replace(SCENARIOS["abrupt"], rounds=200)]
    policies = [PRESETS["egreedy"], PRESETS["uniform"]]
    jobs = plan(scenarios, policies, [0, 1])
    parallel = sweep(jobs, workers=2, progress=False)
    inline = sweep(jobs[:2], workers=1, progress=False)
    assert [(r.scenario, r.policy, r.seed) for r in parallel] == [
        (j.scenario.name, j.policy.name, j.seed) for j in jobs
    ]
    for a, b in zip(parallel[:2], inline, strict=True):
        assert np.array_equal(a.expected, b.expected)
    paths = write_results(parallel, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert len(data["runs"]) == 8 and len(data["summary"]) == 4
    assert len(data["runs"][0]["expected"]) == 200
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {"mean_reward", "regret", "seed"} <= set(rows[0])
    for png in (
        plot_rewards(parallel, tmp_path / "reward.png", window=50),
        plot_regret(parallel, tmp_path / "regret.png"),
    ):
        assert png.read_bytes()[:8] == PNG
    table = text_table(summarize(parallel))
    assert "egreedy" in table and "uniform" in table


def test_simulate_command_runs_named_and_toml_scenarios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "custom.toml"
    config.write_text(
        """
seeds = 2
policies = ["egreedy@0.1"]

[[scenario]]
name = "small-many"
environment = "many-actions"
rounds = 150
[scenario.params]
catalog = 30
max_actions = 20

[[scenario]]
name = "quick-digits"
base = "digits"
rounds = 150

[[policy]]
name = "sq"
preset = "squarecb"
exploration = 0.3
"""
    )
    plan_ = load_toml(config)
    assert [s.name for s in plan_.scenarios] == ["small-many", "quick-digits"]
    assert plan_.policies[1].arguments == PRESETS["squarecb"].arguments
    out = tmp_path / "out"
    code = simulate_main(
        [
            *("linear", "--config", str(config), "--rounds", "150", "--workers", "1"),
            *("--out", str(out), "--no-progress", "--json", "--logs"),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["summary"]) == 3 * 2
    for name in ("results.json", "results.csv", "table.txt", "reward.png", "regret.png"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "logs").glob("*.dsjson"))) == 3 * 2 * 2


def test_simulate_rejects_unknown_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_main(["atlantis", "--no-progress"]) == 2
    assert "unknown scenario" in capsys.readouterr().err


def test_logged_lines_read_back_as_the_decisions_they_record(tmp_path: Path) -> None:
    scenario = replace(SCENARIOS["delayed"], rounds=120)
    result, lines = run_with_logs(scenario, PRESETS["egreedy"], 0)
    events = read_logs(write_logs(lines, tmp_path / "logs.dsjson"))
    assert len(events) == len(lines) == 120
    for e in events:
        assert abs(sum(e.pmf) - 1.0) <= 1e-6
        assert e.pmf[e.chosen_index] == e.propensity > 0.0
        assert e.reward in (0.0, 1.0)
    assert sum(e.defaulted for e in events) == result.defaulted


def test_evaluate_prints_one_json_object_and_the_estimate_tracks_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Logs of the uniform policy: the baseline's value is known exactly from the world.
    scenario = replace(SCENARIOS["linear"], rounds=1500)
    _, lines = run_with_logs(scenario, PRESETS["uniform"], 0)
    logs = write_logs(lines, tmp_path / "uniform.dsjson")
    baseline_truth = run_with_logs(scenario, PRESETS["baseline"], 0)[0].mean_reward()
    for estimator in ("ips", "snips", "dr"):
        code = evaluate_main(
            ["--logs", str(logs), "--policy", "baseline", "--estimator", estimator, "--json"]
        )
        assert code == 0
        out = json.loads(capsys.readouterr().out)
        assert {"estimate", "ci_low", "ci_high", "ess", "n"} <= set(out)
        assert out["n"] == 1500
        assert out["ci_low"] - 0.02 <= baseline_truth <= out["ci_high"] + 0.02
    code = evaluate_main(
        [
            *("--logs", str(logs), "--policy", PRESETS["egreedy"].arguments),
            *("--estimator", "dm", "--json", "--bootstrap", "50", "--clip", "20"),
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["n"] == 1500


def test_vw_candidate_is_evaluated_by_progressive_validation(tmp_path: Path) -> None:
    scenario = replace(SCENARIOS["linear"], rounds=300)
    _, lines = run_with_logs(scenario, PRESETS["uniform"], 0)
    events = read_logs(write_logs(lines, tmp_path / "u.dsjson"))
    data = replay(events, PRESETS["egreedy"].arguments, exploration=0.2)
    assert data.target_pmf.shape == (300, 10)
    assert np.allclose(data.target_pmf.sum(axis=1), 1.0, atol=1e-6)
    # Before any learning every action scores alike: the first prediction is the capped tie.
    assert data.target_pmf[0].max() == pytest.approx(0.8, abs=1e-6)
    result = estimate(data, "snips")
    assert result.n == 300 and 0.0 <= result.estimate <= 1.0


def test_evaluate_reports_bad_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.dsjson"
    bad.write_text('{"c": {}}\n')
    assert evaluate_main(["--logs", str(bad), "--policy", "uniform"]) == 2
    assert "bad.dsjson:1" in capsys.readouterr().err


def test_compare_finds_same_policy_indistinguishable_and_oracle_better() -> None:
    scenario = replace(SCENARIOS["linear"], rounds=300)
    a = [run_with_logs(scenario, PRESETS["uniform"], s)[0] for s in (0, 1, 2)]
    b = [run_with_logs(scenario, PRESETS["uniform"], s)[0] for s in (3, 4, 5)]
    oracle = [run_with_logs(scenario, PRESETS["oracle"], s)[0] for s in (3, 4, 5)]
    assert compare(a, b).indistinguishable
    better = compare(oracle, a)
    assert not better.indistinguishable and better.difference > 0.2
    assert compare(a[:1], b[:1]).runs_a == 1
