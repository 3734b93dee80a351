"""``docs/settings.md``, written from the settings' own types.

Every row of the reference comes from the code that reads the setting: its name, type, range
and default from :class:`~server.entry.settings.Settings`'s annotations (and its description
from their :class:`msgspec.Meta`), its variable from :func:`~server.entry.settings.env_name`;
a ``[watch]`` key's description from the docstring of the class that holds it, its range from
the check that refuses it and its default from :class:`WatcherSettings`. The error lines shown
are the ones :func:`~server.entry.settings.load` raises. Regenerate with::

    python -m server.entry.settings_reference > docs/settings.md

>>> from typing import Annotated
>>> from msgspec import Meta
>>> type_and_range(msgspec.inspect.type_info(Annotated[int, Meta(ge=1, le=100_000)]))
('integer', '1..100,000')
>>> type_and_range(msgspec.inspect.type_info(Annotated[float, Meta(gt=0, le=60)]))
('number', '(0, 60]')
>>> attributes('''One line.
...
... Attributes:
...     window: events a segment
...         spans.
...     alpha: ``α``.
... ''')
{'window': 'events a segment spans', 'alpha': '`α`'}
"""

from __future__ import annotations

import inspect
import math
import re
import sys
from dataclasses import dataclass
from typing import Any

import msgspec

from server.entry.settings import NAMES, Settings, SettingsError, env_name, load
from server.trainer.watch_settings import (
    FILE_NAMES,
    InvalidWatchSetting,
    WatcherSettings,
    from_mapping,
    holder,
    to_mapping,
    to_wire,
)

COMMAND = "python -m server.entry.settings_reference > docs/settings.md"
"""The command that writes ``docs/settings.md``; the file says so at its top."""


class UndocumentedSetting(ValueError):
    """A setting has no description to put in the reference."""

    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"{name}: no description (give it one in {where})")
        self.name = name


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One setting as the reference lists it (every field Markdown; ``api`` is a ``[watch]``
    key's name on the wire, empty for the other settings)."""

    name: str
    variable: str
    kind: str
    range: str
    default: str
    description: str
    api: str = ""

    def cells(self) -> list[str]:
        """The row's cells in the reference's columns (the API name only where it has one)."""
        api = [f"`{self.api}`"] if self.api else []
        names = [f"`{self.name}`", f"`{self.variable}`", *api]
        return [*names, self.kind, self.range, self.default, self.description]


def _number(value: float) -> str:
    """``1`` for 1.0, ``0.2``, ``8080``, ``1,048,576``: how a bound or a default reads."""
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))


def _bounds(info: msgspec.inspect.IntType | msgspec.inspect.FloatType) -> str:
    """``1..1,000`` for integers, ``(0, 60]`` for numbers, ``≥ 1`` with one bound."""
    low = info.ge if info.ge is not None else info.gt
    high = info.le if info.le is not None else info.lt
    if isinstance(info, msgspec.inspect.IntType):
        # An integer's bounds read inclusive: > 0 is 1.., < 10 is ..9.
        low = None if low is None else (low if info.ge is not None else low + 1)
        high = None if high is None else (high if info.le is not None else high - 1)
        if low is not None and high is not None:
            return f"{_number(low)}..{_number(high)}"
        return (
            f"≥ {_number(low)}" if low is not None else "" if high is None else f"≤ {_number(high)}"
        )
    if low is not None and high is not None:
        opening = "[" if info.ge is not None else "("
        closing = "]" if info.le is not None else ")"
        return f"{opening}{_number(low)}, {_number(high)}{closing}"
    if low is not None:
        return f"{'≥' if info.ge is not None else '>'} {_number(low)}"
    if high is not None:
        return f"{'≤' if info.le is not None else '<'} {_number(high)}"
    return ""


_CHOICES = re.compile(r"^\(\?i\)\^\((?P<choices>[A-Za-z_|]+)\)\$$")


