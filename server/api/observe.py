"""Observe the loop over HTTP: status, model versions and rollback, watch settings, dashboard.

What the watcher knows comes from the trainer's last report in the store; changes and
counterfactual replays are commands the trainer carries out (:mod:`server.serving.commands`).

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
from typing import Any

from aiohttp import web

from bandit.dsjson import iso_time
from bandit.errors import InvalidRequest, NotFound, ServiceUnavailable
from server.api.base import COMMANDS, SERVICE, json_response
from server.api.edge import add_route
from server.api.operations import Operation, Response, declare, mount
from server.api.schemas import decode_json, parse_whole_number
from server.trainer.records import TrainerReport, load_report, restored_from

MAX_MODEL_VERSION = 2**63 - 1
"""SQLite's largest integer: no stored model has a larger version."""

# -- handlers ----------------------------------------------------------------------------------


async def _report(request: web.Request) -> TrainerReport:
    report = await asyncio.to_thread(load_report, request.app[SERVICE].store)
    if report is None:
        raise ServiceUnavailable("the trainer has not reported yet; try again in a moment.")
    return report


async def get_status(request: web.Request) -> web.Response:
    history = request.query.get("history", "true").lower() not in {"0", "false", "no"}
    body = dict((await _report(request)).status)
    if not history:
        body.pop("history", None)
    service = request.app[SERVICE]
    fallbacks = service.metrics.registry.get_sample_value(
        "banditd_guardrail_fallback_decisions_total"
    )
    body["guardrail"] = {**body["guardrail"], "fallbackDecisions": int(fallbacks or 0)}
    # What this edge serves now (it follows the stored guardrail state within its period), and
    # the model version it serves: the same one `GET /v1/models` marks as serving, so the
    # dashboard's header and table agree (the trainer's report may be a publication ahead).
    body["serving"] = "baseline" if service.fallback is not None else "policy"
    body["modelVersion"] = service.serving.version
    body["modelCreatedAt"] = iso_time(service.serving.created_at)
    return json_response(body)


async def get_loop_configuration(request: web.Request) -> web.Response:
    return json_response((await _report(request)).watch)


async def put_loop_configuration(request: web.Request) -> web.Response:
    body = decode_json(await request.read(), InvalidRequest)
    if not isinstance(body, dict):
        raise InvalidRequest("the loop configuration must be a JSON object.")
    return json_response(await request.app[COMMANDS].call("configure_watch", body))


async def list_models(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    store = service.store
    records = await asyncio.to_thread(store.list_models)
    with_replay = request.query.get("counterfactual", "true").lower() not in {"0", "false", "no"}
    replay: dict[str, Any] = {}
    if with_replay and records:
        versions = [r.version for r in records]
        replay = await request.app[COMMANDS].call("score_models", {"versions": versions})
    restored = await asyncio.to_thread(restored_from, store)
    served = (await _report(request)).versions
    models = [
        {
            "version": r.version,
            "createdAt": iso_time(r.created_at),
            "learnedCount": r.learned_count,
            "cursor": r.cursor,
            "arguments": r.arguments,
            "serving": r.version == service.serving.version,
            "restoredFrom": restored.get(r.version),
            "served": served.get(str(r.version)),
            "counterfactual": replay.get(str(r.version)),
        }
        for r in records
    ]
    return json_response({"servingVersion": service.serving.version, "models": models})


async def activate_model(request: web.Request) -> web.Response:
    version = parse_whole_number(request.match_info["version"], "version")
    # A version past SQLite's integer range was never stored (and cannot be looked up).
    if version > MAX_MODEL_VERSION:
        raise NotFound(f"model version {version} is not stored (only the newest are kept).")
    return json_response(await request.app[COMMANDS].call("activate_model", {"version": version}))


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
