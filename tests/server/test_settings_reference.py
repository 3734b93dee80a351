"""``docs/settings.md`` is what the generator writes, and what it shows runs as shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
from msgspec import Meta

from server.entry.settings import load
from server.entry.settings_reference import COMMAND, UndocumentedSetting, settings_rows

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "settings.md"


def _run(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``argv`` run as its own process with this checkout's code, bounded in time."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BANDITD_")}
    environ |= {"PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        argv, cwd=cwd, env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_docs_settings_md_is_what_the_generator_writes(tmp_path: Path) -> None:
    done = _run([sys.executable, "-m", "server.entry.settings_reference"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == DOC.read_text(), (
        f"docs/settings.md is out of date with the settings' types; regenerate it: {COMMAND}"
    )
    assert COMMAND in DOC.read_text().split("\n## ")[0]  # stated at the top


@dataclass(frozen=True, slots=True, kw_only=True)
class _Half:
    port: Annotated[int, Meta(ge=0, le=65535, description="TCP port")] = 8080
    colour: Annotated[int, Meta(ge=0)] = 3


def test_a_setting_without_a_description_stops_the_generator() -> None:
    assert [row.name for row in settings_rows(_Half, ("port",))] == ["port"]
    with pytest.raises(UndocumentedSetting, match=r"^colour: no description \(give it one in"):
        settings_rows(_Half, ("port", "colour"))


def test_every_row_of_the_reference_has_each_of_its_cells() -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    assert len(rows) > 30
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] and cells[1].startswith("`BANDITD_"), row
        assert cells[-1] not in ("", "—"), f"no description: {row}"
        assert cells[-2] not in ("", "—"), f"no default: {row}"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(), re.DOTALL | re.MULTILINE)


def test_the_settings_file_shown_in_the_doc_loads_as_described(tmp_path: Path) -> None:
    (block,) = _blocks("toml")
    path = tmp_path / "banditd.toml"
    path.write_text(block)
    settings = load(config_file=str(path), environ={})
    assert (settings.port, settings.admin_keys, settings.learn_interval) == (
        9000,
        ("new", "old"),
        0.5,
    )
    assert settings.watch == {"window": 400, "guardrail_enabled": False}


def test_the_refusals_shown_in_the_doc_are_what_banditd_prints(tmp_path: Path) -> None:
    (block,) = _blocks("text")
    lines = block.splitlines()
    commands = [(n, line) for n, line in enumerate(lines) if line.startswith("$ ")]
    assert len(commands) == 2
    for n, line in commands:
        *assignments, program, command = line.removeprefix("$ ").split()
        assert program == "banditd"
        env = dict(a.split("=", 1) for a in assignments)
        done = _run([sys.executable, "-m", "server.entry.cli", command], cwd=tmp_path, env=env)
        assert (done.returncode, done.stderr) == (2, lines[n + 1] + "\n"), line
    assert not list(tmp_path.iterdir())  # refused before any store was opened
