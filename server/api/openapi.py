"""``/openapi.json``: an OpenAPI 3.1 description generated from the declared operations.

Request and response bodies are the same ``msgspec`` types the handlers decode with
(:mod:`server.api.contracts`, and the rank body of :mod:`server.api.schemas`), turned into
JSON Schema 2020-12 by msgspec, so the description cannot drift from what is validated. Paths
are written once, relative to a server variable holding each Personalizer URL prefix.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from server.api import contracts as c
from server.api import routes
from server.api.base import PREFIXES, SERVICE, json_response
from server.api.edge import CLIENT_ROUTES, PUBLIC_ROUTES, add_route, role_of
from server.api.operations import JSON, REGISTRY, Operation, Response, declare
from server.api.schemas import MAX_ID_LENGTH, _RankBody


class RankRequest(_RankBody):
    """Actions to rank for a context. Banditd also checks: 1-50 actions with unique ids of
    1-256 characters, at least one action not excluded, maxExploration in [0, 1]."""


class RankResponseItem(c.Contract):
    """One ranked action."""

    id: str
    probability: Annotated[float, Meta(ge=0.0, le=1.0)]


class ExplanationFeature(c.Contract):
    """A feature (``ns.feat``), an interaction (``a^b``) or ``(constant)``, and its share of
    the model's score for the action: positive supports the action."""

    name: str
    score: float


class InferenceExplanation(c.Contract):
    """Why the chosen action scored as it did; the scores sum to the model's score for it.
    ``explored`` (banditd extension): the choice was not the model's greedy one."""

    id: str
    features: list[ExplanationFeature]
    explored: bool


class RankResponse(c.Contract):
    """The decision: the action to show, and every action's probability (chosen first);
    with isInferenceExplainabilityEnabled, the chosen action's explanation."""

    ranking: list[RankResponseItem]
    event_id: str
    reward_action_id: str
    inference_explanation: list[InferenceExplanation] | None = None


class RewardRequest(c.Contract):
    """A reward for an event, within the configured range (default [-1, 1])."""

    value: float


_ERRORS = (
    Response(status=400, description="The request is invalid.", body=c.ErrorResponse),
    Response(status=401, description="No valid key.", body=c.ErrorResponse),
)
_NOT_FOUND = Response(status=404, description="No such event.", body=c.ErrorResponse)

CORE = declare(
    Operation(
        id="rank",
        role="rank",
        method="POST",
        path="/rank",
        handler=routes.rank,
        summary="Rank actions for a context; logs the decision before answering.",
        body=RankRequest,
        responses=(
            Response(status=201, description="The decision.", body=RankResponse),
            *_ERRORS,
            Response(status=409, description="eventId reused differently.", body=c.ErrorResponse),
        ),
        prefixes=(),
    ),
    Operation(
        id="reward",
        role="reward",
        method="POST",
        path="/events/{event_id}/reward",
        handler=routes.reward,
        summary="Report the reward of an event.",
        body=RewardRequest,
        responses=(Response(status=204, description="Stored."), *_ERRORS, _NOT_FOUND),
        prefixes=(),
    ),
    Operation(
        id="activate",
        role="activate",
        method="POST",
        path="/events/{event_id}/activate",
        handler=routes.activate,
        summary="Open a deferred event's reward window.",
        responses=(Response(status=204, description="Activated."), _ERRORS[1], _NOT_FOUND),
        prefixes=(),
    ),
)


def _path(template: str) -> str:
    """``/evaluations/{evaluation_id:[^/]+}`` → ``/evaluations/{evaluation_id}``.

    >>> _path("/evaluations/{evaluation_id:[^/]+}")
    '/evaluations/{evaluation_id}'
    """
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", template)


def _schema(kind: Any, refs: dict[Any, Any]) -> dict[str, Any]:
    if kind is bytes:
        return {"type": "string", "contentMediaType": "application/octet-stream"}
    if kind is str:
        return {"type": "string"}
    if kind is dict:
        return {"type": "object"}
    if kind is list:
        return {"type": "array", "items": {"type": "object"}}
    return dict(refs[kind])


