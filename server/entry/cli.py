"""The ``banditd`` command line.

``serve``, ``train``, ``export``, ``import``, ``migrate`` and ``copy`` are built in; other
commands (``simulate``, ``evaluate``, ``demo``, …) are registered by their packages under the
``banditd.commands`` entry-point group and imported only when named, so ``banditd serve`` (and
``banditd --help``) never imports them. The top-level help describes a known plugin from
:data:`PLUGIN_SUMMARIES`, not from its parser, for the same reason.

A plugin's entry point names its ``NAME_main(argv) -> int``; :func:`parse_command` finds its
parser as ``NAME_parser()`` in the same module.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sqlite3
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from bandit.errors import ServiceUnavailable
from server.api.connections import ListenError, StartupError, serve
from server.entry.app import create_app, open_store, wait_until_ready
from server.entry.failures import db_path_problem, startup_failure
from server.entry.logs_cli import export_main, export_parser, import_main, import_parser
from server.entry.settings import Settings, SettingsError, load
from server.entry.store_cli import copy_main, copy_parser, migrate_main, migrate_parser
from server.entry.supervisor import reserve_port, supervise
from server.trainer.role import run_trainer

ROLES = ("edge", "train", "all")
WIDTH = 79
"""Columns of the descriptions in ``--help`` (printed as they are, beside raw examples)."""
READY_TIMEOUT = 60.0
"""Seconds an edge started alone waits for a trainer to create the loop in its store."""


SERVE_EXAMPLES = """\
examples:
  banditd serve
  banditd serve --db loop.db --port 8081 --workers 2
  banditd serve --config banditd.toml
  banditd serve --role edge --store postgresql://banditd@db/banditd --host 0.0.0.0
  BANDITD_ADMIN_KEY=secret banditd serve --host 0.0.0.0
"""

TRAIN_EXAMPLES = """\
examples:
  banditd train
  banditd train --store postgresql://banditd@db/banditd --config banditd.toml
"""


def _arguments(
    prog: str, description: str, examples: str, *, serving: bool
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=textwrap.fill(description, WIDTH),
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", help="SQLite file (default banditd.db)")
    parser.add_argument(
        "--store", help="store URL: sqlite:///PATH or postgresql://... (instead of --db)"
    )
    parser.add_argument("--config", help="TOML file with settings")
    if serving:
        parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
        parser.add_argument("--port", type=int, help="TCP port (default 8080)")
        parser.add_argument(
            "--role",
            choices=ROLES,
            help="run one role: edge (rank, reward, admin API), train (the trainer), or all "
            "(both in this one process); default: supervise one trainer and --workers edges",
        )
        parser.add_argument("--workers", type=int, help="edge processes on the port (default 1)")
        parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
        # Given by the supervisor to all its edges but one: one summary line per `banditd serve`.
        parser.add_argument("--no-summary", action="store_true", help=argparse.SUPPRESS)
    return parser


def serve_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd serve``."""
    return _arguments(
        "banditd serve",
        "Run the service: the Personalizer-compatible API, the dashboard and the learner. "
        "By default a supervisor runs one trainer and --workers edge processes on one store; "
        "--role runs one role in this process. Settings come from --config, BANDITD_* "
        "variables and these flags (flags win).",
        SERVE_EXAMPLES,
        serving=True,
    )


