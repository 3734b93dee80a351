"""Every ``banditd`` command line the docs show, parsed by the command line itself.

Lines come from README.md and docs/*.md: code blocks (``\\`` continuations joined, ``$``
prompts, ``#`` comments and leading ``VAR=value`` or paths like ``/opt/banditd/bin/banditd``
allowed) and inline code spans, and from the Examples of every command's ``--help``. A line is
a *synopsis* when it holds placeholders (``[optional]``, ``A|B``, ``...``, ``FILE``, ``N``,
``ε``) or is inline code (a mention in prose, which need not be a whole line): then every
``--flag`` it names must be one of the command's options, and every ``a|b|c`` after a flag
with choices must be among them. Any other line is *concrete* and must parse as a whole with
:func:`server.entry.cli.parse_command`. Concrete ``simulate`` lines are
also run, shrunk to 100 rounds and one seed without plots.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.entry.cli import command_names, command_parser, parse_command
from sims.cli import simulate_main

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_OPERATORS = {"<", ">", ">>", "&&", "||", ";", "&", "|"}
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Za-z]+)?|[α-ω]|\.\.\.|…")
FENCE = re.compile(r"^\s*```")
INLINE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True, slots=True)
class Shown:
    """A command line as a document shows it."""

    where: str
    """``file:line``."""
    args: tuple[str, ...]
    """The words after ``banditd``, the command first."""
    inline: bool = False
    """In prose: a mention (``banditd export``, ``banditd serve --role edge``) that need not be
    a whole command line, so it is checked as a synopsis."""

    @property
    def synopsis(self) -> bool:
        return self.inline or any(
            "[" in a or "]" in a or "|" in a or PLACEHOLDER.fullmatch(a) for a in self.args[1:]
        )


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an apostrophe in prose, say
        return text.split()


def _banditd(words: list[str]) -> tuple[str, ...] | None:
    """The words after the ``banditd`` that starts a command, or None when none does."""
    for i, word in enumerate(words[:-1]):
        if Path(word).name == "banditd" and re.fullmatch(r"[a-z][a-z-]*", words[i + 1]):
            rest = words[i + 1 :]
            synopsis = any("[" in w for w in rest)
            for j, w in enumerate(rest):
                if w in SHELL_OPERATORS and not (synopsis and w == "|"):
                    rest = rest[:j]
                    break
            return tuple(rest)
    return None


def shown_in(text: str, name: str) -> list[Shown]:
    """The ``banditd`` command lines in a Markdown text (``name`` labels where they are)."""
    found: list[Shown] = []
    lines = text.splitlines()
    fenced = False
    pending = ""
    start = last = 0
    prose: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            prose.append((number, line))
            continue
        if not pending:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = (pending + stripped).strip().removeprefix("$ ")
        pending = ""
        args = _banditd(_words(logical))
        if args:
            found.append(Shown(f"{name}:{start}", args))
        elif (
            line[:1].isspace()
            and logical[:1] in "[-"
            and found
            and found[-1].where == f"{name}:{last}"
        ):
            # A synopsis wrapped onto an indented line of its own, without a backslash.
            found[-1] = Shown(found[-1].where, (*found[-1].args, *_words(logical)))
            continue
        last = start
    # Inline code may wrap across the lines of a paragraph.
    paragraph: list[tuple[int, str]] = []
    for number, line in [*prose, (0, "")]:
        if line.strip():
            paragraph.append((number, line))
            continue
        joined = " ".join(text for _, text in paragraph)
        for match in INLINE.finditer(joined):
            args = _banditd(_words(match.group(1)))
            if args:
                found.append(Shown(f"{name}:{paragraph[0][0]}", args, inline=True))
        paragraph = []
    return found


def _documented() -> list[Shown]:
    shown: list[Shown] = []
    for path in DOCUMENTS:
        shown += shown_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return shown


def _examples() -> list[Shown]:
    shown: list[Shown] = []
    for name in command_names():
        epilog = command_parser(name).epilog or ""
        for line in epilog.splitlines():
            args = _banditd(_words(line))
            if args:
                shown.append(Shown(f"banditd {name} --help", args))
    return shown


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return dict(parser._option_string_actions)


def problems(shown: Shown) -> list[str]:
    """What is wrong with one shown command line; empty when it is right."""
    command = shown.args[0]
    if command not in command_names():
        return [f"{shown.where}: no command {command!r}: banditd {' '.join(shown.args)}"]
    if not shown.synopsis:
        try:
            parse_command(list(shown.args))
        except SystemExit as exc:
            return [f"{shown.where}: exits {exc.code}: banditd {' '.join(shown.args)}"]
        return []
    options = _options(command_parser(command))
    found = []
    words = [w.strip("[]") for w in shown.args[1:]]
    for i, word in enumerate(words):
        flag = word.split("=", 1)[0]
        if not flag.startswith("-") or flag in {"-", "--"} or PLACEHOLDER.fullmatch(flag):
            continue
        if flag not in options:
            found.append(f"{shown.where}: banditd {command} has no option {flag}")
            continue
        choices = options[flag].choices
        value = words[i + 1] if i + 1 < len(words) else ""
        if choices is not None and "|" in value:
            for choice in value.split("|"):
                if choice not in choices:
                    found.append(f"{shown.where}: {flag} of banditd {command} has no {choice!r}")
    return found


DOCUMENTED = _documented()


def test_the_docs_show_command_lines_to_check() -> None:
    # Guards the extraction itself: if it broke, every other test here would pass vacuously.
    where = {s.where.split(":")[0] for s in DOCUMENTED}
    assert {"README.md", "docs/simulation.md", "docs/settings.md", "docs/deploy.md"} <= where
    commands = {s.args[0] for s in DOCUMENTED}
    assert {"serve", "train", "export", "import", "simulate", "evaluate"} <= commands
    assert any(not s.synopsis for s in DOCUMENTED) and any(s.synopsis for s in DOCUMENTED)


@pytest.mark.parametrize("shown", DOCUMENTED, ids=lambda s: s.where)
def test_documented_command_line_parses(shown: Shown) -> None:
    assert problems(shown) == []


@pytest.mark.parametrize("shown", _examples(), ids=lambda s: f"{s.where}: {' '.join(s.args)}")
def test_help_examples_parse(shown: Shown) -> None:
    assert not shown.synopsis, shown
    assert problems(shown) == []


@pytest.mark.parametrize("name", command_names())
def test_every_command_help_has_a_description_and_examples(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_command([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: banditd {name}")
    parser = command_parser(name)
    assert parser.description
    assert " ".join(parser.description.split())[:60] in " ".join(out.split())
    assert "\nexamples:\n  banditd " + name in out


def test_a_doc_showing_a_flag_that_does_not_exist_fails() -> None:
    text = """
