"""DSJSON logs out and in: ``GET /v1/logs/export``, and the reading and writing behind
``banditd export`` and ``banditd import`` (:mod:`server.entry.logs_cli`).

An exported line is the labelled DSJSON VW learns from (:func:`bandit.dsjson.joined_object`),
with each ``c._multi`` entry also carrying the action's ``_id`` (VW ignores ``_`` keys), so
importing the line gives back the same action ids as well as the same labelled example.
Lines are streamed page by page, read from the store on a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TextIO

from aiohttp import web

from bandit.config import LearningMode
from bandit.dsjson import joined_object, logged_to_joined, parse_logged
from bandit.errors import InvalidExportLogsRequest
from bandit.events import JoinedEvent
from bandit.store import LogArchive
from server.api import contracts as c
from server.api.base import SERVICE
from server.api.evaluations import parse_time
from server.api.operations import Operation, Response, declare, mount

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


def parse_range(start: str | None, end: str | None) -> tuple[float, float]:
    low = parse_time(start, "from", InvalidExportLogsRequest) if start else float("-inf")
    high = parse_time(end, "to", InvalidExportLogsRequest) if end else float("inf")
    if not low < high:
        raise InvalidExportLogsRequest("from must be before to.", target="from")
    return low, high


async def export_logs(request: web.Request) -> web.StreamResponse:
    start, end = parse_range(request.query.get("from"), request.query.get("to"))
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
