"""The HTTP connection layer: slow-client timeouts, a connection limit, and parser errors as
Personalizer error bodies.

aiohttp's own request handler bounds only the idle time between requests. A client that sends
a header line every few seconds, or a body a byte at a time, holds its connection (and a file
descriptor) for as long as it likes, and a request the HTTP parser rejects is answered in
``text/plain``. :class:`GuardedRequestHandler` adds, per connection:

* a **header timeout**, from the first byte of a request until its headers are complete;
  past it the client gets a 408 and the connection is closed;
* a **body timeout**, from the end of the headers until the whole body has arrived, extended
  by one second per ``body_min_rate`` bytes received (a large body sent steadily is not cut;
  a body sent a byte at a time is); past it the body read fails with :class:`BodyTimedOut`,
  which the edge answers with a 408, and the connection is closed;
* the **idle timeout** (aiohttp's keep-alive timeout), which never cuts a request whose
  headers are still inside their own timeout;
* a **connection limit**: a connection beyond ``max_connections`` is answered 503 (with
  ``Retry-After``) and closed at once, before it is read.

Invariants: each connection holds at most one timer at a time, and a request that arrives in
one read (the usual case) arms none: a timer is armed only when a read leaves headers or a body
incomplete. Every error response, parser errors included, is built by
:func:`server.api.edge.error_response`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import http
import logging
import os
import resource
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_request import BaseRequest

from bandit.errors import (
    BanditError,
    HeaderFieldsTooLarge,
    InvalidRequest,
    RequestTimedOut,
    ServiceUnavailable,
)
from server.api.announcements import ACCESS_LOG, AccessLog, log_startup
from server.api.edge import error_response
from server.entry.settings import Settings

log = logging.getLogger(__name__)


class BodyTimedOut(RequestTimedOut, TimeoutError):
    """A request body did not arrive in time.

    It is also a :class:`TimeoutError` so that aiohttp, which drains an unread body after the
    response ("lingering"), stops draining and closes the connection instead of logging it.
    """


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection bounds of one server (seconds, and a count)."""

    header_timeout: float
    body_timeout: float
    body_min_rate: int
    idle_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            body_min_rate=settings.body_min_rate,
            idle_timeout=settings.idle_timeout,
            max_connections=settings.max_connections,
        )


class _Phase(enum.Enum):
    IDLE = 0
    HEADERS = 1
    BODY = 2


def _raw_response(error: BanditError) -> bytes:
    """``error``'s response as bytes on the wire, for a connection no request was read from."""
    response = error_response(error)
    status = http.HTTPStatus(response.status)
    body = response.body
    assert isinstance(body, bytes)
    headers = dict(response.headers)
    headers["Content-Length"] = str(len(body))
    headers["Connection"] = "close"
    head = f"HTTP/1.1 {status.value} {status.phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + body


def parser_error(status: int, exc: BaseException | None) -> BanditError:
    """The error a request the HTTP layer rejected (``status`` is aiohttp's) is answered with."""
    if isinstance(exc, BanditError):
        return exc
    if isinstance(exc, LineTooLong):
        return HeaderFieldsTooLarge(
            f"the request line or a header field is longer than {exc.args[1]} bytes."
        )
    if isinstance(exc, HttpProcessingError):
        reason = (exc.message or "malformed request").split("\n", 1)[0].strip().rstrip(":")
        return InvalidRequest(f"the request is not valid HTTP/1.1: {reason}.")
    if 400 <= status < 500:
        return InvalidRequest("the request is not valid HTTP/1.1.")
    return BanditError("the server failed to process the request.")


class GuardedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol with header and body timeouts and a connection limit.

    The phase says what the connection is waiting for: ``IDLE`` (nothing, or a next request
    that has not started), ``HEADERS`` (the rest of a request's headers) or ``BODY`` (the rest
    of ``_body``); only ``HEADERS`` and ``BODY`` hold a timer.
    Once a connection is refused or timed out it is ``_deaf``: nothing more it sends is parsed,
    and it closes after its one error response.
    """

    __slots__ = (
        "_body",
        "_body_bytes",
        "_body_started",
        "_counter",
        "_deaf",
        "_limits",
        "_phase",
        "_timer",
    )

    def __init__(
        self, manager: GuardedServer, limits: Limits, counter: list[int], **kwargs: Any
    ) -> None:
        super().__init__(manager, keepalive_timeout=limits.idle_timeout, **kwargs)
        self._limits = limits
        self._counter = counter
        self._phase = _Phase.IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None
        self._body_started = 0.0
        self._body_bytes = 0
        self._deaf = False

    # -- connection limit -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._counter[0] += 1
        if self._counter[0] > self._limits.max_connections:
            log.warning(
                "refused a connection: %d open, max_connections is %d",
                self._counter[0] - 1,
                self._limits.max_connections,
            )
            refusal = ServiceUnavailable(
                f"the server has {self._limits.max_connections} connections open, its limit;"
                " retry later."
            )
            if self.transport is not None:
                self.transport.write(_raw_response(refusal))
            self._deaf = True
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._manager is not None:
            self._counter[0] -= 1
        self._disarm()
        super().connection_lost(exc)

    # -- timeouts ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._deaf:
            return
        requests = self._request_count
        super().data_received(data)
        if self._request_count != requests:
            payload = self._messages[-1][1] if self._messages else EMPTY_PAYLOAD
            if payload.is_eof():
                self._disarm()
            else:
                self._body_started = self._loop.time()
                self._arm(_Phase.BODY, self._limits.body_timeout)
                self._body_bytes = 0
                self._body = payload
        elif self._phase is _Phase.BODY:
            self._body_bytes += len(data)
            if self._body is None or self._body.is_eof():
                self._disarm()
        elif self._phase is _Phase.IDLE and data:
            deadline = self._arm(_Phase.HEADERS, self._limits.header_timeout)
            # The idle timer must not cut headers that are still within their own timeout.
            self._next_keepalive_close_time = max(self._next_keepalive_close_time, deadline)

    def _arm(self, phase: _Phase, timeout: float) -> float:
        if self._timer is not None:
            self._timer.cancel()
        deadline = self._loop.time() + timeout
        self._phase = phase
        self._timer = self._loop.call_at(deadline, self._expire)
        return deadline

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = _Phase.IDLE
        self._body = None

    def _expire(self) -> None:
        self._timer = None
        if self._phase is _Phase.HEADERS:
            if self._request_in_progress or self._messages:
                # A pipelined request's headers wait behind one still being answered; they
                # get a fresh timeout.
                self._arm(_Phase.HEADERS, self._limits.header_timeout)
                return
            self._deaf = True
            error = RequestTimedOut(
                f"the request's headers did not arrive within {self._limits.header_timeout:g} s."
            )
            self._messages.append(
                (_ErrInfo(status=408, exc=error, message=error.message), EMPTY_PAYLOAD)
            )
            self._request_count += 1
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
        elif self._phase is _Phase.BODY and self._body is not None and not self._body.is_eof():
            deadline = (
                self._body_started
                + self._limits.body_timeout
                + self._body_bytes / self._limits.body_min_rate
            )
            if self._loop.time() < deadline:
                # Bytes arrived since the timer was armed: it moves on, no timer per read.
                self._arm(_Phase.BODY, deadline - self._loop.time())
                return
            self._deaf = True
            self._body.set_exception(
                BodyTimedOut(
                    f"the request's body did not arrive within {self._limits.body_timeout:g} s."
                )
            )
        self._phase = _Phase.IDLE
        self._body = None

    # -- errors from the HTTP layer ---------------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a request the HTTP layer rejected with Personalizer's error body; always
        closes the connection (the parser's state is lost)."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent; cannot send an error.")
        error = parser_error(status, exc)
        if isinstance(exc, HttpProcessingError | BanditError):
            log.info("rejected a request from %s: %s", request.remote, error.message)
        else:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        response = error_response(error)
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's low-level server, making :class:`GuardedRequestHandler` connections."""

    def __init__(self, base: web.Server, limits: Limits) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.limits = limits
        self.open_connections = [0]
        """Connections open now (a one-item list the handlers share)."""

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(
            self, self.limits, self.open_connections, loop=self._loop, **self._kwargs
        )


class GuardedRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections are :class:`GuardedServer`'s."""

    __slots__ = ("_limits",)

    def __init__(self, app: web.Application, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self._limits)


class ListenError(Exception):
    """The server could not listen on its address; the message names it and what to do."""


class StartupError(Exception):
    """The application failed to start (its cause is the original error)."""


def serve(
    app: web.Application,
    settings: Settings,
    *,
    announce: Any = print,
    reuse_port: bool = False,
    summary: bool = True,
) -> None:
    """Run ``app`` on ``settings.host``:``settings.port`` until SIGINT or SIGTERM.

    Like :func:`aiohttp.web.run_app` (whose shutdown sequence it follows), with
    :class:`GuardedRunner`'s connections. With ``reuse_port`` several processes bind the one
    port (``SO_REUSEPORT``) and the kernel spreads connections over them. Once listening it
    logs :func:`~server.api.announcements.startup_summary` unless not ``summary`` (a
    supervisor's other edges); with the ``access_log`` setting every request is logged to
    :data:`~server.api.announcements.ACCESS_LOG`.

    Raises:
        StartupError: the application's start-up failed (the store could not be opened, …).
        ListenError: the address is in use or cannot be bound.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, settings, announce, reuse_port, summary))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)


FD_RESERVE = 128
"""File descriptors kept beside the connections: the listening socket, SQLite's files (the
database, its WAL and shared memory, per thread), logs, model files being written."""


def ensure_descriptors(max_connections: int) -> int:
    """Raise the soft limit on open files to ``max_connections`` plus :data:`FD_RESERVE` if it
    is lower (up to the hard limit) and return it; warn when even the hard limit is short, in
    which case new connections may fail to be accepted before the limit answers them 503."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        if soft < wanted:
            log.warning(
                "the open-file limit is %d, below max_connections (%d) + %d; raise it "
                "(ulimit -n) or lower max_connections",
                soft,
                max_connections,
                FD_RESERVE,
            )
    return soft


async def _serve(
    app: web.Application, settings: Settings, announce: Any, reuse_port: bool, summary: bool
) -> None:
    ensure_descriptors(settings.max_connections)
    # Off, aiohttp gets no access logger at all: no per-request call, not even a level check.
    access: dict[str, Any] = (
        {"access_log": ACCESS_LOG, "access_log_class": AccessLog}
        if settings.access_log
        else {"access_log": None}
    )
    runner = GuardedRunner(app, Limits.of(settings), handle_signals=True, **access)
    try:
        await runner.setup()
    except Exception as exc:
        raise StartupError(str(exc)) from exc
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError as exc:
            reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
            raise ListenError(
                f"cannot listen on {settings.host}:{settings.port}: {reason}; stop whatever "
                "holds that port or choose another with --port (or port in the config file)."
            ) from exc
        announce(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)")
        if summary:
            log_startup(app, site.name)
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()
