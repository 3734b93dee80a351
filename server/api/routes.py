"""Rank, reward and activate under every Personalizer URL form, and ``/healthz`` and
``/metrics``. Handlers parse, call the service, and encode; nothing more."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bandit.dsjson import iso_time
from bandit.errors import InvalidRequest, InvalidRewardRequest
from server.api.base import PREFIXES, SERVICE, json_response
from server.api.edge import add_route
from server.api.schemas import (
    MAX_ID_LENGTH,
    decode_json,
    parse_rank,
    parse_reward_value,
    rank_response,
)
from server.serving.metrics import CONTENT_TYPE
from server.trainer.records import load_report


def event_id_of(request: web.Request) -> str:
    """The event id path segment, percent-decoded exactly once (``ev%201%2Fx`` → ``ev 1/x``).

    aiohttp matches routes on the path with every escape decoded but ``%2F`` and ``%25`` (so an
    encoded ``/`` stays inside the one segment) and decodes those two in the match; decoding
    again would turn ``q%2541`` (the id ``q%41``) into ``qA``.

    Raises:
        InvalidRequest: the id is longer than rank accepts, or holds a NUL (it can name no
            event).
    """
    event_id = request.match_info["event_id"]
    if len(event_id) > MAX_ID_LENGTH:
        raise InvalidRequest(
            f"eventId must be at most {MAX_ID_LENGTH} characters.", target="eventId"
        )
    if "\x00" in event_id:  # rank refuses it too: no event has such an id
        raise InvalidRequest("eventId must not contain the NUL character.", target="eventId")
    return event_id


async def rank(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    rank_request = parse_rank(await request.read(), max_actions=service.settings.max_actions)
    decision = await service.rank(rank_request)
    body = rank_response(decision)
    if service.config.inference_explainability:
        explanation = service.explain(decision)
        if explanation is not None:
            body["inferenceExplanation"] = [explanation]
    return json_response(body, status=201)


async def reward(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    value = parse_reward_value(decode_json(await request.read(), InvalidRewardRequest))
    key = request.headers.get("Idempotency-Key") or request.headers.get("x-ms-client-request-id")
    await service.reward(event_id_of(request), value, key)
    return web.Response(status=204)


async def activate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    await service.activate(event_id_of(request))
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    """Liveness, the learner's state as the trainer last reported it, and whether store
    writes succeed.

    200 ``ok``; 503 ``unavailable`` with the ``reason`` (and ``Retry-After``) while store
    writes fail (a full disk, a database locked by another process)."""
    service = request.app[SERVICE]
    failing = await service.failing_writes()
    report = await asyncio.to_thread(load_report, service.store)
    fresh = report is not None and (
        service.clock() - report.at <= 3 * service.settings.report_interval + 1.0
    )
    body: dict[str, object] = {
        "status": "ok" if failing is None else "unavailable",
        "modelVersion": service.serving.version,
        "learner": {
            "running": bool(fresh and report is not None and report.running),
            "cursor": report.cursor if report else 0,
            "learnedCount": report.learned_count if report else 0,
            "failures": report.failures if report else 0,
            "trainer": report.holder if report else None,
            "reportedAt": iso_time(report.at) if report else None,
        },
    }
    if failing is None:
        return json_response(body)
    body["reason"] = f"store writes are failing: {failing}"
    response = json_response(body, status=503)
    response.headers["Retry-After"] = "1"
    return response


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    trainer = await asyncio.to_thread(service.refresh_metrics)
    body = service.metrics.render() + trainer.encode()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    """Mount every handler under every Personalizer URL form."""
    for i, prefix in enumerate(PREFIXES):
        # Names carry the route's role (auth and metrics read the part before the dot); the
        # suffix keeps them unique, as aiohttp requires.
        suffix = f".p{i}"
        add_route(app, "POST", f"{prefix}/rank", rank, name=f"rank{suffix}")
        add_route(
            app,
            "POST",
            f"{prefix}/events/{{event_id:[^/]+}}/reward",
            reward,
            name=f"reward{suffix}",
        )
        add_route(
            app,
            "POST",
            f"{prefix}/events/{{event_id:[^/]+}}/activate",
            activate,
            name=f"activate{suffix}",
        )
    add_route(app, "GET", "/healthz", healthz, name="healthz")
    add_route(app, "GET", "/metrics", metrics, name="metrics")
