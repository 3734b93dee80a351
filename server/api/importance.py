"""Feature importances (2022-09-01-preview): create with PUT, get, list, delete.

The job replays the window's joined events through the online policy once with every
namespace and once without each (:mod:`bandit.importance`), on the job thread, and stores the
scores (0–100, most important first). Scores are per namespace; ``featureName`` is ``*``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import msgspec
from aiohttp import web

from bandit.dsjson import iso_time
from bandit.errors import (
    FeatureImportanceNotFound,
    InvalidEvaluationContract,
    NoLogsExistInDateRange,
    ResourceConflict,
)
from bandit.evaluation import Candidate, PolicySource
from bandit.events import JobRecord, JoinedEvent
from bandit.importance import importance, namespaces
from bandit.store import JobStore
from policies import make_factory
from server.api import contracts as c
from server.api.base import json_response
from server.api.evaluation_routes import PAGE_SIZE, int_query
from server.api.evaluations import parse_time, path_id
from server.api.operations import Operation, Response, declare, decode, mount
from server.trainer.control import LoopControl
from server.trainer.jobs import JobRunner, StopCheck, logged_events

KIND = "featureImportance"
MAX_NAMESPACES = 32


class StoredImportance(msgspec.Struct, frozen=True):
    """A feature-importance job's definition, status and scores."""

    id: str
    name: str
    start: float
    end: float
    created: float
    status: str
    arguments: str
    epsilon: float
    min_propensity: float
    description: str = ""
    scores: list[tuple[str, float, float]] = []


def _encode(item: StoredImportance) -> str:
    return msgspec.json.encode(item).decode()


def _decode(text: str) -> StoredImportance:
    return msgspec.json.decode(text, type=StoredImportance)


class FeatureImportances:
    """Feature-importance records and their jobs."""

    def __init__(self, control: LoopControl, jobs: JobRunner) -> None:
        self.control = control
        self.store: JobStore = control.service.store
        self.jobs = jobs
        jobs.recover(KIND, self._fail_interrupted)

    @staticmethod
    def _fail_interrupted(record: JobRecord) -> JobRecord | None:
        item = _decode(record.data)
        if item.status != "Running":
            return None
        failed = msgspec.structs.replace(
            item, status="Failed", description="interrupted by a server restart"
        )
        return replace(record, data=_encode(failed))

    def get(self, item_id: str) -> StoredImportance:
        record = self.store.get_job(KIND, item_id)
        if record is None:
            raise FeatureImportanceNotFound(f"No feature importance with id {item_id!r} exists.")
        return _decode(record.data)

    def all(self) -> list[StoredImportance]:
        return [_decode(r.data) for r in self.store.list_jobs(KIND)]

    def delete(self, item_id: str) -> None:
        self.get(item_id)
        self.jobs.stop(KIND, item_id)
        self.store.delete_job(KIND, item_id)

    def _save(self, item: StoredImportance) -> None:
        self.store.save_job(
            JobRecord(kind=KIND, id=item.id, created_at=item.created, data=_encode(item))
        )

    def create(self, item_id: str, contract: c.FeatureImportanceContract) -> StoredImportance:
        """Validate, store as Running and queue the job; an identical repeat is a no-op."""
        if len(item_id) > 256:
            raise InvalidEvaluationContract("feature importance ids are at most 256 characters.")
        start = parse_time(contract.start_time, "startTime", InvalidEvaluationContract)
        end = parse_time(contract.end_time, "endTime", InvalidEvaluationContract)
        if not start < end:
            raise InvalidEvaluationContract("startTime must be before endTime.", target="startTime")
        existing = self.store.get_job(KIND, item_id)
        if existing is not None:
            stored = _decode(existing.data)
            if (stored.name, stored.start, stored.end) != (contract.name, start, end):
                raise ResourceConflict(
                    f"feature importance {item_id!r} exists with a different definition."
                )
            return stored
        if not self.store.joined_between(start, end, 0, 1):
            raise NoLogsExistInDateRange(
                "no joined events were logged between startTime and endTime.", target="startTime"
            )
        service = self.control.service
        item = StoredImportance(
            id=item_id,
            name=contract.name,
            start=start,
            end=end,
            created=service.clock(),
            status="Running",
            arguments=service.policy_settings.arguments,
            epsilon=service.config.exploration_percentage,
            min_propensity=service.config.min_propensity,
        )
        self._save(item)
        self.jobs.submit(KIND, item_id, lambda stop: self._run(item, stop))
        return item

    def _run(self, item: StoredImportance, should_stop: StopCheck) -> None:
        """The job (worker thread)."""

        def events() -> Iterator[JoinedEvent]:
            return logged_events(self.store, item.start, item.end)

        candidate = Candidate(
            name="Online",
            arguments=item.arguments,
            source=PolicySource.ONLINE,
            factory=make_factory(item.arguments, epsilon=item.epsilon),
            epsilon=item.epsilon,
            min_propensity=item.min_propensity,
        )
        names = namespaces(events())[:MAX_NAMESPACES]
        changes: dict[str, Any]
        try:
            scores = importance(events, candidate, names, should_stop=should_stop)
            changes = {
                "status": "Succeeded",
                "description": f"{len(names)} namespaces scored",
                "scores": [(s.namespace, s.score, s.drop) for s in scores],
            }
        except InterruptedError:
            raise
        except Exception as exc:
            changes = {"status": "Failed", "description": f"feature importance failed: {exc}"}
        if not should_stop() and self.store.get_job(KIND, item.id) is not None:
            self._save(msgspec.structs.replace(item, **changes))


