"""DSJSON logs out and in: ``GET /v1/logs/export`` and ``POST /v1/logs/import``, and the
reading and writing behind ``banditd export`` and ``banditd import``
(:mod:`server.entry.logs_cli`).

An exported line is the labelled DSJSON VW learns from (:func:`bandit.dsjson.joined_object`),
with each ``c._multi`` entry also carrying the action's ``_id`` (VW ignores ``_`` keys), so
importing the line gives back the same action ids as well as the same labelled example.
Lines are streamed page by page, read from the store on a worker thread.

An import, over HTTP or from the command line, is all or nothing as far as the lines go: they
are spooled to a temporary file as they arrive (:class:`LogSpool`, which bounds each line and
the whole), every line is checked (:func:`check_logs`: read as the learner will read it, and
refused where a rank or a reward would be), and only then are they stored, in batches, on a
worker thread (:func:`import_logs`). Memory holds a block of the body at a time, never the body. An
event whose id is stored already is skipped, so importing a file again stores nothing twice;
a store failure part-way (a full disk, a lock held too long) leaves the batches before it,
and the same import sent again stores the rest.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from types import TracebackType
from typing import Literal, TextIO, get_args

from aiohttp import web

from bandit.config import LearningMode
from bandit.dsjson import joined_object, logged_to_joined, parse_logged
from bandit.errors import (
    InvalidExportLogsRequest,
    InvalidImportLogsRequest,
    InvalidRankRequest,
    PayloadSizeExceeded,
)
from bandit.events import JoinedEvent
from bandit.store import LogArchive
from policies import DEFAULT_ARGUMENTS, VWPolicy
from server.api import contracts as c
from server.api.base import SERVICE, json_response
from server.api.evaluations import parse_time
from server.api.operations import Operation, Response, declare, mount
from server.api.schemas import check_id

MEDIA_TYPE = "application/x-ndjson"
_PAGE = 512

MAX_LINE_BYTES = 4 << 20
"""Longest DSJSON line an import takes (bytes, without its newline): a rank body of the
default ``max_body_bytes`` with its logged outcome fits several times over."""
IMPORT_BATCH = 1000
"""Events stored per store write (one transaction each) by an import."""
ImportMode = Literal["Online", "Apprentice"]
"""The learning modes imported events may be recorded as served in (the wire names)."""
IMPORT_MODES = tuple(LearningMode(name) for name in get_args(ImportMode))
_BLOCK = 1 << 20
"""Bytes of a request body gathered before they are handed to the spool's worker thread."""


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


async def import_logs_request(request: web.Request) -> web.Response:
    """``POST /logs/import``: the body is read a block at a time into a :class:`LogSpool` (its
    writes on a worker thread), so neither ``client_max_size`` (which bounds only bodies read
    whole) nor memory bounds it, ``import_max_bytes`` does; and it is read as fast as the disk
    takes it, so a body sent at ``body_min_rate`` or faster is never cut by the body timeout.
    The lines are checked and stored only once the whole body is in."""
    mode = import_mode(request.query.get("mode"))
    service = request.app[SERVICE]
    limit = service.settings.import_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadSizeExceeded(
            f"a log import may be at most {limit} bytes (import_max_bytes); split the file."
        )
    spool = LogSpool(limit)
    try:
        block = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            block += chunk
            if len(block) >= _BLOCK:
                await asyncio.to_thread(spool.write, bytes(block))
                block.clear()
        await asyncio.to_thread(spool.write, bytes(block))
        imported, skipped = await asyncio.to_thread(import_logs, service.store, spool, mode)
    finally:
        await asyncio.to_thread(spool.close)
    return json_response({"imported": imported, "skipped": skipped})


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
    Operation(
        id="importLogs",
        role="logs",
        method="POST",
        path="/logs/import",
        handler=import_logs_request,
        summary="Store DSJSON lines as joined events the learner learns next; events stored "
        "already are skipped; a bad line stores nothing (extension).",
        body=str,
        body_media=MEDIA_TYPE,
        query={
            "mode": (
                ImportMode,
                False,
                "Online (the default) or Apprentice: the learning mode the events count as "
                "served in.",
            ),
        },
        responses=(
            Response(status=200, description="Events imported and skipped.", body=c.LogsImported),
            Response(
                status=400,
                description="An unknown mode, or a line that is not labelled DSJSON or is "
                f"longer than {MAX_LINE_BYTES} bytes (named by its number); nothing stored.",
                body=c.ErrorResponse,
            ),
            Response(
                status=413,
                description="The body is larger than import_max_bytes; nothing stored.",
                body=c.ErrorResponse,
            ),
        ),
    ),
)


def add_log_routes(app: web.Application) -> None:
    """Mount the log export and import."""
    mount(app, OPERATIONS)


# -- command line --------------------------------------------------------------------------------


def write_logs(store: LogArchive, out: TextIO, start: float, end: float) -> int:
    """Write the window's joined events as DSJSON lines; returns how many."""
    count = 0
    for page in pages(store, start, end):
        out.writelines(log_line(e) + "\n" for e in page)
        count += len(page)
    return count


def import_mode(value: str | None) -> LearningMode:
    """The learning mode an import's ``mode`` names (Online when absent).

    >>> import_mode(None), import_mode("Apprentice")
    (<LearningMode.ONLINE: 'Online'>, <LearningMode.APPRENTICE: 'Apprentice'>)
    """
    if value is None:
        return LearningMode.ONLINE
    for mode in IMPORT_MODES:
        if value == mode.value:
            return mode
    known = ", ".join(m.value for m in IMPORT_MODES)
    raise InvalidImportLogsRequest(
        f"mode {value!r} is not a learning mode logs can be imported in; use one of: {known}.",
        target="mode",
    )


