"""HTTP handlers and declared operations of offline evaluations and ``applyFromEvaluation``."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from bandit.errors import InvalidEvaluationContract, InvalidRequest
from server.api import contracts as c
from server.api import evaluation_wire as wire
from server.api.base import json_response
from server.api.evaluations import Evaluations, api_version, parse_time, path_id
from server.api.operations import Operation, Response, declare, decode, mount
from server.api.schemas import parse_whole_number
from server.trainer.control import LoopControl
from server.trainer.jobs import JobRunner

EVALUATIONS: web.AppKey[Evaluations] = web.AppKey("evaluations", Evaluations)

INTERVALS = (5, 60, 360, 720, 1440)
PAGE_SIZE = 50


def int_query(request: web.Request, name: str, default: int | None) -> int | None:
    """A non-negative integer query parameter."""
    text = request.query.get(name)
    if text is None:
        return default
    return parse_whole_number(text, name)


async def list_evaluations(request: web.Request) -> web.Response:
    items = await asyncio.to_thread(request.app[EVALUATIONS].all)
    version = api_version(request)
    if version != "2022":
        return json_response([wire.render(e, version=version) for e in items])
    skip = int_query(request, "skip", 0) or 0
    top = int_query(request, "top", None)
    size = int_query(request, "maxpagesize", PAGE_SIZE) or PAGE_SIZE
    end = len(items) if top is None else min(len(items), skip + top)
    page = items[skip : min(end, skip + size)]
    body: dict[str, object] = {"value": [wire.render_brief(e) for e in page]}
    following = skip + len(page)
    if following < end:
        body["nextLink"] = str(
            request.url.update_query(skip=following, top=end - following, maxpagesize=size)
        )
    return json_response(body)


async def post_evaluation(request: web.Request) -> web.Response:
    contract = decode(await request.read(), c.EvaluationContract, InvalidEvaluationContract)
    evaluations = request.app[EVALUATIONS]
    evaluation = await asyncio.to_thread(evaluations.create, str(uuid.uuid4()), contract)
    response = json_response(wire.render(evaluation, version=api_version(request)), status=201)
    response.headers["Location"] = (
        str(request.url.with_query(None)).rstrip("/") + "/" + evaluation.id
    )
    return response


async def put_evaluation(request: web.Request) -> web.Response:
    contract = decode(await request.read(), c.EvaluationContract, InvalidEvaluationContract)
    evaluation_id = path_id(request, "evaluation_id")
    evaluation = await asyncio.to_thread(request.app[EVALUATIONS].create, evaluation_id, contract)
    return json_response(wire.render(evaluation, version=api_version(request)))


def series_window(
    request: web.Request, evaluation: wire.StoredEvaluation
) -> tuple[float, float, int, bool]:
    """The 2022 time series' start, end, interval and whether it rolls, from the query."""
    query = request.query
    start = evaluation.start
    end = evaluation.end
    if "startTime" in query:
        start = parse_time(query["startTime"], "startTime", InvalidRequest)
    if "endTime" in query:
        end = parse_time(query["endTime"], "endTime", InvalidRequest)
    if not start < end:
        raise InvalidRequest("startTime must be before endTime.", target="startTime")
    interval = int_query(request, "intervalInMinutes", 5)
    if interval not in INTERVALS:
        raise InvalidRequest(
            "intervalInMinutes must be 5, 60, 360, 720 or 1440.", target="intervalInMinutes"
        )
    window = query.get("window", "Expanding" if interval == 5 else "Rolling")
    if window not in ("Expanding", "Rolling"):
        raise InvalidRequest("window must be Expanding or Rolling.", target="window")
    if (window == "Expanding") != (interval == 5):
        raise InvalidRequest(
            "window Expanding goes with 5-minute intervals only, Rolling with the others.",
            target="window",
        )
    return start, end, interval, window == "Rolling"


