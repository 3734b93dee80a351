"""Observe the loop over HTTP: status, model versions and rollback, watch settings, dashboard.

* ``GET /v1/loop/status``: the counterfactual watch (policy, baseline, uniform, improvement with
  anytime-valid intervals), guardrail, drift, learner and watcher state, and chart history.
* ``GET``/``PUT /v1/loop/configuration``: the watch, guardrail and drift settings.
* ``GET /v1/models``: stored versions with their counterfactual scores.
* ``POST /v1/models/{version}/activate``: roll back by hand to a stored version.
* ``GET /dashboard``: the live page (static files in ``server/api/dashboard/``). The page and its
  assets hold no data, so they load without a key; everything they fetch needs the admin key.
"""

from __future__ import annotations

import asyncio
from importlib import resources

from aiohttp import web

from bandit.dsjson import iso_time
from bandit.errors import InvalidRequest, NotFound, OperationNotAllowed
from server.api.base import CONTROL, OBSERVER, json_response
from server.api.edge import add_route
from server.api.loop_status import estimate_body, status_body
from server.api.operations import Operation, Response, declare, mount
from server.api.schemas import decode_json, parse_whole_number
from server.trainer.observer import LoopObserver
from server.trainer.watch_settings import to_wire

MAX_MODEL_VERSION = 2**63 - 1
"""SQLite's largest integer: no stored model has a larger version."""

# -- handlers ----------------------------------------------------------------------------------


def _observer(request: web.Request) -> LoopObserver:
    return request.app[OBSERVER]


async def get_status(request: web.Request) -> web.Response:
    history = request.query.get("history", "true").lower() not in {"0", "false", "no"}
    return json_response(await status_body(_observer(request), history))


async def get_loop_configuration(request: web.Request) -> web.Response:
    return json_response(to_wire(_observer(request).settings))


async def put_loop_configuration(request: web.Request) -> web.Response:
    body = decode_json(await request.read(), InvalidRequest)
    if not isinstance(body, dict):
        raise InvalidRequest("the loop configuration must be a JSON object.")
    try:
        settings = await _observer(request).configure(body)
    except ValueError as exc:
        raise InvalidRequest(f"{exc}.") from exc
    return json_response(to_wire(settings))


async def list_models(request: web.Request) -> web.Response:
    observer = _observer(request)
    service = observer.service
    records = await asyncio.to_thread(service.store.list_models)
    with_replay = request.query.get("counterfactual", "true").lower() not in {"0", "false", "no"}
    replay = await observer.replay(records) if with_replay else {}
    restored = await asyncio.to_thread(observer.restored_from)
    served = observer.report.versions
    models = []
    for r in records:
        score = served.get(r.version)
        cf = replay.get(r.version)
        models.append(
            {
                "version": r.version,
                "createdAt": iso_time(r.created_at),
                "learnedCount": r.learned_count,
                "cursor": r.cursor,
                "arguments": r.arguments,
                "serving": r.version == service.serving.version,
                "restoredFrom": restored.get(r.version),
                "served": None
                if score is None
                else {
                    "events": score.policy.n,
                    "policy": estimate_body(score.policy),
                    "baseline": estimate_body(score.baseline),
                    "improvement": estimate_body(score.improvement),
                },
                "counterfactual": None
                if cf is None
                else {
                    "events": cf.n,
                    "policy": estimate_body(cf.policy),
                    "baseline": estimate_body(cf.baseline),
                    "uniform": estimate_body(cf.uniform),
                    "improvement": estimate_body(cf.improvement),
                },
            }
        )
    return json_response({"servingVersion": service.serving.version, "models": models})


async def activate_model(request: web.Request) -> web.Response:
    observer = _observer(request)
    service = observer.service
    version = parse_whole_number(request.match_info["version"], "version")
    # A version past SQLite's integer range was never stored (and cannot be looked up).
    record = (
        None
        if version > MAX_MODEL_VERSION
        else await asyncio.to_thread(service.store.get_model, version)
    )
    if record is None:
        raise NotFound(f"model version {version} is not stored (only the newest are kept).")
    if record.arguments != service.policy_settings.arguments:
        raise OperationNotAllowed(
            f"model version {version} was learned with other policy arguments "
            f"({record.arguments!r}); set that policy first."
        )
    control = request.app[CONTROL]
    # One change at a time with the administration surface; abandon any retrain in flight.
    async with control._lock:
        control._generation += 1
        async with control.paused():
            new, serving = await observer.run(observer.restore, record)
            service.install(new, serving)
    await observer.activated(record, new)
    return json_response(
        {"version": new.version, "restoredFrom": version, "createdAt": iso_time(new.created_at)}
    )


# -- dashboard ---------------------------------------------------------------------------------

_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> web.Response:
    kind = _ASSETS.get(name)
    if kind is None:
        raise NotFound("no such dashboard file.")
    body = (resources.files("server.api") / "dashboard" / name).read_bytes()
    return web.Response(body=body, headers={**_HEADERS, "Content-Type": kind})


async def dashboard_page(request: web.Request) -> web.Response:
    """The live dashboard page (no key needed; what it shows needs the admin key)."""
    del request
    return _asset("index.html")


async def dashboard_asset(request: web.Request) -> web.Response:
    """A script or style sheet of the dashboard (no key needed)."""
    return _asset(request.match_info["asset"])


# -- routes ------------------------------------------------------------------------------------

_OK = "OK."
OPERATIONS = declare(
    Operation(
        id="getLoopStatus",
        role="loop",
        method="GET",
        path="/loop/status",
        handler=get_status,
        summary="Counterfactual watch, guardrail, drift, learner and watcher state (extension).",
        query={"history": (bool, False, "Include the chart history (default true).")},
        responses=(Response(status=200, description=_OK),),
        prefixes=("/v1",),
    ),
    Operation(
        id="getLoopConfiguration",
        role="loop",
        method="GET",
        path="/loop/configuration",
        handler=get_loop_configuration,
        summary="Watch window, α, guardrail and drift settings (extension).",
        responses=(Response(status=200, description=_OK),),
        prefixes=("/v1",),
    ),
    Operation(
        id="updateLoopConfiguration",
        role="loop",
        method="PUT",
        path="/loop/configuration",
        handler=put_loop_configuration,
        summary="Change watch, guardrail or drift settings; stored (extension).",
        body=dict,
        responses=(Response(status=200, description=_OK),),
        prefixes=("/v1",),
    ),
    Operation(
        id="listModels",
        role="models",
        method="GET",
        path="/models",
        handler=list_models,
        summary="Stored model versions with their counterfactual scores (extension).",
        query={"counterfactual": (bool, False, "Replay each version on recent events.")},
        responses=(Response(status=200, description=_OK),),
        prefixes=("/v1",),
    ),
    Operation(
        id="activateModel",
        role="models",
        method="POST",
        path="/models/{version}/activate",
        handler=activate_model,
        summary="Roll back: serve and keep learning from a stored version (extension).",
        responses=(Response(status=200, description=_OK),),
        prefixes=("/v1",),
    ),
)


def add_observe_routes(app: web.Application) -> None:
    """Mount the observation routes and the dashboard."""
    mount(app, OPERATIONS)
    add_route(app, "GET", "/dashboard", dashboard_page, name="dashboard.page")
    add_route(app, "GET", "/dashboard/{asset}", dashboard_asset, name="dashboard.asset")
