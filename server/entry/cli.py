"""The ``banditd`` command line.

``serve`` is built in; other commands (``simulate``, ``evaluate``, …) are registered by their
packages under the ``banditd.commands`` entry-point group, so the server does not import them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sqlite3
import sys
from importlib.metadata import entry_points

from bandit.errors import ServiceUnavailable
from server.api.connections import ListenError, StartupError, serve
from server.entry.app import create_app, open_store, wait_until_ready
from server.entry.failures import db_path_problem, startup_failure
from server.entry.logs_cli import export_main, import_main
from server.entry.settings import Settings, SettingsError, load
from server.entry.store_cli import copy_main, migrate_main
from server.entry.supervisor import reserve_port, supervise
from server.trainer.role import run_trainer

ROLES = ("edge", "train", "all")
READY_TIMEOUT = 60.0
"""Seconds an edge started alone waits for a trainer to create the loop in its store."""


def _arguments(prog: str, description: str, *, serving: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
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
    args = _arguments("banditd serve", "Run the service.", serving=True).parse_args(argv)
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
    parser = _arguments(
        "banditd train",
        "Run a trainer: a standby until it holds the store's trainer lease, then the one "
        "process that joins, learns, publishes, watches and runs jobs.",
        serving=False,
    )
    settings = _settings(parser.parse_args(argv), {})
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


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``banditd COMMAND ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    builtin = {
        "serve": _serve,
        "train": _train,
        "export": export_main,
        "import": import_main,
        "migrate": migrate_main,
        "copy": copy_main,
    }
    # Plugins are loaded only when named, so a broken optional package cannot stop `serve`.
    plugins = {ep.name: ep for ep in entry_points(group="banditd.commands")}
    names = sorted(builtin.keys() | plugins.keys())
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in names:
        print(f"usage: banditd COMMAND [ARGS]\ncommands: {', '.join(names)}", file=sys.stderr)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    command = builtin.get(argv[0]) or plugins[argv[0]].load()
    result: int = command(argv[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
