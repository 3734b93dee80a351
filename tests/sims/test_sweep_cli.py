"""Sweeps in parallel, their files, and the simulate/evaluate commands."""

from __future__ import annotations

import asyncio
import csv
import json
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from sims.cli import evaluate_main, simulate_main
from sims.evaluation import estimate, read_logs, replay, write_logs
from sims.plots import plot_regret, plot_rewards
from sims.presets import PRESETS
from sims.remote import KEY_HEADER
from sims.report import compare, summarize, text_table, write_results
from sims.runner import run_with_logs
from sims.scenarios import SCENARIOS, Scenario, load_toml
from sims.sweep import SweepFailed, plan, run_jobs, sweep
from tests.e2e.conftest import BanditServer, free_port

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


# -- refusals before any run starts (issue 20) --------------------------------------------------


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    """Run ``banditd simulate argv`` (writing to ``tmp_path/out``); assert it exits 2 with one
    line on stderr and writes nothing, and return that line."""
    out = tmp_path / "out"
    assert simulate_main([*argv, "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    return err.strip()


def test_mistyped_preset_is_refused_before_any_run_with_the_known_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(
        ["linear", "--policy", "egreedy", "--policy", "sqarecb", "--rounds", "500"],
        capsys,
        tmp_path,
    )
    assert line == (
        "banditd simulate: unknown policy preset 'sqarecb'; known: default, personalizer, "
        "greedy, egreedy, squarecb, regcbopt, bag, cover, uniform, baseline, oracle"
    )


def test_vw_arguments_are_checked_by_building_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(["linear", "--policy", "--cb_explore_adf --bogus 3"], capsys, tmp_path)
    assert line.startswith("banditd simulate: policy '--cb_explore_adf --bogus 3': invalid")
    assert "--bogus" in line
    line = _refused(["linear", "--policy", "--epsilon 0.1"], capsys, tmp_path)
    assert "must include --cb_explore_adf" in line
    line = _refused(["linear", "--policy", "egreedy@2"], capsys, tmp_path)
    assert "exploration must be within [0, 1]" in line


def test_policy_names_resolve_against_the_toml_file_and_unknown_ones_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(
        '[[policy]]\nname = "mine"\narguments = "--cb_explore_adf --epsilon 0.05 -q ::"\n'
        'exploration = 0.05\n\n[[policy]]\nname = "sq"\npreset = "squarecb"\n'
    )
    line = _refused(["linear", "--config", str(config), "--policy", "myne"], capsys, tmp_path)
    assert line.startswith("banditd simulate: unknown policy preset 'myne'; known: default, ")
    assert line.endswith(", oracle, mine, sq")
    argv = ["linear", "--config", str(config), "--policy", "mine@0.1", "--rounds", "100"]
    argv += ["--seeds", "1", "--workers", "1", "--no-plots", "--no-progress"]
    assert simulate_main([*argv, "--out", str(tmp_path / "ran")]) == 0
    printed = capsys.readouterr().out
    assert "mine@0.1" in printed and "sq " not in printed  # --policy picks; sq does not run


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('policies = ["egreedy", "sqarecb"]\n', "unknown policy preset 'sqarecb'; known: "),
        ('[[policy]]\nname = "x"\npreset = "coverr"\n', "unknown policy preset 'coverr'"),
        ('[[policy]]\nname = "typo"\n', "unknown policy preset 'typo'"),
        (
            '[[policy]]\nname = "x"\narguments = "--cb_explore_adf --bag -3"\n',
            "policy 'x': invalid policy arguments",
        ),
        (
            '[[scenario]]\nname = "w"\nenvironment = "linaer"\n',
            "scenario 'w': unknown environment 'linaer'; known: linear",
        ),
        (
            '[[scenario]]\nname = "w"\nbase = "many-actions"\n[scenario.params]\ncatalg = 5\n',
            "scenario 'w': ",
        ),
        ('[[scenario]]\nname = "w"\nbase = "linear"\nroundz = 5\n', "unknown scenario keys"),
        (
            '[[scenario]]\nname = "w"\nbase = "linear"\nreward_wait_time = 0.5\n',
            "scenario 'w': rewardWaitTime must be between 1 s and 2 days",
        ),
        ("seeds = \n", "mine.toml: "),
    ],
    ids=[
        *("list", "preset", "no-arguments", "vw", "environment", "param", "key"),
        *("loop-settings", "syntax"),
    ],
)
def test_toml_references_are_checked_before_any_run(
    toml: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(toml)
    line = _refused(["linear", "--config", str(config)], capsys, tmp_path)
    assert line.startswith(f"banditd simulate: {config}: "), line
    assert expected in line, line


def test_unknown_scenario_is_refused_with_the_known_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(["linear", "atlantis"], capsys, tmp_path)
    assert line == (
        "banditd simulate: unknown scenario 'atlantis'; known: "
        "linear, nonlinear, drift, abrupt, delayed, many-actions, digits"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--url", "http://192.0.2.1:8080"], "only targets loopback addresses, not '192.0.2.1'"),
        (["--url", "ftp://127.0.0.1:8080"], "is not an http(s) URL"),
        (
            ["--url", "http://127.0.0.1:9", "--policy", "uniform"],
            "policy 'uniform' cannot run on a server",
        ),
        (
            ["--url", "http://127.0.0.1:9", "--time-scale", "0.05"],
            "--time-scale 0.05 is too fast for scenario 'linear': rewardWaitTime must be",
        ),
        (["--url", "http://127.0.0.1:9", "--logs"], "--logs runs in process"),
    ],
    ids=["public", "scheme", "fixed-policy", "too-fast", "logs"],
)
def test_url_runs_refuse_what_a_live_server_cannot_run(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(["linear", *argv], capsys, tmp_path)
    assert line.startswith("banditd simulate: ") and expected in line, line


def test_url_that_does_not_answer_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    out = tmp_path / "out"
    argv = ["linear", "--url", f"http://127.0.0.1:{port}", "--no-progress", "--out", str(out)]
    assert simulate_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"banditd simulate: cannot reach http://127.0.0.1:{port}: "), err
    assert len(err.splitlines()) == 1 and not out.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_failing_run_in_a_parallel_sweep_is_reported_and_the_others_finish() -> None:
    # No action offered: the world builds, and its rounds fail in the worker process (the
    # command line refuses such a scenario before it runs; the sweep itself must cope).
    broken = Scenario(name="broken", environment="linear", params={"n_actions": 0}, rounds=50)
    good = replace(SCENARIOS["linear"], rounds=50)
    jobs = plan([good, broken], [PRESETS["egreedy"]], [0, 1])
    outcome = run_jobs(jobs, workers=2, progress=False)
    assert [(r.scenario, r.seed) for r in outcome.results] == [("linear", 0), ("linear", 1)]
    assert [f.line() for f in outcome.failures] == [
        f"run failed: scenario broken, policy egreedy, seed {seed}: every action is excluded"
        for seed in (0, 1)
    ]
    with pytest.raises(SweepFailed, match="scenario broken, policy egreedy, seed 0"):
        sweep(jobs, workers=1, progress=False)