def _either(words: list[str]) -> str:
    quoted = [f"`{word}`" for word in words]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def type_and_range(info: Any) -> tuple[str, str]:
    """What a setting's type reads as (``seconds``, ``list of at most 2 keys``) and its range
    (empty when it has none), from :func:`msgspec.inspect.type_info` of its annotation.

    A :class:`msgspec.Meta` ``extra`` of ``{"unit": ...}`` names a number's unit and
    ``{"kind": ...}`` what a text holds.
    """
    extra: dict[str, Any] = {}
    if isinstance(info, msgspec.inspect.Metadata):
        extra, info = info.extra or {}, info.type
    if isinstance(info, msgspec.inspect.BoolType):
        return "boolean", ""
    if isinstance(info, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        noun = "integer" if isinstance(info, msgspec.inspect.IntType) else "number"
        return extra.get("unit", noun), _bounds(info)
    if isinstance(info, msgspec.inspect.StrType):
        choices = _CHOICES.match(info.pattern or "")
        if choices:
            return "text", _either(choices["choices"].split("|")) + " (any case)"
        return extra.get("kind", "text"), "not empty" if info.min_length == 1 else ""
    if isinstance(info, msgspec.inspect.VarTupleType):
        item, _ = type_and_range(info.item_type)
        most = f"at most {info.max_length} " if info.max_length is not None else ""
        return f"list of {most}{item}s", ""
    raise TypeError(f"no way to describe a setting of type {info!r}")


def _default(value: object) -> str:
    if value == "":
        return "empty"
    if value == ():
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return _number(value)
    return f"`{value}`"


def settings_rows(cls: type[Any] = Settings, names: tuple[str, ...] = NAMES) -> list[Row]:
    """A row for each of ``names`` (settings of the dataclass ``cls``) but ``watch``, in order.

    Raises:
        UndocumentedSetting: a setting whose annotation has no description.
    """
    shape = msgspec.inspect.type_info(cls)
    if not isinstance(shape, msgspec.inspect.DataclassType):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in shape.fields}
    rows = []
    for name in names:
        if name == "watch":
            continue
        info = fields[name].type
        described = isinstance(info, msgspec.inspect.Metadata) and info.extra_json_schema
        description = (described or {}).get("description", "")
        if not description:
            where = f"its annotation in {cls.__name__}: _about(...) or Meta(description=...)"
            raise UndocumentedSetting(name, where)
        kind, bounds = type_and_range(info)
        rows.append(
            Row(
                name=name,
                variable=env_name(name),
                kind=kind,
                range=bounds,
                default=_default(fields[name].default),
                description=description,
            )
        )
    return rows


_ENTRY = re.compile(r"^(?P<name>\w+): (?P<text>.*)$")


def attributes(doc: str | None) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style docstring, by name, each entry one line
    (reST's double backquotes made Markdown's single ones)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    if "Attributes:" not in lines:
        return {}
    out: dict[str, str] = {}
    name = ""
    for line in lines[lines.index("Attributes:") + 1 :]:
        if line and not line.startswith(" "):
            break
        entry = _ENTRY.match(line.strip()) if line.startswith("    ") else None
        if entry and not line.startswith("     "):
            name = entry["name"]
            out[name] = entry["text"]
        elif name and line.strip():
            out[name] += " " + line.strip()
    return {key: text.replace("``", "`").removesuffix(".") for key, text in out.items()}


def _refusals(key: str, default: object) -> str:
    """The range of a ``[watch]`` key, as the check that refuses a value outside it says it."""
    if isinstance(default, bool):
        return ""
    probes: tuple[object, ...] = (
        (-(10**18), 10**18) if isinstance(default, int) else (math.nan, -math.inf, math.inf)
    )
    problems: list[str] = []
    for probe in probes:
        try:
            from_mapping({key: probe}, wire=False)
        except InvalidWatchSetting as exc:
            problem = exc.problem.removeprefix("must be ").removeprefix("within ")
            problem = problem.removeprefix("a finite number ")
            if problem not in problems:
                problems.append(problem)
    return "; ".join(problems)


def watch_rows() -> list[Row]:
    """A row for each key of the ``[watch]`` table, in :data:`FILE_NAMES`' order.

    Raises:
        UndocumentedSetting: a key its holder's docstring does not describe.
    """
    defaults = to_mapping(WatcherSettings(), wire=False)
    wire = list(to_wire(WatcherSettings()))
    rows = []
    for key in FILE_NAMES:
        cls, attr = holder(key)
        description = attributes(cls.__doc__).get(attr, "")
        if not description:
            raise UndocumentedSetting(f"watch.{key}", f"the Attributes of {cls.__qualname__}")
        default = defaults[key]
        kind = {bool: "boolean", int: "integer", float: "number"}[type(default)]
        rows.append(
            Row(
                name=key,
                variable=env_name(f"watch.{key}"),
                api=wire[list(defaults).index(key)],
                kind=kind,
                range=_refusals(key, default),
                default=_default(default),
                description=description,
            )
        )
    return rows


