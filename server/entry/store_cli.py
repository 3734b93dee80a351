"""``banditd migrate`` and ``banditd copy``: a store's schema, and moving a loop between stores.

``migrate`` brings a store's schema to this banditd's version (SQLite migrates whenever a file
is opened; PostgreSQL only here, since a database shared by many processes is changed once,
on purpose). ``copy`` moves a stopped loop into an empty store with
:func:`bandit.transfer.copy_loop`, migrating the target first. Both print one line on stderr,
or with ``--json`` one JSON object on stdout; failures are one line and exit 2 (a usage error:
a bad URL, a newer schema, a target that holds a loop) or 1 (a store that cannot be opened).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bandit.store import Store
from bandit.transfer import CopyReport, copy_loop
from server.api.connections import StartupError
from server.entry.app import open_store, postgres_module
from server.entry.failures import (
    db_path_problem,
    is_postgres_failure,
    startup_failure,
    store_failure,
)
from server.entry.settings import Settings
from server.entry.store_url import StoreURL, StoreURLError, parse_store_url, redact
from stores.sqlite.store import SCHEMA_VERSION, SchemaTooNew, schema_version

PROGRESS_EVERY = 5.0
"""Seconds between the progress lines of a long copy (on stderr, without ``--json``)."""


class CommandRefused(Exception):
    """A store command cannot go on; its message is the line to print (after the command's
    name), ``status`` the exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def migrate_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd migrate``."""
    parser = argparse.ArgumentParser(
        prog="banditd migrate",
        description=textwrap.fill(
            "Bring a store's schema to this banditd's version (PostgreSQL is changed "
            "only by this command; SQLite also whenever a file is opened).",
            79,
        ),
        epilog="""\
examples:
  banditd migrate --store postgresql://banditd@db/banditd
  banditd migrate --store sqlite:///banditd.db --json
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--store", required=True, help="sqlite:///PATH or postgresql://...")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    return parser


def migrate_main(argv: list[str]) -> int:
    """``banditd migrate --store URL [--json]``."""
    args = migrate_parser().parse_args(argv)
    try:
        location = _parse(args.store)
        before, after = _migrate(location)
    except CommandRefused as exc:
        print(f"banditd migrate: {exc}", file=sys.stderr)
        return exc.status
    summary = {"store": location.display, "before": before, "after": after}
    text = (
        f"{location.display}: schema version {after}, up to date"
        if before == after
        else f"{location.display}: schema version {before} -> {after}"
    )
    report(args.json, summary, text)
    return 0


def copy_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd copy``."""
    parser = argparse.ArgumentParser(
        prog="banditd copy",
        description=textwrap.fill(
            "Copy a loop (events, models, checkpoint, settings) into an empty store; "
            "stop banditd on the source first.",
            79,
        ),
        epilog="""\
examples:
  banditd copy --from sqlite:///banditd.db --to postgresql://banditd@db/banditd
  banditd copy --from sqlite:///old.db --to sqlite:///new.db --json
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="source", required=True, help="store URL to copy from")
    parser.add_argument("--to", dest="target", required=True, help="empty store URL to copy to")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    return parser


def copy_main(argv: list[str]) -> int:
    """``banditd copy --from URL --to URL [--json]``."""
    args = copy_parser().parse_args(argv)
    try:
        source_url, target_url = _parse(args.source), _parse(args.target)
        if _same(source_url, target_url):
            raise CommandRefused("--from and --to name the same store; copy into another one.")
        copied = _copy(source_url, target_url, None if args.json else _progress())
    except CommandRefused as exc:
        print(f"banditd copy: {exc}", file=sys.stderr)
        return exc.status
    summary = {"from": source_url.display, "to": target_url.display, **asdict(copied)}
    report(args.json, summary, f"copied {_described(copied)}")
    return 0


def _parse(text: str) -> StoreURL:
    try:
        return parse_store_url(text)
    except StoreURLError as exc:
        raise CommandRefused(str(exc)) from None


def _same(a: StoreURL, b: StoreURL) -> bool:
    if a.kind == b.kind == "sqlite":
        return Path(a.target).resolve() == Path(b.target).resolve()
    return a == b