FEATURE_IMPORTANCES: web.AppKey[FeatureImportances] = web.AppKey(
    "featureImportances", FeatureImportances
)


def _brief(item: StoredImportance) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "startTime": iso_time(item.start),
        "endTime": iso_time(item.end),
        "creationTime": iso_time(item.created),
        "status": item.status,
    }


def render(item: StoredImportance) -> dict[str, Any]:
    """The FeatureImportance body."""
    return {
        **_brief(item),
        "description": item.description,
        "featureScores": [
            {"namespace": ns, "featureName": "*", "score": score, "drop": drop}
            for ns, score, drop in item.scores
        ],
    }


async def put_importance(request: web.Request) -> web.Response:
    contract = decode(await request.read(), c.FeatureImportanceContract, InvalidEvaluationContract)
    items = request.app[FEATURE_IMPORTANCES]
    item = await asyncio.to_thread(items.create, path_id(request, "item_id"), contract)
    return json_response(render(item))


async def get_importance(request: web.Request) -> web.Response:
    items = request.app[FEATURE_IMPORTANCES]
    return json_response(render(await asyncio.to_thread(items.get, path_id(request, "item_id"))))


async def delete_importance(request: web.Request) -> web.Response:
    items = request.app[FEATURE_IMPORTANCES]
    await asyncio.to_thread(items.delete, path_id(request, "item_id"))
    return web.Response(status=204)


async def list_importances(request: web.Request) -> web.Response:
    items = await asyncio.to_thread(request.app[FEATURE_IMPORTANCES].all)
    skip = int_query(request, "skip", 0) or 0
    top = int_query(request, "top", None)
    size = int_query(request, "maxpagesize", PAGE_SIZE) or PAGE_SIZE
    end = len(items) if top is None else min(len(items), skip + top)
    page = items[skip : min(end, skip + size)]
    body: dict[str, object] = {"value": [_brief(i) for i in page]}
    following = skip + len(page)
    if following < end:
        body["nextLink"] = str(
            request.url.update_query(skip=following, top=end - following, maxpagesize=size)
        )
    return json_response(body)


_ITEM = "/featureImportances/{item_id:[^/]+}"
_MISSING = Response(status=404, description="No such job.", body=c.ErrorResponse)

OPERATIONS = declare(
    Operation(
        id="putFeatureImportance",
        role="evaluations",
        method="PUT",
        path=_ITEM,
        handler=put_importance,
        summary="Submit a feature-importance job (namespaces scored 0-100).",
        body=c.FeatureImportanceContract,
        responses=(
            Response(status=200, description="The job, running.", body=dict),
            Response(status=400, description="Invalid.", body=c.ErrorResponse),
            Response(status=409, description="Defined differently.", body=c.ErrorResponse),
        ),
    ),
    Operation(
        id="getFeatureImportance",
        role="evaluations",
        method="GET",
        path=_ITEM,
        handler=get_importance,
        summary="A feature-importance job and its scores.",
        responses=(Response(status=200, description="The job.", body=dict), _MISSING),
    ),
    Operation(
        id="deleteFeatureImportance",
        role="evaluations",
        method="DELETE",
        path=_ITEM,
        handler=delete_importance,
        summary="Delete a feature-importance job.",
        responses=(Response(status=204, description="Deleted."), _MISSING),
    ),
    Operation(
        id="listFeatureImportances",
        role="evaluations",
        method="GET",
        path="/featureImportances",
        handler=list_importances,
        summary="List feature-importance jobs as {value, nextLink}.",
        query={
            "top": (int, False, "Most items to return."),
            "skip": (int, False, "Items to skip."),
            "maxpagesize": (int, False, "Items per page."),
        },
        responses=(Response(status=200, description="Jobs.", body=dict),),
    ),
)


def add_importance_routes(app: web.Application, control: LoopControl, jobs: JobRunner) -> None:
    """Mount the feature-importance operations."""
    app[FEATURE_IMPORTANCES] = FeatureImportances(control, jobs)
    mount(app, OPERATIONS)