def train_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd train``."""
    return _arguments(
        "banditd train",
        "Run a trainer: a standby until it holds the store's trainer lease, then the one "
        "process that joins, learns, publishes, watches and runs jobs.",
        TRAIN_EXAMPLES,
        serving=False,
    )


def _settings(args: argparse.Namespace, overrides: dict[str, object]) -> Settings | int:
    """Settings from the file, the environment and flags; or the exit status of a bad one."""
    if args.db and args.store:
        print("banditd: give --db PATH or --store URL, not both.", file=sys.stderr)
        return 2
    # --db names the SQLite file over a store URL from the file or the environment.
    store = "" if args.db else args.store
    try:
        settings = load(
            config_file=args.config, overrides={"db": args.db, "store": store, **overrides}
        )
    except SettingsError as exc:
        print(f"banditd: {exc}", file=sys.stderr)
        return 2
    location = settings.location
    problem = location.kind == "sqlite" and db_path_problem(
        location.target, "--store" if settings.store else "--db"
    )
    if problem:
        print(f"banditd: {problem}", file=sys.stderr)
        return 2
    return settings


def _common(args: argparse.Namespace) -> list[str]:
    """The arguments every supervised child gets: the store and the settings file."""
    out = []
    if args.db:
        out += ["--db", args.db]
    if args.store:
        out += ["--store", args.store]
    if args.config:
        out += ["--config", args.config]
    return out


def _log_setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _serve(argv: list[str]) -> int:
    args = serve_parser().parse_args(argv)
    overrides = {"host": args.host, "port": args.port, "workers": args.workers}
    settings = _settings(args, overrides)
    if isinstance(settings, int):
        return settings
    if args.role is None:
        # What would stop every child is said once, here, before any starts.
        try:
            open_store(settings).close()
            port = reserve_port(settings.host, settings.port)
        except ListenError as exc:
            print(f"banditd: {exc}", file=sys.stderr)
            return 2
        except (StartupError, sqlite3.Error, OSError, ServiceUnavailable) as exc:
            print(f"banditd: {startup_failure(settings.location, exc)}", file=sys.stderr)
            return 1
        _log_setup()
        return supervise(_common(args), host=settings.host, port=port, workers=settings.workers)
    _log_setup()
    if args.role == "train":
        return _run_trainer(settings)
    try:
        if args.role == "edge":
            store = open_store(settings)
            wait_until_ready(store, READY_TIMEOUT)
            app = create_app(settings, store, with_trainer=False)
        else:
            app = create_app(settings)
        tune_gc()
        serve(
            app,
            settings,
            announce=lambda msg: print(msg, flush=True),
            reuse_port=args.reuse_port,
            summary=not args.no_summary,
        )
    except (ListenError, SettingsError) as exc:
        # SettingsError: settings stored or checked only when the app is built.
        print(f"banditd: {exc}", file=sys.stderr)
        return 2
    except (StartupError, sqlite3.Error, OSError, ServiceUnavailable) as exc:
        print(f"banditd: {startup_failure(settings.location, exc)}", file=sys.stderr)
        return 1
    return 0


def _train(argv: list[str]) -> int:
    settings = _settings(train_parser().parse_args(argv), {})
    if isinstance(settings, int):
        return settings
    _log_setup()
    return _run_trainer(settings)


def _run_trainer(settings: Settings) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await run_trainer(settings, open_store(settings), stop)

    try:
        return asyncio.run(main())
    except (SettingsError, StartupError, sqlite3.Error, OSError, ServiceUnavailable) as exc:
        print(f"banditd: {startup_failure(settings.location, exc)}", file=sys.stderr)
        return 1


def tune_gc() -> None:
    """Keep garbage-collection pauses out of request latency.

    Everything loaded at start-up (modules, the app, VW workspaces) is moved out of the
    collector's sight, and young-generation collections run every 50,000 allocations instead of
    700: a rank allocates hundreds of short-lived objects, and the default thresholds made full
    collections land inside requests (rank p99 at 32 connections: ~40 ms -> ~19 ms, p50 ~9 ms).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A built-in command: its one-line summary, its parser and what runs it."""

    summary: str
    parser: Callable[[], argparse.ArgumentParser]
    main: Callable[[list[str]], int]


BUILTIN: dict[str, Command] = {
    "serve": Command(
        summary="run the service (API, dashboard, learner) on a store",
        parser=serve_parser,
        main=_serve,
    ),
    "train": Command(
        summary="run a trainer alone (a standby while another holds the lease)",
        parser=train_parser,
        main=_train,
    ),
    "export": Command(
        summary="write a store's joined events as DSJSON", parser=export_parser, main=export_main
    ),
    "import": Command(
        summary="read DSJSON logs into a store (warm start, replay)",
        parser=import_parser,
        main=import_main,
    ),
    "migrate": Command(
        summary="bring a store's schema to this version", parser=migrate_parser, main=migrate_main
    ),
    "copy": Command(
        summary="move a stopped loop into an empty store", parser=copy_parser, main=copy_main
    ),
}

PLUGIN_SUMMARIES = {
    "simulate": "compare policies on simulated worlds, in process or against a live server",
    "evaluate": "estimate a policy's reward on DSJSON logs (counterfactual evaluation)",
    "demo": "watch a loop learn: a short-window server driven by a simulated world",
}
"""One-line summaries of the plugin commands banditd's own packages register, shown by
``banditd --help`` without importing them; another package's command is listed by name."""


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group="banditd.commands")}


