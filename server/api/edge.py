"""The request edge: authentication, errors as Personalizer error bodies, timing.

Every route's handler is wrapped once, when it is added (:func:`add_route`), rather than run
through an aiohttp middleware: with any middleware at all aiohttp runs two extra coroutine
layers on every request (the middleware and its own ``current_app`` fixer). That cost a rank
about 4% and a reward about 7% of their instructions (callgrind, 1,000 requests at 32
connections). Requests that match no route reach fallback routes added last
(:func:`add_fallbacks`), so a 404 or 405 gets the same error body as any other error.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from bandit.errors import (
    BanditError,
    EventConflict,
    EventNotFound,
    Forbidden,
    HeaderFieldsTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadSizeExceeded,
    RequestTimedOut,
    ResourceConflict,
    ServiceUnavailable,
    Unauthorized,
)
from server.api.schemas import dumps
from server.entry.settings import Settings
from server.serving.metrics import Metrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (status, Personalizer's high-level code) per error class; the first match in the MRO wins.
_STATUS: list[tuple[type[BanditError], int, str]] = [
    (PayloadSizeExceeded, 413, "BadRequest"),
    (HeaderFieldsTooLarge, 431, "BadRequest"),
    (RequestTimedOut, 408, "RequestTimeout"),
    (InvalidRequest, 400, "BadRequest"),
    (Unauthorized, 401, "Unauthorized"),
    (Forbidden, 403, "Forbidden"),
    (NotFound, 404, "ResourceNotFound"),
    (MethodNotAllowed, 405, "MethodNotAllowed"),
    (EventConflict, 409, "Conflict"),
    (ResourceConflict, 409, "Conflict"),
    (ServiceUnavailable, 503, "ServiceUnavailable"),
]

UNMATCHED = "unmatched"
"""The role of a request that matches no route (or no method of its path)."""

WRONG_METHOD = "method"
"""The role of a request to a known path with a method the path does not take: answered 405
(with ``Allow``) whatever key it carries, as the methods of every path are public anyway."""

PUBLIC_ROUTES = frozenset({"healthz", "openapi", "dashboard", WRONG_METHOD})
CLIENT_ROUTES = frozenset({"rank", "reward", "activate"})
"""Route roles a client key may call; every other role but the public ones needs an admin key."""


def status_of(error: BanditError) -> tuple[int, str]:
    """HTTP status and high-level code for an error."""
    if isinstance(error, EventNotFound):
        return 404, "ResourceNotFound"
    for cls, status, code in _STATUS:
        if isinstance(error, cls):
            return status, code
    return 500, "InternalServerError"


def error_response(error: BanditError) -> web.Response:
    """The Personalizer error body and ``x-ms-error-code`` header for an error."""
    status, code = status_of(error)
    body: dict[str, object] = {"code": code, "message": error.message}
    if error.target:
        body["target"] = error.target
    body["innerError"] = {"code": error.code}
    headers = {"x-ms-error-code": error.code}
    if status == 503:
        headers["Retry-After"] = "1"
    if isinstance(error, MethodNotAllowed) and error.allowed:
        headers["Allow"] = ", ".join(error.allowed)
    headers["Content-Type"] = "application/json; charset=utf-8"
    return web.Response(status=status, body=dumps({"error": body}), headers=headers)


def _from_http(exc: web.HTTPException) -> BanditError:
    if exc.status == 404:
        return NotFound("no resource at this path.")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = tuple(sorted(exc.allowed_methods))
        return MethodNotAllowed("this method is not allowed on this path.", allowed=allowed)
    if exc.status == 413:
        return PayloadSizeExceeded("the request body is too large.")
    return InvalidRequest(exc.reason)


def role_of(name: str | None) -> str:
    """The role in a route name (``rank``, ``reward``, …), the same under every prefix."""
    return (name or UNMATCHED).split(".", 1)[0]


def _presented_key(request: web.Request) -> str | None:
    key = request.headers.get("Ocp-Apim-Subscription-Key")
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def _matches(key: str, keys: tuple[str, ...]) -> bool:
    # Compare against every key so timing does not reveal which one (or whether any) matched.
    found = False
    for candidate in keys:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


def check_key(request: web.Request, role: str, settings: Settings) -> None:
    """Require a client key for rank/reward/activate and an admin key for everything else.

    Raises:
        Unauthorized: no key, or a key that is none of the configured ones.
        Forbidden: a client key on a route that takes only an admin key.
    """
    if role in PUBLIC_ROUTES:
        return
    key = _presented_key(request)
    if role in CLIENT_ROUTES:
        if key is not None and _matches(key, settings.admin_keys + settings.client_keys):
            return
    elif key is not None and _matches(key, settings.admin_keys):
        return
    elif key is not None and role != UNMATCHED and _matches(key, settings.client_keys):
        raise Forbidden(
            "This is a client key: it may rank, reward and activate; this operation needs "
            "an admin key."
        )
    raise Unauthorized(
        "Access denied: send a valid key in the Ocp-Apim-Subscription-Key "
        "header (or Authorization: Bearer)."
    )


def _unhandled(request: web.Request) -> web.Response:
    log.exception("unhandled error in %s %s", request.method, request.path)
    error = BanditError("the server failed to process the request.")
    error.code = "InternalServerError"
    return error_response(error)


Edge = Callable[[Handler, str], Handler]
"""Wraps a route's handler, given the route's role."""

EDGE: web.AppKey[Edge] = web.AppKey("edge")


_PATHS: web.AppKey[dict[str, list[str]]] = web.AppKey("edge_paths")
"""Every path :func:`add_route` added, in order, with its methods (for :func:`add_fallbacks`)."""


def install_edge(app: web.Application, settings: Settings, metrics: Metrics) -> None:
    """Run every handler :func:`add_route` adds to ``app`` in the edge of :func:`make_edge`."""
    app[EDGE] = make_edge(settings, metrics)
    app[_PATHS] = {}


def make_edge(settings: Settings, metrics: Metrics) -> Edge:
    """The edge every handler runs in: the key check, every exception to Personalizer's error
    body (nothing else builds errors), and request latency by route role and status."""
    auth = settings.auth_enabled

    def wrap(handler: Handler, role: str) -> Handler:
        seconds_by = functools.partial(metrics.request_seconds_by, role)

        @functools.wraps(handler)
        async def edge(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                if auth:
                    check_key(request, role, settings)
                response = await handler(request)
            except BanditError as exc:
                response = error_response(exc)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = error_response(_from_http(exc))
            except Exception:
                response = _unhandled(request)
            seconds_by(str(response.status)).observe(time.perf_counter() - started)
            return response

        return edge

    return wrap


def add_route(
    app: web.Application, method: str, path: str, handler: Handler, *, name: str
) -> web.AbstractRoute:
    """Add a route whose handler runs in the app's edge (``app[EDGE]``); GET also answers HEAD.

    ``name`` must start with the route's role (the part before the first dot), which decides
    the keys it accepts and labels its latency.
    """
    methods = app[_PATHS].setdefault(path, [])
    for taken in (method, "HEAD") if method == "GET" else (method,):
        if taken not in methods:
            methods.append(taken)
    wrapped = app[EDGE](handler, role_of(name))
    if method == "GET":
        return app.router.add_get(path, wrapped, name=name)
    return app.router.add_route(method, path, wrapped, name=name)


def _method_not_allowed(allowed: tuple[str, ...]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise MethodNotAllowed("this method is not allowed on this path.", allowed=allowed)

    return handler


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound("no resource at this path.")


def add_fallbacks(app: web.Application) -> None:
    """Answer any other method on a known path with 405 and its ``Allow`` header, whatever the
    key (role ``method``), and any unknown path with 404 in the edge (role ``unmatched``:
    without an admin key it answers 401, so unknown paths are not probed for free).

    Call once, after every route is added: each path added with :func:`add_route` gets a
    ``*`` route after its own methods' (which may sit on several resources), and a catch-all
    resource comes last.
    """
    edge = app[EDGE]
    for path, methods in app[_PATHS].items():
        handler = _method_not_allowed(tuple(sorted(methods)))
        app.router.add_route(hdrs.METH_ANY, path, edge(handler, WRONG_METHOD))
    app.router.add_route(hdrs.METH_ANY, "/{path:.*}", edge(_not_found, UNMATCHED), name=UNMATCHED)
