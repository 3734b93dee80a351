"""Middlewares: the one place errors become HTTP responses, authentication, request timing."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from bandit.errors import (
    BanditError,
    EventConflict,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadSizeExceeded,
    ResourceConflict,
    ServiceUnavailable,
    Unauthorized,
)
from server.metrics import Metrics
from server.schemas import dumps
from server.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (status, Personalizer's high-level code) per error class; the first match in the MRO wins.
_STATUS: list[tuple[type[BanditError], int, str]] = [
    (PayloadSizeExceeded, 413, "BadRequest"),
    (InvalidRequest, 400, "BadRequest"),
    (Unauthorized, 401, "Unauthorized"),
    (NotFound, 404, "ResourceNotFound"),
    (MethodNotAllowed, 405, "MethodNotAllowed"),
    (EventConflict, 409, "Conflict"),
    (ResourceConflict, 409, "Conflict"),
    (ServiceUnavailable, 503, "ServiceUnavailable"),
]

PUBLIC_ROUTES = frozenset({"healthz", "openapi", "dashboard"})
CLIENT_ROUTES = frozenset({"rank", "reward", "activate"})
"""Route roles a client key may call; every other role but the public ones needs an admin key."""


def status_of(error: BanditError) -> tuple[int, str]:
    """HTTP status and high-level code for an error."""
    from bandit.errors import EventNotFound

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
    headers["Content-Type"] = "application/json; charset=utf-8"
    return web.Response(status=status, body=dumps({"error": body}), headers=headers)


def _from_http(exc: web.HTTPException) -> BanditError:
    if exc.status == 404:
        return NotFound("no resource at this path.")
    if exc.status == 405:
        return MethodNotAllowed("this method is not allowed on this path.")
    if exc.status == 413:
        return PayloadSizeExceeded("the request body is too large.")
    return InvalidRequest(exc.reason)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every exception to the Personalizer error body; nothing else builds errors."""
    try:
        return await handler(request)
    except BanditError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http(exc))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        error = BanditError("the server failed to process the request.")
        error.code = "InternalServerError"
        return error_response(error)


def route_role(request: web.Request) -> str:
    """The role of the matched route (``rank``, ``reward``, …), the same under every prefix."""
    return (request.match_info.route.name or "unmatched").split(".", 1)[0]


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


def make_auth(settings: Settings) -> Middleware:
    """Require a client key for rank/reward/activate and an admin key for everything else."""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if settings.auth_enabled:
            route = route_role(request)
            if route not in PUBLIC_ROUTES:
                key = _presented_key(request)
                allowed = settings.admin_keys
                if route in CLIENT_ROUTES:
                    allowed = allowed + settings.client_keys
                if key is None or not _matches(key, allowed):
                    raise Unauthorized(
                        "Access denied: send a valid key in the Ocp-Apim-Subscription-Key "
                        "header (or Authorization: Bearer)."
                    )
        return await handler(request)

    return auth


def make_timing(metrics: Metrics) -> Middleware:
    """Record request latency by route name and status."""

    @web.middleware
    async def timing(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        metrics.request_seconds_by(route_role(request), str(response.status)).observe(
            time.perf_counter() - started
        )
        return response

    return timing