def _top_parser(plugins: dict[str, EntryPoint]) -> argparse.ArgumentParser:
    names = sorted(BUILTIN.keys() | plugins.keys())
    width = max(len(n) for n in names) + 2
    lines = []
    for name in names:
        summary = (
            BUILTIN[name].summary
            if name in BUILTIN
            else PLUGIN_SUMMARIES.get(name, f"(from {plugins[name].value})")
        )
        lines.append(f"  {name:<{width}}{summary}")
    epilog = (
        "commands:\n" + "\n".join(lines) + "\n\n"
        "Run 'banditd COMMAND --help' for a command's options and examples.\n\n"
        "examples:\n"
        "  banditd serve --db banditd.db --port 8080\n"
        "  banditd simulate linear --policy egreedy --policy squarecb --rounds 500\n"
        "  banditd export --db banditd.db --out logs.dsjson\n"
    )
    parser = argparse.ArgumentParser(
        prog="banditd",
        usage="banditd [-h] COMMAND [ARGS ...]",
        description=textwrap.fill(
            "A self-hosted contextual-bandit decision service that speaks the Azure "
            "Personalizer REST API.",
            WIDTH,
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", metavar="COMMAND", choices=names, help=argparse.SUPPRESS)
    return parser


def _split(argv: list[str], plugins: dict[str, EntryPoint]) -> tuple[str, list[str]]:
    """The command and its arguments; ``-h`` and usage errors exit as argparse does (0 after
    printing the help on stdout, 2 with the usage and the error on stderr)."""
    parser = _top_parser(plugins)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        parser.error(f"{argv[0]} comes before COMMAND; give options after it")
    parser.parse_args(argv[:1])
    return argv[0], argv[1:]


def _plugin_parser(name: str, entry: EntryPoint) -> argparse.ArgumentParser:
    command = entry.load()
    module = sys.modules[command.__module__]
    builder = getattr(module, f"{entry.attr.removesuffix('_main')}_parser", None)
    if builder is None:
        raise LookupError(f"command {name!r} ({entry.value}) offers no parser to check with")
    parser: argparse.ArgumentParser = builder()
    return parser


def parse_command(argv: list[str]) -> tuple[str, argparse.Namespace]:
    """Parse a full ``banditd`` command line (without ``banditd``) without running it.

    Plugins named are imported (others are not). Usage errors raise ``SystemExit(2)`` as
    argparse does, after printing the usage and the error on stderr; ``--help`` prints the
    help on stdout and raises ``SystemExit(0)``.

    Raises:
        LookupError: a plugin command whose module has no ``NAME_parser()``.

    >>> name, args = parse_command(["serve", "--port", "8081"])
    >>> name, args.port
    ('serve', 8081)
    """
    plugins = _plugins()
    name, rest = _split(argv, plugins)
    return name, _parser_of(name, plugins).parse_args(rest)


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of command ``name`` (a plugin's module is imported).

    Raises:
        KeyError: no such command.
        LookupError: a plugin command whose module has no ``NAME_parser()``.
    """
    return _parser_of(name, _plugins())


def command_names() -> list[str]:
    """Every command: the built-in ones and the plugins installed, sorted."""
    return sorted(BUILTIN.keys() | _plugins().keys())


def _parser_of(name: str, plugins: dict[str, EntryPoint]) -> argparse.ArgumentParser:
    if name in BUILTIN:
        return BUILTIN[name].parser()
    return _plugin_parser(name, plugins[name])


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``banditd COMMAND ...``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Plugins are loaded only when named, so a broken optional package cannot stop `serve`.
    plugins = _plugins()
    try:
        name, rest = _split(argv, plugins)
    except SystemExit as exc:
        return int(exc.code or 0)
    command = BUILTIN[name].main if name in BUILTIN else plugins[name].load()
    result: int = command(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
