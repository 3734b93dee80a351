"""``banditd export`` and ``banditd import``: DSJSON logs out of and into a store.

The lines are those of ``GET /v1/logs/export`` (:mod:`server.api.logs`, which reads and writes
them). The store is ``--db PATH`` (an SQLite file, ``banditd.db`` by default) or ``--store URL``;
export never creates an SQLite file, import does.

An import checks every line before it stores any (:func:`server.api.logs.import_logs`, the
same as ``POST /v1/logs/import``): a bad line names its number and leaves the store untouched.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import BinaryIO

from bandit.errors import BanditError, InvalidExportLogsRequest
from bandit.store import Store
from server.api.logs import (
    IMPORT_MODES,
    LogSpool,
    import_logs,
    import_mode,
    parse_range,
    write_logs,
)
from server.entry.store_cli import CommandRefused, open_command_store, report
from server.entry.store_url import StoreURL, StoreURLError, parse_store_url

DEFAULT_DB = "banditd.db"


def _add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help=f"SQLite file (default {DEFAULT_DB})")
    parser.add_argument("--store", help="store URL: sqlite:///PATH or postgresql://...")


def _open(prog: str, args: argparse.Namespace, *, create: bool) -> Store | int:
    """The store ``--db`` or ``--store`` names; or, said in one line, the exit status of a
    store that cannot be opened."""
    try:
        if args.db and args.store:
            raise CommandRefused("give --db PATH or --store URL, not both.")
        try:
            location = (
                parse_store_url(args.store)
                if args.store
                else StoreURL("sqlite", args.db or DEFAULT_DB)
            )
        except StoreURLError as exc:
            raise CommandRefused(str(exc)) from None
        return open_command_store(location, create=create)
    except CommandRefused as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.status


def export_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd export``."""
    parser = argparse.ArgumentParser(
        prog="banditd export",
        description=textwrap.fill(
            "Export a store's joined events as DSJSON lines, those of "
            "GET /v1/logs/export (the store must exist; nothing is created).",
            79,
        ),
        epilog="""\
examples:
  banditd export --db banditd.db --out logs.dsjson
  banditd export --store postgresql://banditd@db/banditd --out - --from 2026-01-01T00:00:00Z
  banditd export --out week.dsjson --from 2026-01-01T00:00:00Z --to 2026-01-08T00:00:00Z --json
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_store_arguments(parser)
    parser.add_argument("--out", required=True, help="DSJSON file to write ('-' for stdout)")
    parser.add_argument("--from", dest="start", help="ISO-8601 date-time (inclusive)")
    parser.add_argument("--to", dest="end", help="ISO-8601 date-time (exclusive)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    return parser


def export_main(argv: list[str]) -> int:
    """``banditd export [--db PATH | --store URL] --out FILE [--from T] [--to T] [--json]``."""
    args = export_parser().parse_args(argv)
    try:
        start, end = parse_range(args.start, args.end)
    except InvalidExportLogsRequest as exc:
        print(f"banditd export: {exc.message}", file=sys.stderr)
        return 2
    store = _open("banditd export", args, create=False)
    if isinstance(store, int):
        return store
    try:
        if args.out == "-":
            count = write_logs(store, sys.stdout, start, end)
        else:
            with Path(args.out).open("w", encoding="utf-8") as out:
                count = write_logs(store, out, start, end)
    finally:
        store.close()
    summary = {"exported": count, "out": args.out}
    report(args.json and args.out != "-", summary, f"exported {count} events")
    return 0


def import_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd import``."""
    parser = argparse.ArgumentParser(
        prog="banditd import",
        description=textwrap.fill(
            "Import DSJSON logs as joined events; the learner learns them next (warm "
            "start), and with --mode Apprentice they also count as apprentice events. Events "
            "already in the store are skipped, so importing a file twice imports it once.",
            79,
        ),
        epilog="""\
examples:
  banditd import logs.dsjson --db banditd.db
  banditd import - --store postgresql://banditd@db/banditd --json < logs.dsjson
  banditd import personalizer-export.dsjson --mode Apprentice
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="DSJSON file ('-' for stdin)")
    _add_store_arguments(parser)
    parser.add_argument(
        "--mode", choices=[m.value for m in IMPORT_MODES], default=IMPORT_MODES[0].value
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    return parser


def import_main(argv: list[str]) -> int:
    """``banditd import [--db PATH | --store URL] FILE [--mode Online|Apprentice] [--json]``."""
    args = import_parser().parse_args(argv)
    store = _open("banditd import", args, create=True)
    if isinstance(store, int):
        return store
    try:
        with LogSpool() as spool:
            if args.file == "-":
                _spool(sys.stdin.buffer, spool)
            else:
                with Path(args.file).open("rb") as source:
                    _spool(source, spool)
            imported, skipped = import_logs(store, spool, import_mode(args.mode))
    except OSError as exc:
        print(f"banditd import: {exc}", file=sys.stderr)
        return 1
    except BanditError as exc:
        print(f"banditd import: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    summary = {"imported": imported, "skipped": skipped}
    report(args.json, summary, f"imported {imported} events, skipped {skipped} already stored")
    return 0


def _spool(source: BinaryIO, spool: LogSpool) -> None:
    while block := source.read(1 << 20):
        spool.write(block)