def _content(kind: Any, media: str, refs: dict[Any, Any]) -> dict[str, Any]:
    media = "application/octet-stream" if kind is bytes else media
    return {"content": {media: {"schema": _schema(kind, refs)}}}


def _path_schema(name: str) -> dict[str, Any]:
    """A path parameter: one non-empty segment; event ids at most 256 characters (as rank)."""
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if name == "event_id":
        schema["maxLength"] = MAX_ID_LENGTH
    return schema


def _operation(op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(name)}
        for name in re.findall(r"\{(\w+)\}", _path(op.path))
    ]
    for name, (kind, required, text) in op.query.items():
        schema = msgspec.json.schema(kind)
        if kind is int:  # counts and sizes: ASCII digits only (server.api.schemas)
            schema["minimum"] = 0
        params.append(
            {
                "name": name,
                "in": "query",
                "required": required,
                "description": text,
                "schema": schema,
            }
        )
    params.append(
        {
            "name": "api-version",
            "in": "query",
            "required": False,
            "description": "Accepted and ignored (the 2022-09-01-preview SDK sends it).",
            "schema": {"type": "string"},
        }
    )
    body: dict[str, Any] = {
        "operationId": op.id,
        "summary": op.summary,
        "tags": [op.role],
        "parameters": params,
        "responses": {
            str(r.status): {"description": r.description}
            | (_content(r.body, r.media, refs) if r.body is not None else {})
            for r in op.responses
        },
    }
    if op.body is not None:
        body["requestBody"] = {"required": True} | _content(op.body, op.body_media, refs)
    body["security"] = [{"apim_key": []}, {"bearer": []}]
    return body


_ROOT = {
    "/healthz": ("healthz", "Liveness and learner state (no key needed)."),
    "/metrics": ("metrics", "Prometheus metrics."),
    "/openapi.json": ("openapi", "This description (no key needed)."),
}
"""Routes at the root: path → (auth role, summary)."""


def _undeclared(app: web.Application, paths: dict[str, dict[str, Any]]) -> None:
    """Describe routes mounted without a declaration (summary from the handler's docstring)."""
    taken = {
        op["operationId"] for item in paths.values() for op in item.values() if "operationId" in op
    }
    for route in app.router.routes():
        resource = route.resource
        if route.method in ("HEAD", "*") or resource is None:
            continue
        path, prefixed = resource.canonical, False
        for prefix in sorted(PREFIXES, key=len, reverse=True):
            if path.startswith(prefix + "/"):
                path, prefixed = path[len(prefix) :], True
                break
        item = paths.setdefault(path, {} if prefixed else {"servers": [{"url": "/"}]})
        if route.method.lower() in item:
            continue
        name = re.sub(r"\W+", "_", f"{route.method}_{route.name or path}").strip("_")
        while name in taken:
            name += "_"
        taken.add(name)
        doc = (getattr(route.handler, "__doc__", None) or "").strip().split("\n")[0]
        item[route.method.lower()] = {
            "operationId": name,
            "summary": doc or f"{route.method} {path}",
            "tags": [role_of(route.name)],
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": _path_schema(p)}
                for p in re.findall(r"\{(\w+)\}", path)
            ],
            "responses": {"200": {"description": "OK."}},
        }


