"""The request edge on a small app of its own: key roles, every error as Personalizer's body and
``x-ms-error-code``, the 404/405 fallbacks, and latency by role and status.

``tests/server/test_api.py`` checks the same rules on the real routes; here each rule is checked
against routes built for it, with expectations written out rather than read from the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bandit.errors import (
    BanditError,
    EvaluationNotFound,
    EventConflict,
    EventNotFound,
    Forbidden,
    HeaderFieldsTooLarge,
    InvalidRankRequest,
    MethodNotAllowed,
    NoLogsExistInDateRange,
    PayloadSizeExceeded,
    RequestTimedOut,
    ResourceConflict,
    StoreUnavailable,
    Unauthorized,
)
from server.api.edge import add_fallbacks, add_route, install_edge
from server.entry.settings import Settings
from server.serving.metrics import Metrics

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

JSON_TYPE = "application/json; charset=utf-8"
CLIENT_KEYS = ("client-1", "client-2")
ADMIN_KEYS = ("admin-1",)
BODY_LIMIT = 64
"""Bytes the test app accepts in a body (aiohttp's ``client_max_size``)."""

ERRORS: dict[str, tuple[BanditError, int, str]] = {
    "invalid-rank": (InvalidRankRequest("bad actions.", target="actions"), 400, "BadRequest"),
    "no-logs": (NoLogsExistInDateRange("no logs."), 400, "BadRequest"),
    "payload": (PayloadSizeExceeded("too large."), 413, "BadRequest"),
    "headers": (HeaderFieldsTooLarge("headers too large."), 431, "BadRequest"),
    "timeout": (RequestTimedOut("too slow."), 408, "RequestTimeout"),
    "unauthorized": (Unauthorized("no key."), 401, "Unauthorized"),
    "forbidden": (Forbidden("client key."), 403, "Forbidden"),
    "event-not-found": (EventNotFound("e1"), 404, "ResourceNotFound"),
    "evaluation-not-found": (EvaluationNotFound("no evaluation."), 404, "ResourceNotFound"),
    "method": (MethodNotAllowed("not here.", allowed=("GET", "PUT")), 405, "MethodNotAllowed"),
    "event-conflict": (EventConflict("e1"), 409, "Conflict"),
    "resource-conflict": (ResourceConflict("taken."), 409, "Conflict"),
    "store-unavailable": (StoreUnavailable("locked."), 503, "ServiceUnavailable"),
    "bandit": (BanditError("something failed."), 500, "InternalServerError"),
}
"""A handler raises the error; the client sees the status and Personalizer's high-level code
(the inner code is the error's own)."""


async def answer(status: int) -> web.Response:
    return web.json_response({"ok": True}, status=status)


async def rank(request: web.Request) -> web.Response:
    return await answer(201)


async def admin_get(request: web.Request) -> web.Response:
    return await answer(200)


async def healthz(request: web.Request) -> web.Response:
    return await answer(200)


async def echo(request: web.Request) -> web.Response:
    """Reads the body: aiohttp refuses one past ``client_max_size`` with an HTTP exception."""
    return web.Response(status=200, body=await request.read())


async def fail(request: web.Request) -> web.Response:
    raise ERRORS[request.match_info["kind"]][0]


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("secret detail of the failure")


async def http_exception(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind == "redirect":
        raise web.HTTPFound("/healthz")
    if kind == "not-found":
        raise web.HTTPNotFound()
    raise web.HTTPBadRequest(reason="the handler refused it")


def make_app(settings: Settings, metrics: Metrics) -> web.Application:
    """Routes of each role: client (``rank``), admin (anything else) and public (``healthz``)."""
    app = web.Application(client_max_size=BODY_LIMIT)
    install_edge(app, settings, metrics)
    add_route(app, "POST", "/rank", rank, name="rank.v1")
    add_route(app, "POST", "/rank/echo", echo, name="rank.echo")
    add_route(app, "GET", "/things", admin_get, name="things.get")
    add_route(app, "PUT", "/things", admin_get, name="things.put")
    add_route(app, "DELETE", "/things", admin_get, name="things.delete")
    add_route(app, "GET", "/healthz", healthz, name="healthz")
    add_route(app, "GET", "/healthz/fail/{kind}", fail, name="healthz.fail")
    add_route(app, "GET", "/healthz/crash", crash, name="healthz.crash")
    add_route(app, "GET", "/healthz/http/{kind}", http_exception, name="healthz.http")
    add_fallbacks(app)
    return app


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def open_client(aiohttp_client: MakeClient, metrics: Metrics) -> Client:
    """The app with no keys configured: every role is open."""
    return await aiohttp_client(make_app(Settings(), metrics))


@pytest.fixture
async def keyed_client(aiohttp_client: MakeClient, metrics: Metrics) -> Client:
    settings = Settings(client_keys=CLIENT_KEYS, admin_keys=ADMIN_KEYS)
    return await aiohttp_client(make_app(settings, metrics))


async def error_body(response: Any, status: int, code: str, inner: str) -> dict[str, Any]:
    """The error object of a Personalizer error response, after checking its envelope."""
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"] == JSON_TYPE
    assert response.headers["x-ms-error-code"] == inner
    body = await response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["code"] == code and error["innerError"] == {"code": inner}
    assert isinstance(error["message"], str) and error["message"]
    return error


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(ERRORS))
async def test_a_raised_error_is_its_status_and_personalizer_body(
    open_client: Client, kind: str
) -> None:
    raised, status, code = ERRORS[kind]
    response = await open_client.get(f"/healthz/fail/{kind}")
    error = await error_body(response, status, code, raised.code)
    assert error["message"] == raised.message
    assert error.get("target") == raised.target
    assert ("Retry-After" in response.headers) == (status == 503)
    if status == 503:
        assert response.headers["Retry-After"] == "1"
    if isinstance(raised, MethodNotAllowed):
        assert response.headers["Allow"] == "GET, PUT"
    else:
        assert "Allow" not in response.headers


async def test_an_unexpected_exception_is_a_500_that_keeps_its_detail_in_the_log(
    open_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="server.api.edge"):
        response = await open_client.get("/healthz/crash")
    error = await error_body(response, 500, "InternalServerError", "InternalServerError")
    assert "secret" not in error["message"]
    assert any(
        record.exc_info and "secret detail" in str(record.exc_info[1]) for record in caplog.records
    )


async def test_http_exceptions_from_aiohttp_become_personalizer_errors(
    open_client: Client,
) -> None:
    response = await open_client.post("/rank/echo", data=b"x" * (BODY_LIMIT + 1))
    await error_body(response, 413, "BadRequest", "PayloadSizeExceeded")
    response = await open_client.get("/healthz/http/bad")
    error = await error_body(response, 400, "BadRequest", "InvalidRequest")
    assert error["message"] == "the handler refused it"
    response = await open_client.get("/healthz/http/not-found")
    await error_body(response, 404, "ResourceNotFound", "ResourceNotFound")


async def test_a_redirect_is_not_an_error(open_client: Client) -> None:
    response = await open_client.get("/healthz/http/redirect", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/healthz"


# -- fallbacks ---------------------------------------------------------------------------------


async def test_an_unknown_path_is_404_for_every_method(open_client: Client) -> None:
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        response = await open_client.request(method, "/no/such/path")
        await error_body(response, 404, "ResourceNotFound", "ResourceNotFound")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/rank", "POST"),
        ("DELETE", "/rank", "POST"),
        ("POST", "/healthz", "GET, HEAD"),
        ("POST", "/things", "DELETE, GET, HEAD, PUT"),
        ("PATCH", "/things", "DELETE, GET, HEAD, PUT"),
    ],
)
async def test_a_known_path_with_another_method_is_405_naming_its_methods(
    open_client: Client, method: str, path: str, allow: str
) -> None:
    response = await open_client.request(method, path)
    await error_body(response, 405, "MethodNotAllowed", "MethodNotAllowed")
    assert response.headers["Allow"] == allow