def test_simulate_whose_every_run_fails_writes_nothing_and_says_so_in_json(
    live: BanditServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["many-actions", "--url", live.url, "--key", KEY, "--policy", "bag", "--seeds", "2"]
    argv += ["--rounds", "20", "--no-progress", "--out", str(out), "--json"]
    assert simulate_main(argv) == 1
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["summary"] == [] and [f["seed"] for f in printed["failed"]] == [0, 1]
    assert len(captured.err.strip().splitlines()) == 2 and not out.exists()


# -- evaluate takes presets (issue 20) ---------------------------------------------------------


def test_evaluate_takes_presets_and_refuses_unknown_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lines = run_with_logs(replace(SCENARIOS["linear"], rounds=300), PRESETS["uniform"], 0)
    logs = str(write_logs(lines, tmp_path / "u.dsjson"))
    by_preset = {}
    for policy in ("squarecb", "egreedy", "egreedy@0.05", PRESETS["egreedy"].arguments):
        assert evaluate_main(["--logs", logs, "--policy", policy, "--json"]) == 0
        by_preset[policy] = json.loads(capsys.readouterr().out)["estimate"]
    # The preset is its arguments; ε from 'name@ε' goes through the caps.
    assert by_preset["egreedy"] == by_preset[PRESETS["egreedy"].arguments]
    assert by_preset["egreedy@0.05"] != by_preset["egreedy"]
    assert evaluate_main(["--logs", logs, "--policy", "sqarecb"]) == 2
    assert capsys.readouterr().err.strip() == (
        "banditd evaluate: unknown policy preset 'sqarecb'; known: default, personalizer, "
        "greedy, egreedy, squarecb, regcbopt, bag, cover, uniform, baseline, oracle"
    )
    assert evaluate_main(["--logs", logs, "--policy", "oracle"]) == 2
    assert "the oracle knows only simulated worlds" in capsys.readouterr().err


# -- banditd simulate --url, against a live server (issue 20) ----------------------------------

KEY = "sim-admin-key"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[BanditServer]:
    """A real ``banditd serve`` with an admin key that takes at most 20 actions per rank, so
    the ``many-actions`` scenario (10–50 per round) really fails on it and ``linear`` (10)
    does not."""
    server = BanditServer(tmp_path / "live.db", free_port(), tmp_path)
    server.configure(max_actions=20, admin_keys=[KEY])  # type: ignore[arg-type]
    server.start()
    try:

        async def healthy() -> None:
            async with aiohttp.ClientSession() as http:
                await server.wait_healthy(http)

        asyncio.run(healthy())
        yield server
    finally:
        server.kill()


def _get(server: BanditServer, path: str) -> Any:
    request = urllib.request.Request(server.url + path, headers={KEY_HEADER: KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_simulate_url_runs_against_the_server_and_reports_a_failing_run_in_one_line(
    live: BanditServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    argv = ["linear", "many-actions", "--url", live.url, "--key", KEY, "--policy", "egreedy"]
    argv += ["--rounds", "40", "--seeds", "1", "--no-progress", "--out", str(out), "--json"]
    assert simulate_main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(
        "banditd simulate: run failed: scenario many-actions, policy egreedy, seed 0: "
    ), lines[0]
    assert "Traceback" not in captured.err
    # The run that finished is written in full: JSON, CSV, table and plots.
    printed = json.loads(captured.out)
    assert [(s["scenario"], s["policy"]) for s in printed["summary"]] == [("linear", "egreedy")]
    [failed] = printed["failed"]
    assert (failed["scenario"], failed["policy"], failed["seed"]) == ("many-actions", "egreedy", 0)
    assert "at most 20 actions may be ranked" in failed["message"]
    data = json.loads((out / "results.json").read_text())
    assert [(r["scenario"], r["policy"], r["seed"]) for r in data["runs"]] == [
        ("linear", "egreedy", 0)
    ]
    assert len(data["runs"][0]["expected"]) == 40
    assert "egreedy" in (out / "table.txt").read_text()
    assert len((out / "results.csv").read_text().splitlines()) == 2
    for png in ("reward.png", "regret.png"):
        assert (out / png).read_bytes()[:8] == PNG
    # The policy and the scenario's timing at the default time scale (0.2) were applied.
    assert _get(live, "/v1/configurations/policy") == {
        "name": "egreedy",
        "arguments": PRESETS["egreedy"].arguments,
    }
    service = _get(live, "/v1/configurations/service")
    assert service["rewardWaitTime"] == "PT1S" and service["modelExportFrequency"] == "PT2S"
    health = _get(live, "/healthz")
    assert health  # the server is still up and answering

    # Without --policy the server's own policy runs, labelled "server"; the key may come from
    # the environment.
    monkeypatch.setenv("BANDITD_ADMIN_KEY", KEY)
    argv = ["linear", "--url", live.url, "--rounds", "20", "--seeds", "1", "--no-plots"]
    assert simulate_main([*argv, "--no-progress", "--out", str(tmp_path / "own"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(s["scenario"], s["policy"]) for s in printed["summary"]] == [("linear", "server")]
    assert _get(live, "/v1/configurations/policy")["name"] == "egreedy"  # left in place


def test_simulate_url_with_a_wrong_key_stops_before_any_run(
    live: BanditServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["linear", "--url", live.url, "--key", "wrong", "--policy", "egreedy"]
    assert simulate_main([*argv, "--no-progress", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("banditd simulate: GET /v1/configurations/service answered 401: "), err
    assert len(err.splitlines()) == 1 and not out.exists()
