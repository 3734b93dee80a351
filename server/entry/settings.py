"""Process settings, read once at the edge (CLI flags, a TOML file, environment variables).

Loop settings that clients can change (reward wait, exploration, …) live in the store as a
:class:`bandit.config.ServiceConfiguration`; these are the operator's.

Every setting has a type and a range, written once in :class:`Settings`'s annotations, and is
decoded by msgspec wherever it comes from: a wrong type, a value out of range or an unknown
name is a :class:`SettingsError` of one line that names the setting (``watch.window`` for the
``[watch]`` table) and where it came from. Each setting can also come from an environment
variable (:func:`env_name`); variables are strings, parsed to the setting's type, with lists
comma-separated.

>>> load(environ={"BANDITD_PORT": "9000", "BANDITD_WATCH_WINDOW": "400"}).port
9000
>>> load(environ={"BANDITD_PORT": "abc"})
Traceback (most recent call last):
...
server.entry.settings.SettingsError: port: expected `int`, got `str` (from BANDITD_PORT)
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Any, get_origin, get_type_hints

import msgspec
from msgspec import Meta

from server.entry.store_url import StoreURL, StoreURLError, parse_store_url
from server.trainer.watch_settings import (
    FILE_NAMES,
    InvalidWatchSetting,
    decode,
    from_mapping,
    validation_problem,
)

DEFAULT_PORT = 8080


def _about(description: str, *, unit: str = "", kind: str = "") -> Meta:
    """A setting's description, and the unit of its number (``"seconds"``) or the kind of its
    text (``"path"``), for ``docs/settings.md`` (:mod:`server.entry.settings_reference`)."""
    extra = {"unit": unit} if unit else {"kind": kind} if kind else None
    return Meta(description=description, extra=extra)


Seconds = Annotated[float, Meta(gt=0, le=86400, extra={"unit": "seconds"})]
"""A duration in seconds, within (0, 86400]."""
Key = Annotated[str, Meta(pattern=r"^\S+$", extra={"kind": "key"})]
"""An API key: one or more characters, none of them white space."""
Keys = Annotated[tuple[Key, ...], Meta(max_length=2)]
"""The keys valid at once for one role: at most two, so a key can be rotated without downtime."""
Count = Annotated[int, Meta(ge=1)]
"""A positive integer."""


class SettingsError(ValueError):
    """Settings are missing, unreadable or unsafe; the message names the setting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How one banditd process runs.

    Each setting is written once, here: its type and range in its annotation, its unit (where
    it has one) and description in a :class:`msgspec.Meta`. :meth:`check` enforces the
    bounds and the rules across settings; ``python -m server.entry.settings_reference``
    writes ``docs/settings.md`` from these annotations, and a test fails when the two differ
    or a setting has no description. ``extra`` is not a setting: code may set it, but a file,
    a flag or the environment never does.
    """

    db: Annotated[
        str, Meta(min_length=1), _about("the SQLite file, when `store` is empty", kind="path")
    ] = "banditd.db"
    store: Annotated[
        str,
        _about(
            "the store: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or a "
            "PostgreSQL URL `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (also "
            "`postgres://`; needs `pip install 'banditd[postgres]'`); empty for the SQLite "
            "file `db`",
            kind="store URL",
        ),
    ] = ""
    host: Annotated[
        str,
        Meta(min_length=1),
        _about("address to bind; a non-loopback one requires an API key", kind="address"),
    ] = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535), _about("TCP port (0: any free port)")] = DEFAULT_PORT
    client_keys: Annotated[
        Keys, _about("keys accepted for rank, reward and activate (two during a rotation)")
    ] = ()
    admin_keys: Annotated[
        Keys, _about("keys accepted for everything (configuration, models, logs)")
    ] = ()
    max_actions: Annotated[
        int, Meta(ge=1, le=1000), _about("most actions one rank request may offer")
    ] = 50
    max_body_bytes: Annotated[Count, _about("largest request body accepted", unit="bytes")] = (
        1 << 20
    )
    learn_interval: Annotated[
        float,
        Meta(gt=0, le=3600),
        _about("how long the learner sleeps when it has nothing to do", unit="seconds"),
    ] = 0.2
    learn_batch: Annotated[
        int, Meta(ge=1, le=1_000_000), _about("joined events the learner takes at a time")
    ] = 128
    checkpoint_interval: Annotated[
        float,
        Meta(ge=0, le=86400),
        _about(
            "time between learner checkpoints (model and cursor; 0: after every batch); a "
            "crash redoes at most this much learning, never more or less than once per event",
            unit="seconds",
        ),
    ] = 1.0
    learn_share_under_load: Annotated[
        float,
        Meta(ge=0.01, le=1),
        _about(
            "with both roles in one process (`--role all`): while requests arrive at "
            "`busy_requests_per_second` or more, the share of the time the learner and the "
            "watcher together take (they share the interpreter with ranking); idle, they run "
            "at full speed. A trainer process of its own yields through `trainer_nice` instead"
        ),
    ] = 0.15
    busy_requests_per_second: Annotated[
        float,
        Meta(ge=0, le=1e9),
        _about(
            "with both roles in one process: the request rate above which the learner yields",
            unit="requests per second",
        ),
    ] = 200.0
    keep_models: Annotated[Count, _about("published model versions kept for rollback")] = 20
    synchronous: Annotated[
        str,
        Meta(pattern=r"(?i)^(FULL|NORMAL|EXTRA)$"),
        _about("SQLite's `synchronous` pragma; `FULL` is durable on power loss"),
    ] = "FULL"
    model_signing_key: Annotated[
        str,
        _about(
            "HMAC key that signs exported models and verifies imported ones; when empty, a "
            "random key is generated once and kept in the store",
            kind="text",
        ),
    ] = ""
    retention_interval: Annotated[
        float,
        Meta(gt=0, le=366 * 86400),
        _about("time between runs of the log-retention job", unit="seconds"),
    ] = 3600.0
    max_model_bytes: Annotated[
        Count, _about("largest model file a model import accepts", unit="bytes")
    ] = 256 << 20
    import_max_bytes: Annotated[
        Count,
        _about(
            "largest body `POST /v1/logs/import` accepts, else 413 (DSJSON lines spooled to a "
            "temporary file, so this bounds disk, not memory)",
            unit="bytes",
        ),
    ] = 1 << 30
    header_timeout: Annotated[
        Seconds,
        _about(
            "how long a client may take from the first byte of a request to the end of its "
            "headers; past it the server answers 408 and closes the connection"
        ),
    ] = 10.0
    body_timeout: Annotated[
        Seconds,
        _about(
            "how long a client may take to send a request's whole body once its headers are "
            "in, plus one second per `body_min_rate` bytes received; past it the request gets "
            "408 and the connection is closed"
        ),
    ] = 30.0
    body_min_rate: Annotated[
        Count,
        _about("the pace a large body must keep up to extend its time", unit="bytes per second"),
    ] = 64 << 10
    idle_timeout: Annotated[
        Seconds,
        _about(
            "how long an open connection may sit between requests (or before its first) "
            "before the server closes it (HTTP keep-alive)"
        ),
    ] = 75.0
    max_connections: Annotated[
        int,
        Meta(ge=1, le=1_000_000),
        _about(
            "most connections served at once; one more is answered 503 and closed at once, so "
            "slow or idle clients cannot starve the process of descriptors"
        ),
    ] = 1024
    lock_timeout: Annotated[
        float,
        Meta(ge=0, le=60),
        _about(
            "how long a write waits for the database's write lock (held by another process, "
            "say) before the request answers 503 with `Retry-After`",
            unit="seconds",
        ),
    ] = 1.0
    retrain_events_per_second: Annotated[
        float,
        Meta(ge=0),
        _about(
            "most logged events a background retrain replays per second (0: as fast as it "
            "can), so a retrain leaves the machine to ranking",
            unit="events per second",
        ),
    ] = 0.0
    refresh_interval: Annotated[
        float,
        Meta(gt=0, le=60),
        _about(
            "how often an edge looks in the store for a new model, configuration, policy or "
            "guardrail state: every edge serves what the trainer published or another edge "
            "changed within this period",
            unit="seconds",
        ),
    ] = 0.5
    report_interval: Annotated[
        float,
        Meta(gt=0, le=60),
        _about(
            "how often the trainer stores its report (loop status, learner figures, its "
            "metrics) that edges serve",
            unit="seconds",
        ),
    ] = 0.5
    command_poll: Annotated[
        float,
        Meta(gt=0, le=60),
        _about("how often the trainer looks for admin changes queued by edges", unit="seconds"),
    ] = 0.1
    command_timeout: Annotated[
        Seconds,
        _about(
            "how long an edge waits for the trainer to take, and again to finish, an admin "
            "change before answering 503"
        ),
    ] = 30.0
    lease_ttl: Annotated[
        float,
        Meta(ge=1, le=3600),
        _about(
            "how long the trainer's lease lasts unrenewed (it renews every third of that); a "
            "standby trainer takes over this long after the trainer died",
            unit="seconds",
        ),
    ] = 5.0
    workers: Annotated[
        int,
        Meta(ge=1, le=64),
        _about("edge processes `banditd serve` runs on the one port (also `--workers`)"),
    ] = 1
    trainer_nice: Annotated[
        int,
        Meta(ge=0, le=19),
        _about(
            "how much the trainer process (`banditd train`, or the one `banditd serve` "
            "starts) lowers its scheduling priority (`nice`) when it starts: beside edges on "
            "the same cores it learns with the CPU they leave, and at full speed when they idle"
        ),
    ] = 10
    access_log: Annotated[
        bool,
        _about(
            "log one line per request to standard error (the `banditd.access` logger): method, "
            "path, status, bytes sent (headers included) and duration in milliseconds; off, no "
            "request is logged and none pays for it"
        ),
    ] = False
    watch: Annotated[
        dict[str, Any],
        _about(
            "the loop watcher's settings: the `[watch]` table, typed and range-checked by "
            ":func:`load` (:mod:`server.trainer.watch_settings`)"
        ),
    ] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> StoreURL:
        """The store these settings name: ``store`` parsed, else the SQLite file ``db``
        (:meth:`check` has refused a ``store`` that does not parse)."""
        return parse_store_url(self.store) if self.store else StoreURL("sqlite", self.db)

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self.client_keys or self.admin_keys)

    def check(self) -> Settings:
        """Validate each setting against its type and range, then the rules across settings.

        Returns:
            ``self``, unchanged.

        Raises:
            SettingsError: the first setting that is wrong, named (``store`` a URL of no form
                banditd takes); or a non-loopback ``host`` without an API key.
        """
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        _convert(values, strict=True, source=lambda _: "")
        _watch(self.watch, strict=True, source=lambda _: "")
        try:
            self.location  # noqa: B018 (parsed for its error)
        except StoreURLError as exc:
            raise SettingsError(f"store: {exc}") from None
        if not self.auth_enabled and not is_loopback(self.host):
            raise SettingsError(
                f"refusing to bind {self.host!r} without an API key: anyone who can reach it "
                "could rank, reward and reconfigure. Set BANDITD_ADMIN_KEY (and optionally "
                "BANDITD_CLIENT_KEY) or admin_keys in the config file, or bind 127.0.0.1."
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


NAMES: tuple[str, ...] = tuple(f.name for f in fields(Settings) if f.name != "extra")
"""The settings a file, the environment or a flag may set, in the order the docs list them
(``extra`` is for code only)."""
# Settings holding several values; given as one text, they are comma-separated.
_LISTS = frozenset(n for n, kind in get_type_hints(Settings).items() if get_origin(kind) is tuple)
# Names kept from before every setting had a variable, for the two key lists.
_ENV_NAMES = {"client_keys": "BANDITD_CLIENT_KEY", "admin_keys": "BANDITD_ADMIN_KEY"}


def env_name(setting: str) -> str:
    """The environment variable ``setting`` can come from (``watch.x`` for the ``[watch]`` table).

    >>> env_name("learn_batch"), env_name("watch.window"), env_name("admin_keys")
    ('BANDITD_LEARN_BATCH', 'BANDITD_WATCH_WINDOW', 'BANDITD_ADMIN_KEY')
    """
    return _ENV_NAMES.get(setting) or "BANDITD_" + setting.replace(".", "_").upper()


@dataclass(frozen=True, slots=True)
class _Layer:
    """Settings from one source, by name (``watch`` a mapping by ``[watch]`` key)."""

    values: Mapping[str, Any]
    parse: bool  # strings are parsed to each setting's type (environment variables)
    source: Callable[[str], str]  # where a setting (``watch.window``, say) came from


def _error(where: str, problem: str, source: str = "") -> SettingsError:
    return SettingsError(f"{where}: {problem}" + (f" ({source})" if source else ""))


def _convert(values: Mapping[str, Any], *, strict: bool, source: Callable[[str], str]) -> Settings:
    """``values`` decoded into :class:`Settings` over the defaults (strings parsed unless
    ``strict``); a bad value is a :class:`SettingsError` naming it and its ``source``."""
    try:
        return msgspec.convert(values, Settings, strict=strict)
    except msgspec.ValidationError as exc:
        where, problem = validation_problem(exc)
        raise _error(where, problem, source(where.split("[")[0].split(".")[0])) from None


def _watch(values: object, *, strict: bool, source: Callable[[str], str]) -> dict[str, Any]:
    """The ``[watch]`` table, typed (strings parsed unless ``strict``), range-checked, by key."""
    try:
        table = decode(values, wire=False, strict=strict)
        from_mapping(table, wire=False)
    except InvalidWatchSetting as exc:
        where = f"watch.{exc.name}"
        raise _error(where, exc.problem, source(where)) from None
    return table


def _decode(layer: _Layer) -> Settings:
    """The layer's settings over the defaults, each checked against its type and range."""
    unknown = sorted(set(layer.values) - set(NAMES))
    if unknown:
        many = "s" if len(unknown) > 1 else ""
        raise _error(", ".join(unknown), f"unknown setting{many}", layer.source(unknown[0]))
    # A list given as one text (every variable, and a file's ``client_keys = "a,b"``) is split
    # at commas, blanks dropped.
    values = {
        name: [item.strip() for item in value.split(",") if item.strip()]
        if name in _LISTS and isinstance(value, str)
        else value
        for name, value in layer.values.items()
    }
    decoded = _convert(values, strict=not layer.parse, source=layer.source)
    watch = _watch(decoded.watch, strict=not layer.parse, source=layer.source)
    return replace(decoded, watch=watch)