_ERROR_BODY = {"content": {JSON: {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}

# Statuses any request can get, whatever its route: the HTTP layer's (a malformed request, a
# client too slow, headers too large) and the service's (the connection limit, a store that
# cannot write). Declared on every operation, so no answer the server gives is undeclared.
_ANY_REQUEST = {
    "400": "The request is invalid (malformed HTTP, a bad parameter or body).",
    "408": "The client did not send the request in time; the connection is closed.",
    "431": "The request line or a header field is too long.",
    "503": "The service cannot take the request now (connection limit, store unavailable); "
    "retry after Retry-After seconds.",
}


def _declare_errors(op: dict[str, Any], role: str, path: str) -> None:
    """Add the error statuses the edge can answer ``op`` with to its declared responses."""
    errors = dict(_ANY_REQUEST)
    if role not in PUBLIC_ROUTES:
        errors["401"] = "No key, or not a configured one."
        if role not in CLIENT_ROUTES:
            errors["403"] = "A client key: this operation needs an admin key."
    if "{" in path:
        errors["404"] = "Nothing is stored under this path."
    if "requestBody" in op:
        errors["413"] = "The request body is larger than the server accepts."
    responses = op["responses"]
    for status, description in errors.items():
        responses.setdefault(status, {"description": description} | _ERROR_BODY)
    op["responses"] = dict(sorted(responses.items()))


def _id_schema(schema: dict[str, Any]) -> None:
    schema.update(minLength=1, maxLength=MAX_ID_LENGTH)


def _tighten_rank(components: dict[str, Any], max_actions: int) -> None:
    """Give the rank body the limits :func:`server.api.schemas.parse_rank` checks (the decoder's
    types leave them to code): 1..max_actions actions, ids of 1-256 characters,
    maxExploration in [0, 1]."""
    rank = components["RankRequest"]["properties"]
    rank["actions"].update(minItems=1, maxItems=max_actions)
    _id_schema(components["_ActionBody"]["properties"]["id"])
    for name in ("eventId", "excludedActions", "maxExploration"):
        for option in rank[name]["anyOf"]:
            if option.get("type") == "string":
                _id_schema(option)
            elif option.get("type") == "array":
                _id_schema(option["items"])
            elif option.get("type") == "number":
                option.update(minimum=0.0, maximum=1.0)


def document(app: web.Application | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared operation (and, given the app, of every
    other route it mounts)."""
    operations = [*CORE, *(op for op in REGISTRY if op not in CORE)]
    kinds = sorted(
        {k for op in operations for k in [op.body, *(r.body for r in op.responses)]
         if isinstance(k, type) and issubclass(k, msgspec.Struct)},
        key=lambda k: k.__name__,
    )  # fmt: skip
    schemas, components = msgspec.json.schema_components(
        kinds, ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip(kinds, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item = paths.setdefault(_path(op.path), {})
        item[op.method.lower()] = _operation(op, refs)
        if op.prefixes and op.prefixes != PREFIXES:  # mounted under some URL forms only
            item["servers"] = [{"url": prefix} for prefix in op.prefixes]
    for path, (role, summary) in _ROOT.items():
        paths[path] = {
            "servers": [{"url": "/"}],
            "get": {
                "operationId": path.strip("/").replace(".", "_"),
                "summary": summary,
                "tags": [role],
                "responses": {"200": {"description": "OK."}},
            },
        }
    max_actions = 50
    if app is not None:
        _undeclared(app, paths)
        max_actions = app[SERVICE].settings.max_actions
    for path, item in paths.items():
        for method, op in item.items():
            if method != "servers":
                _declare_errors(op, op["tags"][0], path)
    _tighten_rank(components, max_actions)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "banditd",
            "version": "1.0",
            "description": "A contextual-bandit decision service speaking the Azure AI "
            "Personalizer REST API (v1.0, v1.1-preview.1-3 and 2022-09-01-preview).",
        },
        "servers": [
            {
                "url": "{prefix}",
                "variables": {"prefix": {"default": "/v1", "enum": list(PREFIXES)}},
            }
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apim_key": {"type": "apiKey", "in": "header", "name": "Ocp-Apim-Subscription-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(request.app[DOCUMENT])


DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)


def add_openapi_route(app: web.Application) -> None:
    """Serve the document at /openapi.json, built once at startup when every route is added."""
    app[DOCUMENT] = {}
    add_route(app, "GET", "/openapi.json", get_openapi, name="openapi")

    async def build(app: web.Application) -> None:
        app[DOCUMENT].update(document(app))

    app.on_startup.append(build)


__all__ = ["CORE", "add_openapi_route"]