```
banditd simulate linear --rounds 200 --no-such-flag
banditd serve [--db PATH] [--frobnicate N]
banditd evaluate --logs FILE --policy SPEC [--estimator ips|snips|bogus]
banditd frobnicate --now
banditd simulate [SCENARIO ...] [--seeds N]
                 [--rounds N] [--colour]
$ banditd export --db banditd.db \\
    --out logs.dsjson --since yesterday
```
Run `banditd import --db x.db --dry-run logs.dsjson` to see; `banditd export` alone is fine.
"""
    shown = shown_in(text, "test.md")
    assert [s.where for s in shown] == [f"test.md:{n}" for n in (3, 4, 5, 6, 7, 9, 12, 12)]
    found = [p for s in shown for p in problems(s)]
    assert found[0] == "test.md:3: exits 2: banditd simulate linear --rounds 200 --no-such-flag"
    assert found[1] == "test.md:4: banditd serve has no option --frobnicate"
    assert found[2] == "test.md:5: --estimator of banditd evaluate has no 'bogus'"
    assert found[3].startswith("test.md:6: no command 'frobnicate'")
    assert found[4] == "test.md:7: banditd simulate has no option --colour"
    assert found[5].startswith("test.md:9: exits 2: banditd export --db banditd.db --out")
    assert found[6] == "test.md:12: banditd import has no option --dry-run"
    assert len(found) == 7


def test_shown_lines_that_are_right_pass() -> None:
    text = """
```
BANDITD_WATCH_WINDOW=-5 banditd serve --port 8081   # a comment
sudo -u banditd /opt/banditd/bin/banditd copy \\
  --from sqlite:///a.db --to postgresql://banditd@db/banditd
banditd serve [--db PATH | --store URL] [--role edge|train|all]
banditd import - --db x.db < logs.dsjson
```
"""
    shown = shown_in(text, "ok.md")
    assert [s.args[0] for s in shown] == ["serve", "copy", "serve", "import"]
    assert [p for s in shown for p in problems(s)] == []


CONCRETE_SIMULATIONS = [s for s in DOCUMENTED if s.args[0] == "simulate" and not s.synopsis]


@pytest.mark.parametrize("shown", CONCRETE_SIMULATIONS, ids=lambda s: s.where)
def test_documented_simulation_runs(
    shown: Shown, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the docs name files relative to the repository
    shrunk = ["--rounds", "100", "--seeds", "1", "--no-plots", "--no-progress", "--workers", "1"]
    code = simulate_main([*shown.args[1:], *shrunk, "--out", str(tmp_path / "out")])
    assert code == 0
    assert (tmp_path / "out" / "results.json").stat().st_size > 0
