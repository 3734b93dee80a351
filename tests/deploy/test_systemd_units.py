"""The systemd units in ``deploy/systemd/`` as systemd reads them, and their commands and
environment file as banditd reads them: a unit systemd warns about, or a command, flag or
variable banditd does not take, fails here instead of on a server."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from server.entry.settings import Settings, env_name, load

UNITS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNITS = sorted(UNITS_DIR.glob("*.service"))
ENV_FILE = UNITS_DIR / "banditd.env"
INSTALLED = "/opt/banditd/bin/banditd"
"""Where docs/deploy.md installs banditd, as every unit's ExecStart names it."""
PENDING = {"migrate": "`banditd migrate` arrives with the PostgreSQL store (issue 19)"}
"""Commands the units use that arrive with the PostgreSQL store; checked once they exist."""
PENDING_VARIABLES = {"BANDITD_STORE"}
"""Variables the environment file sets that arrive with the PostgreSQL store (issue 19)."""


def test_every_unit_is_here() -> None:
    names = {unit.name for unit in UNITS}
    assert names == {"banditd-edge.service", "banditd-trainer.service", "banditd-migrate.service"}


def banditd() -> str:
    """The ``banditd`` script of the running interpreter's environment."""
    script = Path(sys.prefix) / "bin" / "banditd"
    found = str(script) if script.exists() else shutil.which("banditd")
    assert found, f"no banditd script in {sys.prefix}/bin or on PATH; install the package"
    return found


def directives(unit: Path) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` for each assignment in ``unit``, in order."""
    out, section = [], ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def command_lines(unit: Path) -> list[str]:
    """Every ExecStart of ``unit``, and those its comments suggest for a drop-in."""
    suggested = re.findall(r"^#\s+ExecStart=(.+)$", unit.read_text(), flags=re.MULTILINE)
    return [v for s, k, v in directives(unit) if k == "ExecStart"] + suggested


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_verifies_the_unit_without_a_warning(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = unit.read_text()
    assert INSTALLED in text
    # verify refuses an ExecStart binary that is not there, so the copy runs this
    # environment's banditd. It reads neither EnvironmentFile nor the User's entry (a missing
    # /etc/banditd/banditd.env or user banditd is no warning), so those stay as shipped.
    copy = tmp_path / unit.name
    copy.write_text(text.replace(INSTALLED, banditd()))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def commands() -> set[str]:
    """The commands ``banditd --help`` lists (a ``commands:`` section, a command a line)."""
    result = subprocess.run([banditd(), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = re.search(r"^commands:\n((?:  \S.*\n)+)", result.stdout, flags=re.MULTILINE)
    assert listed, result.stdout
    return {line.split()[0] for line in listed.group(1).splitlines()}


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_the_unit_runs_a_command_and_flags_banditd_takes(unit: Path) -> None:
    lines = command_lines(unit)
    assert lines
    known = commands()
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == INSTALLED, line
        if argv[1] not in known and argv[1] in PENDING:
            pytest.xfail(PENDING[argv[1]])
        assert argv[1] in known, line
        # argparse checks each value (choices, integers) as it reads it, before --help exits.
        result = subprocess.run(
            [banditd(), *argv[1:], "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (line, result.stderr)
        for flag in (a.partition("=")[0] for a in argv[2:] if a.startswith("--")):
            # Unknown flags go unremarked before --help, so each must be in the help's list.
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", result.stdout), (
                flag,
                result.stdout,
            )


def test_the_services_restart_as_a_dedicated_user() -> None:
    for name in ("banditd-edge.service", "banditd-trainer.service"):
        found = {k: v for s, k, v in directives(UNITS_DIR / name) if s == "Service"}
        assert found["Restart"] == "always", name
        assert found["User"] == "banditd", name
        assert found["EnvironmentFile"] == "/etc/banditd/banditd.env", name
        # banditd train lowers its own priority by trainer_nice; Nice= would add to it.
        assert "Nice" not in found, name


def test_the_environment_file_sets_only_settings_banditd_reads() -> None:
    known = {env_name(f.name) for f in fields(Settings) if f.name not in {"extra", "watch"}}
    active: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        assignment = re.match(r"^(#?)(BANDITD_\w+)=(.*)$", line)
        if assignment is None:
            assert not line or line.startswith("#"), line
            continue
        commented, name, value = assignment.groups()
        assert name in known | PENDING_VARIABLES, name
        if not commented and name in known:
            active[name] = value
    assert active
    load(environ=active)  # raises SettingsError naming what is wrong
