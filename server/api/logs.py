"""DSJSON logs out and in: ``GET /v1/logs/export``, ``banditd export`` and ``banditd import``.

An exported line is the labelled DSJSON VW learns from (:func:`bandit.dsjson.joined_object`),
with each ``c._multi`` entry also carrying the action's ``_id`` (VW ignores ``_`` keys), so
importing the line gives back the same action ids as well as the same labelled example.
Lines are streamed page by page, read from the store on a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from bandit.config import LearningMode
from bandit.dsjson import joined_object, logged_to_joined, parse_logged
from bandit.errors import InvalidExportLogsRequest
from bandit.events import JoinedEvent
from bandit.store import LogArchive, Store
from server.api import contracts as c
from server.api.evaluations import parse_time
from server.api.operations import Operation, Response, declare, mount
from server.api.routes import SERVICE

MEDIA_TYPE = "application/x-ndjson"
_PAGE = 512


def log_line(event: JoinedEvent) -> str:
    """The exported DSJSON line of a joined event."""
    obj = joined_object(event)
    for entry, action in zip(obj["c"]["_multi"], event.decision.request.actions, strict=True):
        entry["_id"] = action.id
    return json.dumps(obj, separators=(",", ":"))


def pages(store: LogArchive, start: float, end: float) -> Iterator[list[JoinedEvent]]:
    """The joined events decided in ``[start, end)`` in log order, a page at a time."""
    after = 0
    while True:
        page = store.joined_between(start, end, after, _PAGE)
        if page:
            yield page
        if len(page) < _PAGE:
            return
        after = page[-1].seq


def _range(start: str | None, end: str | None) -> tuple[float, float]:
    low = parse_time(start, "from", InvalidExportLogsRequest) if start else float("-inf")
    high = parse_time(end, "to", InvalidExportLogsRequest) if end else float("inf")
    if not low < high:
        raise InvalidExportLogsRequest("from must be before to.", target="from")
    return low, high


async def export_logs(request: web.Request) -> web.StreamResponse:
    start, end = _range(request.query.get("from"), request.query.get("to"))
    store = request.app[SERVICE].store
    response = web.StreamResponse(headers={"Content-Type": f"{MEDIA_TYPE}; charset=utf-8"})
    await response.prepare(request)
    after = 0
    while True:
        page = await asyncio.to_thread(store.joined_between, start, end, after, _PAGE)
        if page:
            text = "".join(log_line(e) + "\n" for e in page)
            await response.write(text.encode())
            after = page[-1].seq
        if len(page) < _PAGE:
            break
    await response.write_eof()
    return response


OPERATIONS = declare(
    Operation(
        id="exportLogs",
        role="logs",
        method="GET",
        path="/logs/export",
        handler=export_logs,
        summary="Stream the joined events decided in [from, to) as DSJSON lines (extension).",
        query={
            "from": (str, False, "ISO-8601 date-time; the oldest event by default."),
            "to": (str, False, "ISO-8601 date-time (exclusive); the newest event by default."),
        },
        responses=(
            Response(status=200, description="DSJSON lines.", body=str, media=MEDIA_TYPE),
            Response(status=400, description="Bad range.", body=c.ErrorResponse),
        ),
    ),
)


def add_log_routes(app: web.Application) -> None:
    """Mount the log export."""
    mount(app, OPERATIONS)


# -- command line --------------------------------------------------------------------------------


def write_logs(store: LogArchive, out: TextIO, start: float, end: float) -> int:
    """Write the window's joined events as DSJSON lines; returns how many."""
    count = 0
    for page in pages(store, start, end):
        out.writelines(log_line(e) + "\n" for e in page)
        count += len(page)
    return count


def read_logs(lines: Iterable[str], mode: LearningMode) -> Iterator[JoinedEvent]:
    """Joined events from DSJSON lines (blank lines skipped), served in ``mode``.

    Raises:
        ValueError: a line is not labelled DSJSON; the message names its number.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = logged_to_joined(parse_logged(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {number}: {exc}") from exc
        yield replace(event, decision=replace(event.decision, learning_mode=mode))


def import_logs(store: LogArchive, lines: Iterable[str], mode: LearningMode) -> tuple[int, int]:
    """Store DSJSON lines as joined events; returns (imported, skipped as already stored)."""
    imported = skipped = 0
    batch: list[JoinedEvent] = []
    for event in read_logs(lines, mode):
        batch.append(event)
        if len(batch) == 1000:
            added = len(store.import_joined(batch))
            imported, skipped, batch = imported + added, skipped + len(batch) - added, []
    if batch:
        added = len(store.import_joined(batch))
        imported, skipped = imported + added, skipped + len(batch) - added
    return imported, skipped


def _open_store(db: str) -> Store:
    from stores.sqlite.store import SQLiteStore

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
        start, end = _range(args.start, args.end)
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