async def get_evaluation(request: web.Request) -> web.Response:
    evaluations = request.app[EVALUATIONS]
    evaluation = await asyncio.to_thread(evaluations.get, path_id(request, "evaluation_id"))
    window = series_window(request, evaluation)
    return json_response(wire.render(evaluation, version=api_version(request), window=window))


async def delete_evaluation(request: web.Request) -> web.Response:
    await asyncio.to_thread(request.app[EVALUATIONS].delete, path_id(request, "evaluation_id"))
    return web.Response(status=204)


async def apply_from_evaluation(request: web.Request) -> web.Response:
    reference = decode(await request.read(), c.PolicyReferenceContract, InvalidRequest)
    await request.app[EVALUATIONS].apply(reference)
    return web.Response(status=204)


_EVALUATION = Response(status=200, description="The evaluation.", body=dict)
_BAD = Response(status=400, description="The request is invalid.", body=c.ErrorResponse)
_MISSING = Response(status=404, description="No such evaluation.", body=c.ErrorResponse)
_ID = "/evaluations/{evaluation_id:[^/]+}"

OPERATIONS = declare(
    Operation(
        id="listEvaluations",
        role="evaluations",
        method="GET",
        path="/evaluations",
        handler=list_evaluations,
        summary="List evaluations: a bare array (v1.x) or {value, nextLink} (2022).",
        query={
            "top": (int, False, "Most items to return (2022)."),
            "skip": (int, False, "Items to skip (2022)."),
            "maxpagesize": (int, False, "Items per page (2022)."),
            "filter": (str, False, "Accepted and ignored."),
        },
        responses=(Response(status=200, description="Evaluations.", body=list),),
    ),
    Operation(
        id="createEvaluation",
        role="evaluations",
        method="POST",
        path="/evaluations",
        handler=post_evaluation,
        summary="Submit an evaluation (v1.x): 201 with a Location header.",
        body=c.EvaluationContract,
        responses=(
            Response(status=201, description="The evaluation, pending.", body=dict),
            _BAD,
        ),
    ),
    Operation(
        id="putEvaluation",
        role="evaluations",
        method="PUT",
        path=_ID,
        handler=put_evaluation,
        summary="Submit an evaluation under an id (2022); repeating it is a no-op.",
        body=c.EvaluationContract,
        responses=(
            _EVALUATION,
            _BAD,
            Response(
                status=409, description="The id has another definition.", body=c.ErrorResponse
            ),
        ),
    ),
    Operation(
        id="getEvaluation",
        role="evaluations",
        method="GET",
        path=_ID,
        handler=get_evaluation,
        summary="An evaluation with its IPS and SNIPS estimates and time series.",
        query={
            "startTime": (str, False, "Start of the time series (2022)."),
            "endTime": (str, False, "End of the time series (2022)."),
            "intervalInMinutes": (int, False, "5, 60, 360, 720 or 1440."),
            "window": (str, False, "Expanding (5 minutes) or Rolling (the others)."),
        },
        responses=(_EVALUATION, _BAD, _MISSING),
    ),
    Operation(
        id="deleteEvaluation",
        role="evaluations",
        method="DELETE",
        path=_ID,
        handler=delete_evaluation,
        summary="Delete an evaluation (stops it if running).",
        responses=(Response(status=204, description="Deleted."), _MISSING),
    ),
    Operation(
        id="applyFromEvaluation",
        role="policy",
        method="POST",
        path="/configurations/applyFromEvaluation",
        handler=apply_from_evaluation,
        summary="Make a policy of a finished evaluation the online learning policy.",
        body=c.PolicyReferenceContract,
        responses=(Response(status=204, description="Applied."), _BAD, _MISSING),
    ),
)


def add_evaluation_routes(app: web.Application, control: LoopControl, jobs: JobRunner) -> None:
    """Mount the evaluation operations."""
    app[EVALUATIONS] = Evaluations(control, jobs)
    mount(app, OPERATIONS)
