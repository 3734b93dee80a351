"""Claims the docs make that the code can check: the variables they name, the tables they copy
from a type, the examples they show."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from policies.vw import vw_name
from server.api.openapi import document
from server.entry.app import create_app
from server.entry.settings import NAMES, Settings, env_name
from server.trainer.watch_settings import FILE_NAMES, WatcherSettings, to_mapping, to_wire
from sims.presets import PRESETS
from sims.scenarios import SCENARIOS, load_toml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _tracked(*patterns: str) -> list[Path]:
    """The repository's files matching ``patterns`` (``git ls-files``), so nothing untracked
    or generated counts."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *patterns],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return [ROOT / name for name in listed.split("\0") if name]


def test_every_banditd_variable_a_doc_names_is_read_somewhere() -> None:
    """A variable in the docs is a setting's, or one the code or the Makefile reads."""
    settings = {env_name(name) for name in NAMES if name != "watch"}
    settings |= {env_name(f"watch.{key}") for key in FILE_NAMES}
    code = "\n".join(
        p.read_text() for p in _tracked("*.py", "Makefile") if "tests/docs/" not in str(p)
    )
    named = {
        variable
        for doc in [*DOCS.glob("*.md"), ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
        for variable in re.findall(r"\bBANDITD_[A-Z][A-Z0-9_]*[A-Z0-9]\b", doc.read_text())
    }
    assert named  # the docs do name some
    unread = sorted(v for v in named - settings if v not in code)
    assert not unread, f"the docs name variables nothing reads: {unread}"


def test_the_watch_table_in_observability_is_the_code_s() -> None:
    text = (DOCS / "observability.md").read_text()
    section = text[text.index("## Settings (`[watch]`") : text.index("## Metrics added")]
    rows = [
        [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    defaults = to_mapping(WatcherSettings(), wire=False)
    wire = dict(zip(defaults, to_wire(WatcherSettings()), strict=True))
    assert [row[0] for row in rows] == list(FILE_NAMES)
    for key, wire_name, default, _ in rows:
        assert wire_name == wire[key], key
        assert default == str(defaults[key]).lower().removesuffix(".0"), key


def test_the_vw_name_examples_are_what_vw_name_gives() -> None:
    text = (DOCS / "vw-boundary.md").read_text()
    mapping = text[text.index("## The mapping") : text.index("## Crash classes")]
    examples = re.findall(r"`([^`\s]+)` → `([^`\s]+)`", mapping)
    assert len(examples) >= 4
    for name, encoded in examples:
        assert vw_name(name) == encoded, name


def test_the_policy_comparison_sweep_names_what_exists() -> None:
    plan = load_toml(DOCS / "policy-comparison.toml")
    assert plan.policies and not plan.scenarios
    for spec in plan.policies:
        assert spec.name.split("@")[0] in PRESETS, spec.name
    text = (DOCS / "policy-comparison.md").read_text()
    (command,) = re.findall(r"^banditd simulate --config .*?\n(?:    .*\n)*", text, re.MULTILINE)
    named = [word for word in command.split() if not word.startswith("-") and "/" not in word]
    scenarios = [word for word in named if word not in ("banditd", "simulate", "\\")]
    assert scenarios[:-1] == list(SCENARIOS), scenarios  # the last is --out's directory


_REQUEST = re.compile(r"\b(GET|PUT|POST|DELETE) (/[^\s`\[?,;)]+)")


def _shape(path: str) -> str:
    """A path without its ``/v1`` prefix and with every parameter written ``{}``."""
    return re.sub(r"\{[^}]*\}", "{}", path.removeprefix("/v1").rstrip("/.:") or "/")


def test_every_request_a_doc_names_is_an_operation_banditd_declares(tmp_path: Path) -> None:
    app = create_app(Settings(db=str(tmp_path / "docs.db")))
    declared = {
        (method.upper(), _shape(path))
        for path, item in document(app)["paths"].items()
        for method in item
        if method != "servers"
    }
    named = {
        (method, _shape(path), doc.name)
        for doc in [*DOCS.glob("*.md"), ROOT / "README.md"]
        for method, path in _REQUEST.findall(doc.read_text().replace("`", ""))
    }
    assert len(named) > 10
    unknown = sorted(
        (doc, method, path) for method, path, doc in named if (method, path) not in declared
    )
    assert not unknown, f"the docs name requests banditd does not serve: {unknown}"
