"""``docs/simulation.md`` against the code: every scenario, preset, flag and output file it
should name, checked against what ``sims`` defines and what a run really writes."""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import pytest

from sims.cli import evaluate_main, evaluate_parser, simulate_main, simulate_parser
from sims.presets import PRESETS
from sims.scenarios import FAMILIES, SCENARIOS, Scenario, load_toml

DOC = Path(__file__).resolve().parents[2] / "docs" / "simulation.md"
TEXT = DOC.read_text()


def _section(heading: str) -> str:
    """The text from ``heading`` to the next heading of its level or above."""
    level = heading.split(" ")[0]
    start = TEXT.index(heading + "\n")
    rest = TEXT[start + len(heading) :]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", rest, re.MULTILINE)]
    return heading + rest[: min(ends, default=len(rest))]


def _rows(section: str) -> dict[str, list[str]]:
    """A Markdown table's rows by their first cell (backquotes stripped): the other cells."""
    out = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            out[cells[0].strip("`")] = cells[1:]
    return out


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        option
        for action in parser._actions
        if action.help is not argparse.SUPPRESS
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]


def test_every_named_scenario_is_listed_with_its_family() -> None:
    rows = _rows(_section("## Worlds (`sims/environment.py` and one module per family)"))
    families = {name: re.findall(r"`([\w-]+)`", cells[0])[0] for name, cells in rows.items()}
    assert families == {name: scenario.environment for name, scenario in SCENARIOS.items()}
    for family in [*FAMILIES, "delayed"]:
        assert f"`{family}`" in _section("### `banditd simulate`"), family


def test_every_preset_is_listed_with_its_arguments_and_exploration() -> None:
    rows = _rows(_section("## Policies (`sims/presets.py`)"))
    assert list(rows) == list(PRESETS)
    for name, spec in PRESETS.items():
        arguments, epsilon = rows[name]
        assert arguments.startswith(f"`{spec.arguments}`"), name
        assert epsilon.split(" ")[0] == f"{spec.exploration:g}", name


LIVE = "### Against a live server, and the checks before any run"


@pytest.mark.parametrize(
    ("parser", "headings"),
    [
        (simulate_parser(), ("### `banditd simulate`", LIVE)),
        (evaluate_parser(), ("### `banditd evaluate`",)),
    ],
    ids=["simulate", "evaluate"],
)
def test_every_flag_is_in_the_synopsis_and_a_table(
    parser: argparse.ArgumentParser, headings: tuple[str, ...]
) -> None:
    synopsis = _section("## Commands").split("```")[1]
    documented = {name.split(" ")[0] for h in headings for name in _rows(_section(h))}
    for option in _options(parser):
        assert re.search(rf"\[{option}\b", synopsis) or f" {option} " in synopsis, option
        assert option in documented, f"{option} has no row under {' or '.join(headings)}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sweep's output directory (fixed policies only, so no VW learner runs; one
    besides uniform and oracle, which ``comparison.png`` compares it with)."""
    out = tmp_path_factory.mktemp("sim")
    argv = ["linear", "--seeds", "1"]
    argv += [arg for name in ("uniform", "oracle", "baseline") for arg in ("--policy", name)]
    argv += ["--rounds", "40", "--workers", "1", "--logs", "--no-progress", "--out", str(out)]
    assert simulate_main(argv) == 0
    return out


def test_every_file_simulate_writes_is_described(run: Path) -> None:
    written = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert "logs/linear-uniform-0.dsjson" in written
    names = {re.sub(r"^logs/.*\.dsjson$", "logs/SCENARIO-POLICY-SEED.dsjson", p) for p in written}
    rows = _rows(_section("### `banditd simulate`").split("It writes, in `--out`:")[1])
    assert names == set(rows)


def test_the_columns_and_keys_the_doc_names_are_those_written(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (run / "results.csv").open(newline="") as f:
        header = next(csv.reader(f))
    described = _rows(_section("### `banditd simulate`"))["results.csv"][0]
    assert re.findall(r"`(\w+)`", described) == header
    capsys.readouterr()
    logs = run / "logs" / "linear-uniform-0.dsjson"
    assert evaluate_main(["--logs", str(logs), "--policy", "uniform", "--json"]) == 0
    keys = list(json.loads(capsys.readouterr().out))
    section = _section("### `banditd evaluate`")
    listed = section[section.index("one object with") : section.index("(the logged policy")]
    assert re.findall(r"`(\w+)`", listed) == keys


def test_the_toml_example_plans_what_it_says(tmp_path: Path) -> None:
    (block,) = re.findall(r"^```toml\n(.*?)^```$", TEXT, re.DOTALL | re.MULTILINE)
    path = tmp_path / "sweep.toml"
    path.write_text(block)
    plan = load_toml(path)
    assert plan.seeds == 5
    assert [s.name for s in plan.scenarios] == ["big-catalog"]
    assert [p.name for p in plan.policies] == ["egreedy@0.1", "squarecb", "my-vw"]
    (scenario,) = plan.scenarios
    assert scenario.rounds == 4000
    assert scenario.build(0).name == "many-actions"


def test_the_scenario_defaults_the_doc_states_are_the_code_s() -> None:
    worlds = " ".join(
        _section("## Worlds (`sims/environment.py` and one module per family)").split()
    )
    defaults = Scenario(name="x", environment="linear")
    stated = re.search(
        r"runs (\d+) rounds \(`many-actions` (\d+)\) unless told otherwise, a decision every "
        r"([\d.]+) virtual seconds, `loop.step` every ([\d.]+), a ([\d.]+) s reward wait "
        r"\(`delayed`: ([\d.]+) s\) and a model published every ([\d.]+) s",
        worlds,
    )
    assert stated is not None
    assert [float(x) for x in stated.groups()] == [
        defaults.rounds,
        SCENARIOS["many-actions"].rounds,
        defaults.interval,
        defaults.tick,
        defaults.reward_wait_time,
        SCENARIOS["delayed"].reward_wait_time,
        defaults.model_export_frequency,
    ]
    # the other named scenarios keep the defaults the sentence gives
    for name, scenario in SCENARIOS.items():
        if name not in ("many-actions", "delayed"):
            assert (scenario.rounds, scenario.reward_wait_time) == (
                defaults.rounds,
                defaults.reward_wait_time,
            ), name
