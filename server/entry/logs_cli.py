"""``banditd export`` and ``banditd import``: DSJSON logs out of and into a store file.

The lines are those of ``GET /v1/logs/export`` (:mod:`server.api.logs`, which reads and writes
them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bandit.config import LearningMode
from bandit.errors import InvalidExportLogsRequest
from bandit.store import Store
from server.api.logs import import_logs, parse_range, write_logs
from stores.sqlite.store import SQLiteStore


def _open_store(db: str) -> Store:
    return SQLiteStore(db)


def export_main(argv: list[str]) -> int:
    """``banditd export --db PATH --out FILE [--from T] [--to T] [--json]``."""
    parser = argparse.ArgumentParser(prog="banditd export", description="Export DSJSON logs.")
    parser.add_argument("--db", default="banditd.db", help="SQLite file (default banditd.db)")
    parser.add_argument("--out", required=True, help="DSJSON file to write ('-' for stdout)")
    parser.add_argument("--from", dest="start", help="ISO-8601 date-time (inclusive)")
    parser.add_argument("--to", dest="end", help="ISO-8601 date-time (exclusive)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args(argv)
    try:
        start, end = parse_range(args.start, args.end)
    except InvalidExportLogsRequest as exc:
        print(f"banditd export: {exc.message}", file=sys.stderr)
        return 2
    store = _open_store(args.db)
    try:
        if args.out == "-":
            count = write_logs(store, sys.stdout, start, end)
        else:
            with Path(args.out).open("w", encoding="utf-8") as out:
                count = write_logs(store, out, start, end)
    finally:
        store.close()
    summary = {"exported": count, "out": args.out}
    _report(args.json and args.out != "-", summary, f"exported {count} events")
    return 0


def import_main(argv: list[str]) -> int:
    """``banditd import --db PATH FILE [--mode Online|Apprentice] [--json]``."""
    parser = argparse.ArgumentParser(
        prog="banditd import",
        description="Import DSJSON logs as joined events; the learner learns them next (warm "
        "start), and with --mode Apprentice they also count as apprentice events.",
    )
    parser.add_argument("file", help="DSJSON file ('-' for stdin)")
    parser.add_argument("--db", default="banditd.db", help="SQLite file (default banditd.db)")
    parser.add_argument("--mode", choices=["Online", "Apprentice"], default="Online")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args(argv)
    store = _open_store(args.db)
    try:
        if args.file == "-":
            imported, skipped = import_logs(store, sys.stdin, LearningMode(args.mode))
        else:
            with Path(args.file).open(encoding="utf-8") as lines:
                imported, skipped = import_logs(store, lines, LearningMode(args.mode))
    except (OSError, ValueError) as exc:
        print(f"banditd import: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    summary = {"imported": imported, "skipped": skipped}
    _report(args.json, summary, f"imported {imported} events, skipped {skipped} already stored")
    return 0


def _report(as_json: bool, summary: dict[str, Any], text: str) -> None:
    print(json.dumps(summary) if as_json else text, file=sys.stdout if as_json else sys.stderr)
