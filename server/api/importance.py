"""Feature importances (2022-09-01-preview): create with PUT, get, list, delete.

An edge stores the job as ``Running``; the trainer's job replays the window's joined events
through the online policy once with every feature and once without each, and without pairs of
the most important (:mod:`bandit.importance`, :mod:`server.trainer.job_work`), and stores the
scores (0–100, most important first). Each entry of ``featureScores`` has Personalizer's
``namespace``, ``featureName`` and ``score``; an interaction joins both features' namespaces and
names with ``^``. Extensions: ``name`` (``user.tier``, ``user.tier^item.id``), ``kind``
(``feature`` or ``interaction``), ``drop``, ``interaction`` and ``halves``, and the body's
``stability``. Jobs run before features were scored one by one keep their per-namespace
scores (``featureName`` ``*``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from bandit.dsjson import iso_time
from bandit.errors import (
    FeatureImportanceNotFound,
    InvalidEvaluationContract,
    NoLogsExistInDateRange,
    ResourceConflict,
)
from bandit.store import JobStore
from server.api import contracts as c
from server.api.base import json_response
from server.api.evaluation_routes import PAGE_SIZE, int_query
from server.api.evaluations import parse_time, path_id
from server.api.operations import Operation, Response, declare, decode, mount
from server.serving.service import Service
from server.trainer.job_records import (
    IMPORTANCE_KIND as KIND,
)
from server.trainer.job_records import (
    StoredFeatureScore,
    StoredImportance,
    decode_importance,
    importance_record,
)


class FeatureImportances:
    """Feature-importance records (the trainer runs their jobs: :mod:`server.trainer.job_work`)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store: JobStore = service.store

    def get(self, item_id: str) -> StoredImportance:
        record = self.store.get_job(KIND, item_id)
        if record is None:
            raise FeatureImportanceNotFound(f"No feature importance with id {item_id!r} exists.")
        return decode_importance(record.data)

    def all(self) -> list[StoredImportance]:
        return [decode_importance(r.data) for r in self.store.list_jobs(KIND)]

    def delete(self, item_id: str) -> None:
        self.get(item_id)
        self.store.delete_job(KIND, item_id)  # the trainer stops its job

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
            stored = decode_importance(existing.data)
            if (stored.name, stored.start, stored.end) != (contract.name, start, end):
                raise ResourceConflict(
                    f"feature importance {item_id!r} exists with a different definition."
                )
            return stored
        if not self.store.joined_between(start, end, 0, 1):
            raise NoLogsExistInDateRange(
                "no joined events were logged between startTime and endTime.", target="startTime"
            )
        service = self.service
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
        self.store.save_job(importance_record(item))  # the trainer runs it
        return item


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


def _score(s: StoredFeatureScore) -> dict[str, Any]:
    body: dict[str, Any] = {
        "namespace": "^".join(s.namespaces),
        "featureName": "^".join(s.names),
        "score": s.score,
        "name": s.label,
        "kind": "feature" if len(s.names) == 1 else "interaction",
        "drop": s.drop,
    }
    if s.interaction is not None:
        body["interaction"] = s.interaction
    if s.halves is not None:
        body["halves"] = list(s.halves)
    return body


def render(item: StoredImportance) -> dict[str, Any]:
    """The FeatureImportance body (with the ``stability`` extension once scored)."""
    body: dict[str, Any] = {
        **_brief(item),
        "description": item.description,
        "featureScores": [_score(s) for s in item.features]
        + [
            {"namespace": ns, "featureName": "*", "score": score, "drop": drop}
            for ns, score, drop in item.scores
        ],
    }
    if item.stability is not None:
        st = item.stability
        body["stability"] = {
            "rankCorrelation": st.rank_correlation,
            "topKOverlap": st.top_k_overlap,
            "k": st.k,
            "halfEvents": list(st.events),
        }
    return body


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
        summary="Submit a feature-importance job (features and interactions scored 0-100).",
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


def add_importance_routes(app: web.Application, service: Service) -> None:
    """Mount the feature-importance operations."""
    app[FEATURE_IMPORTANCES] = FeatureImportances(service)
    mount(app, OPERATIONS)