class LogSpool:
    """DSJSON lines kept in a temporary file as they arrive, to be read back (more than once).

    Invariants: the file holds at most ``max_bytes`` bytes (None: no bound) and no line of more
    than :data:`MAX_LINE_BYTES`; a :meth:`write` that would break either raises before writing.
    The file is unlinked from the start, so it goes when the spool is closed or the process
    dies.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._ended = 0  # lines ended by a newline so far
        self._open = 0  # bytes of the line not ended yet

    def write(self, data: bytes) -> None:
        """Append ``data`` (any cut of the lines: a line may span writes).

        Raises:
            PayloadSizeExceeded: the spool would exceed ``max_bytes``.
            InvalidImportLogsRequest: a line is longer than :data:`MAX_LINE_BYTES`.
        """
        if self.max_bytes is not None and self.size + len(data) > self.max_bytes:
            raise PayloadSizeExceeded(
                f"a log import may be at most {self.max_bytes} bytes (import_max_bytes); "
                "split the file."
            )
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._check_line(self._open + end - start)
            self._open, self._ended, start = 0, self._ended + 1, end + 1
        self._open += len(data) - start
        self._check_line(self._open)
        self._file.write(data)
        self.size += len(data)

    def _check_line(self, length: int) -> None:
        if length > MAX_LINE_BYTES:
            raise _bad_line(self._ended + 1, f"longer than {MAX_LINE_BYTES} bytes")

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """Every line written so far, numbered from 1, newline and all."""
        self._file.flush()
        self._file.seek(0)
        yield from enumerate(self._file, start=1)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LogSpool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_logs(spool: LogSpool, mode: LearningMode) -> Iterator[tuple[int, JoinedEvent]]:
    """Joined events from the spool's DSJSON lines (blank lines skipped), served in ``mode``,
    each with its line number.

    Raises:
        InvalidImportLogsRequest: a line is not UTF-8 labelled DSJSON, or holds what a rank or
            a reward would refuse (:func:`_check`); the message names its number.
    """
    for number, raw in spool.lines():
        try:
            line = raw.decode()
            if not line.strip():
                continue
            event = logged_to_joined(parse_logged(line))
            _check(event)
        except InvalidRankRequest as exc:
            raise _bad_line(number, exc.message) from exc
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            IndexError,
            OverflowError,
            RecursionError,  # JSON nested too deep
        ) as exc:
            reason = f"it has no {exc} field" if isinstance(exc, KeyError) else str(exc)
            raise _bad_line(number, f"not labelled DSJSON: {reason}") from exc
        yield number, replace(event, decision=replace(event.decision, learning_mode=mode))


def _bad_line(number: int, reason: str) -> InvalidImportLogsRequest:
    return InvalidImportLogsRequest(f"line {number}: {reason.rstrip('.')}; nothing was imported.")


def _check(event: JoinedEvent) -> None:
    """What a rank and a reward would have refused: an event or action id that is empty, too
    long or holds a NUL, or repeated action ids; a reward or probability that is not a finite
    number, a probability outside [0, 1].

    Raises:
        InvalidRankRequest, ValueError: what is wrong.
    """
    check_id(event.decision.event_id, "EventId")
    ids = [check_id(a.id, "an action's _id") for a in event.decision.request.actions]
    if len(set(ids)) != len(ids):
        raise ValueError("an action _id is repeated")
    if not math.isfinite(event.reward):
        raise ValueError("the reward (-_label_cost) is not a finite number")
    if not all(0.0 <= p <= 1.0 for p in event.decision.pmf):
        raise ValueError("a probability in p is not a number in [0, 1]")


def check_logs(spool: LogSpool, mode: LearningMode) -> int:
    """Read every line of ``spool`` as :func:`import_logs` stores it, and each event as the
    learner will (:meth:`policies.VWPolicy.read_logged`); returns how many events.

    Raises:
        InvalidImportLogsRequest: the first bad line, named.
    """
    reader = VWPolicy(DEFAULT_ARGUMENTS, epsilon=0.0)
    count = 0
    for number, event in read_logs(spool, mode):
        try:
            reader.read_logged(event)
        except InvalidRankRequest as exc:
            raise _bad_line(number, f"not readable by the learner: {exc.message}") from exc
        count += 1
    return count


def import_logs(store: LogArchive, spool: LogSpool, mode: LearningMode) -> tuple[int, int]:
    """Check every line of ``spool`` (:func:`check_logs`), then store them as joined events,
    :data:`IMPORT_BATCH` a write; returns (imported, skipped as already stored). Blocking: run
    it on a worker thread.

    Raises:
        InvalidImportLogsRequest: a bad line, before anything is stored.
    """
    check_logs(spool, mode)
    imported = skipped = 0
    batch: list[JoinedEvent] = []
    for _, event in read_logs(spool, mode):
        batch.append(event)
        if len(batch) == IMPORT_BATCH:
            added = len(store.import_joined(batch))
            imported, skipped, batch = imported + added, skipped + len(batch) - added, []
    if batch:
        added = len(store.import_joined(batch))
        imported, skipped = imported + added, skipped + len(batch) - added
    return imported, skipped