async def test_get_routes_answer_head(open_client: Client) -> None:
    response = await open_client.head("/healthz")
    assert response.status == 200


# -- keys and roles ----------------------------------------------------------------------------


def key(value: str) -> dict[str, str]:
    return {"Ocp-Apim-Subscription-Key": value}


ROLES: list[tuple[str, str, dict[str, str], int, str | None]] = [
    # client role: any client key or admin key, in either header
    ("POST", "/rank", {}, 401, "Unauthorized"),
    ("POST", "/rank", key("wrong"), 401, "Unauthorized"),
    ("POST", "/rank", key(""), 401, "Unauthorized"),
    ("POST", "/rank", key("client-1"), 201, None),
    ("POST", "/rank", key("client-2"), 201, None),
    ("POST", "/rank", key("admin-1"), 201, None),
    ("POST", "/rank", {"Authorization": "Bearer client-1"}, 201, None),
    ("POST", "/rank", {"Authorization": "bearer  client-2 "}, 201, None),
    ("POST", "/rank", {"Authorization": "Basic client-1"}, 401, "Unauthorized"),
    # admin role: only an admin key; a client key is recognised and refused
    ("GET", "/things", {}, 401, "Unauthorized"),
    ("GET", "/things", key("wrong"), 401, "Unauthorized"),
    ("GET", "/things", key("client-1"), 403, "InvalidApiAccess"),
    ("PUT", "/things", {"Authorization": "Bearer client-2"}, 403, "InvalidApiAccess"),
    ("GET", "/things", key("admin-1"), 200, None),
    ("DELETE", "/things", {"Authorization": "Bearer admin-1"}, 200, None),
    # public role: no key needed
    ("GET", "/healthz", {}, 200, None),
    ("GET", "/healthz", key("wrong"), 200, None),
    # a wrong method on a known path is 405 whatever the key
    ("GET", "/rank", {}, 405, "MethodNotAllowed"),
    ("POST", "/things", key("client-1"), 405, "MethodNotAllowed"),
    # an unknown path needs an admin key before it says 404
    ("GET", "/nothing", {}, 401, "Unauthorized"),
    ("GET", "/nothing", key("client-1"), 401, "Unauthorized"),
    ("GET", "/nothing", key("admin-1"), 404, "ResourceNotFound"),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "inner"),
    ROLES,
    ids=[f"{m} {p} {next(iter(h.values()), 'no key')!r}" for m, p, h, _, _ in ROLES],
)
async def test_keys_by_role(
    keyed_client: Client,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    inner: str | None,
) -> None:
    response = await keyed_client.request(method, path, headers=headers)
    if inner is None:
        assert response.status == status, await response.text()
        return
    codes = {401: "Unauthorized", 403: "Forbidden", 404: "ResourceNotFound"}
    await error_body(response, status, codes.get(status, "MethodNotAllowed"), inner)


async def test_with_no_keys_configured_every_role_is_open(open_client: Client) -> None:
    assert (await open_client.post("/rank")).status == 201
    assert (await open_client.get("/things")).status == 200
    assert (await open_client.get("/healthz")).status == 200


# -- latency -----------------------------------------------------------------------------------


def observed(metrics: Metrics, route: str, status: str) -> float:
    """Requests the latency histogram counted for a route role and status."""
    value = metrics.registry.get_sample_value(
        "banditd_request_duration_seconds_count", {"route": route, "status": status}
    )
    return value or 0.0


async def test_every_answer_is_timed_by_role_and_status(
    keyed_client: Client, metrics: Metrics
) -> None:
    for _ in range(2):
        await keyed_client.post("/rank", headers=key("client-1"))
    await keyed_client.post("/rank")
    await keyed_client.get("/things", headers=key("client-1"))
    await keyed_client.get("/nothing", headers=key("admin-1"))
    await keyed_client.get("/rank")
    assert observed(metrics, "rank", "201") == 2
    assert observed(metrics, "rank", "401") == 1
    assert observed(metrics, "things", "403") == 1
    assert observed(metrics, "unmatched", "404") == 1
    assert observed(metrics, "method", "405") == 1