def _refused(environ: dict[str, str]) -> str:
    """The line ``banditd`` prints for these variables, as a shell session shows it."""
    try:
        load(environ=environ)
    except SettingsError as exc:
        given = " ".join(f"{name}={value}" for name, value in environ.items())
        return f"$ {given} banditd serve\nbanditd: {exc}"
    raise AssertionError(f"{environ} was accepted")  # the examples are chosen to be refused


_INTRO = """\
# Process settings

This file is written by `{command}`,
from the settings' types in `server/entry/settings.py` (and, for the `[watch]` table, in
`server/trainer/watch_settings.py`); edit those, not this file.

The operator's settings of a banditd process. Loop settings that clients change through the
API (reward wait, exploration, learning mode, …) live in the store instead and are not listed
here.

## Where they come from

Each setting is read, later sources winning, from:

1. its default (below);
2. the TOML file named by `--config FILE`: top-level keys by the setting's name, and a
   `[watch]` table;
3. its environment variable: `BANDITD_` and the setting's name in capitals
   (`BANDITD_LEARN_BATCH`), `BANDITD_WATCH_` and the key for the `[watch]` table
   (`BANDITD_WATCH_WINDOW`); the two key lists keep their singular names
   (`BANDITD_CLIENT_KEY`, `BANDITD_ADMIN_KEY`);
4. the command line: `--db` or `--store` (not both; `--db` names the SQLite file even when
   `store` is set in the file or the environment), `--host`, `--port`, `--workers`.

A variable holds text, parsed to the setting's type: `9000` for an integer, `0.5` for a number,
`true`/`false` (or `1`/`0`) for a boolean, and for a list its items separated by commas
(`BANDITD_ADMIN_KEY=new,old`). An empty variable counts as unset. A `[watch]` variable replaces
that one key of the file's table, not the whole table. Other `BANDITD_*` variables are left
alone.

Every setting is checked against its type and range, in every source, even where a later source
overrides it. A wrong type, a value out of range or an unknown name stops the process with one
line that names the setting (`watch.window` for a key of the table), what is wrong and where
the value came from, and exit status 2:

```text
{refusals}
```

Numbers given as integers are accepted for decimal settings (`learn_interval = 1`); decimals
are not accepted for integer ones (`keep_models = 2.5`).
A list may also be given in the file as one text, its items separated by commas
(`admin_keys = "new,old"`). A file might read:

```toml
port = 9000
admin_keys = ["new", "old"]
learn_interval = 0.5

[watch]
window = 400
guardrail_enabled = false
```

## Settings

A range `1..64` includes both ends; `(0, 60]` excludes 0 and includes 60.

"""

_AFTER_SETTINGS = """
Keys are text without white space. banditd refuses to bind a non-loopback `host` without a key.

A store URL may carry a password; banditd masks it (`***`) in every message it prints. A URL
given as `--store` is visible to other users of the machine in the process list, and
`banditd serve` hands it on to its children the same way: prefer `BANDITD_STORE` (the children
inherit it), a libpq password file (`~/.pgpass`) or `PGPASSWORD` for a password.
A PostgreSQL store's schema is changed only by `banditd migrate --store URL`: a process that
finds the database at another schema version stops with one line saying so. An SQLite file is
migrated whenever it is opened.

## The `[watch]` table

The loop watcher's window, guardrail and drift test; `docs/observability.md` says what each
does. A `PUT /v1/loop/configuration` (its fields are the API names below) is stored and wins
over these from then on.

"""


def _table(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or "—" for cell in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def reference() -> str:
    """The whole of ``docs/settings.md``.

    Raises:
        UndocumentedSetting: a setting or ``[watch]`` key without a description.
    """
    refusals = "\n".join(
        _refused(environ) for environ in ({"BANDITD_PORT": "70000"}, {"BANDITD_WATCH_WINDOW": "-5"})
    )
    header = ["setting", "environment variable", "type", "range", "default", "meaning"]
    settings = _table(header, [row.cells() for row in settings_rows()])
    header = ["key", "environment variable", "API field", *header[2:]]
    watch = _table(header, [row.cells() for row in watch_rows()])
    intro = _INTRO.format(command=COMMAND, refusals=refusals)
    return intro + settings + _AFTER_SETTINGS + watch


def main() -> int:
    """Print the reference; a setting without a description is one line on stderr, exit 1."""
    try:
        text = reference()
    except UndocumentedSetting as exc:
        print(f"settings_reference: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