def _migrate(location: StoreURL) -> tuple[int, int]:
    """The schema version of the store before and after migrating it."""
    if location.kind == "sqlite":
        problem = db_path_problem(location.target, "--store")
        if problem:
            raise CommandRefused(problem)
        try:
            before = schema_version(location.target)
        except sqlite3.Error as exc:
            raise CommandRefused(startup_failure(location, exc), 1) from None
        if before > SCHEMA_VERSION:
            raise CommandRefused(
                f"{location.display}: schema version {before} is newer than this banditd's "
                f"{SCHEMA_VERSION}; run a newer banditd."
            )
        open_command_store(location).close()  # opening an SQLite file migrates it
        return before, schema_version(location.target)
    try:
        schema = postgres_module("schema")
        versions: tuple[int, int] = schema.migrate(location.target)
    except StartupError as exc:  # no psycopg, or no PostgreSQL store
        raise CommandRefused(str(exc), 1) from None
    except Exception as exc:
        if type(exc).__name__ == "SchemaTooNew":
            shown = redact(str(exc), location.target)
            raise CommandRefused(f"{location.display}: {shown}") from None
        if not is_postgres_failure(exc):
            raise
        raise CommandRefused(startup_failure(location, exc), 1) from None
    return versions


def open_command_store(location: StoreURL, *, create: bool = True) -> Store:
    """The store at ``location`` for a command, with a process's default settings; a store
    that cannot be opened is a :class:`CommandRefused`. Without ``create`` a missing SQLite
    file is refused rather than made (a mistyped path would read as an empty loop)."""
    try:
        return open_store(Settings(store=_url_of(location)), create=create)
    except FileNotFoundError:
        raise CommandRefused(
            f"{location.display!r} does not exist; name an existing database file."
        ) from None
    except SchemaTooNew as exc:
        raise CommandRefused(f"{location.display}: {exc}.") from None
    except StartupError as exc:  # no PostgreSQL store here, or one that cannot be opened
        failure = store_failure(location, exc) or redact(str(exc), location.target)
        raise CommandRefused(failure, 1) from None
    except (sqlite3.Error, OSError) as exc:
        raise CommandRefused(startup_failure(location, exc), 1) from None


def _url_of(location: StoreURL) -> str:
    return f"sqlite:///{location.target}" if location.kind == "sqlite" else location.target


def _copy(
    source_url: StoreURL, target_url: StoreURL, progress: Callable[[CopyReport], None] | None
) -> CopyReport:
    source = open_command_store(source_url, create=False)
    try:
        lease = source.lease(time.time())
        if lease is not None:
            raise CommandRefused(
                f"a trainer ({lease.holder}) holds the lease of {source_url.display}; stop "
                "banditd on it before copying (a running loop changes while it is copied)."
            )
        if target_url.kind == "sqlite":
            problem = db_path_problem(target_url.target, "--to")
            if problem:
                raise CommandRefused(problem)
        else:
            _migrate(target_url)
        target = open_command_store(target_url)
        try:
            return copy_loop(source, target, progress=progress)
        except ValueError as exc:
            raise CommandRefused(f"{target_url.display}: {exc}.") from None
        finally:
            target.close()
    finally:
        source.close()


def _progress() -> Callable[[CopyReport], None]:
    """A progress callback that prints what was copied so far every :data:`PROGRESS_EVERY`
    seconds."""
    last = time.monotonic()

    def show(report: CopyReport) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY:
            last = time.monotonic()
            print(f"copying: {_described(report)} so far", file=sys.stderr)

    return show


def _described(report: CopyReport) -> str:
    """``report`` in words.

    >>> _described(CopyReport(decisions=3, rewards=1, joined=2, models=1, records=2))
    '3 decisions, 1 rewards, 2 joined events, 1 models, no checkpoint, 2 settings records, 0 moments, 0 named strings'
    """  # noqa: E501
    return (
        f"{report.decisions} decisions, {report.rewards} rewards, {report.joined} joined events, "
        f"{report.models} models, {'the' if report.checkpoint else 'no'} checkpoint, "
        f"{report.records} settings records, {report.times} moments, {report.meta} named strings"
    )


def report(as_json: bool, summary: dict[str, Any], text: str) -> None:
    """A command's summary: ``summary`` as one JSON object on stdout, or ``text`` on stderr."""
    print(json.dumps(summary) if as_json else text, file=sys.stdout if as_json else sys.stderr)