def _environment(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings set in ``env``, as strings; empty ones are unset."""
    values: dict[str, Any] = {}
    for name in NAMES:
        raw = env.get(env_name(name), "")
        if raw and name != "watch":
            values[name] = raw
    watch = {key: env.get(env_name(f"watch.{key}"), "") for key in FILE_NAMES}
    if any(watch.values()):
        values["watch"] = {key: raw for key, raw in watch.items() if raw}
    return values


def _read(config_file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(config_file).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read config file {config_file!r}: {exc}") from None


def load(
    *,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from defaults, then a TOML file, then environment, then ``overrides``.

    Environment: ``BANDITD_<SETTING>`` for each setting (:func:`env_name`;
    ``BANDITD_WATCH_<KEY>`` for the ``[watch]`` table), parsed to the setting's type; lists
    are comma-separated (``BANDITD_CLIENT_KEY`` and ``BANDITD_ADMIN_KEY``: at most two keys
    each). An empty variable counts as unset; other ``BANDITD_*`` names are left alone. A
    ``[watch]`` key from the environment replaces that key only, not the file's whole table.

    Args:
        config_file: path of a TOML file of settings, or None.
        overrides: values from command-line flags, by setting name; None values are ignored.
        environ: the environment (default :data:`os.environ`).

    Raises:
        SettingsError: one line naming the setting that is unknown, of the wrong type or out
            of range (and where it came from), an unreadable file, or an unsafe combination.
    """
    file = _read(config_file) if config_file else {}
    flags = {name: value for name, value in (overrides or {}).items() if value is not None}
    layers = (
        _Layer(file, parse=False, source=lambda _: f"in {config_file}"),
        _Layer(
            _environment(os.environ if environ is None else environ),
            parse=True,
            source=lambda name: f"from {env_name(name)}",
        ),
        _Layer(flags, parse=False, source=lambda name: f"from --{name}"),
    )
    # Every layer is checked whole, even where a later one overrides a value: a bad value
    # anywhere is a mistake to report, not one to leave waiting until the override goes.
    values: dict[str, Any] = {}
    watch: dict[str, Any] = {}
    for layer in layers:
        decoded = _decode(layer)
        values |= {name: getattr(decoded, name) for name in layer.values if name != "watch"}
        watch |= decoded.watch
    return Settings(**values, watch=watch).check()
