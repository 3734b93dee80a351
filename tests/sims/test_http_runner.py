"""The HTTP runner against a stand-in server that has only the Personalizer wire shape.

The stand-in ranks uniformly at random and records every call; it checks the request bodies,
the key header and the status codes the runner expects (201 for rank, 204 otherwise).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sims.http_runner import check_loopback, request_body, run_http_async, scaled_config
from sims.scenarios import SCENARIOS

KEY = "test-key"


def stand_in() -> tuple[web.Application, dict[str, Any]]:
    seen: dict[str, Any] = {"ranks": {}, "rewards": {}, "activations": [], "keys": set()}
    rng = random.Random(0)

    async def rank(request: web.Request) -> web.Response:
        seen["keys"].add(request.headers.get("Ocp-Apim-Subscription-Key"))
        body = await request.json()
        assert set(body) == {
            "contextFeatures",
            "actions",
            "excludedActions",
            "eventId",
            "deferActivation",
        }
        ids = [a["id"] for a in body["actions"] if a["id"] not in body["excludedActions"]]
        chosen = rng.choice(ids)
        seen["ranks"][body["eventId"]] = body
        ranking = [{"id": i, "probability": 1.0 / len(ids)} for i in ids]
        ranking.sort(key=lambda r: r["id"] != chosen)
        return web.json_response(
            {"ranking": ranking, "eventId": body["eventId"], "rewardActionId": chosen},
            status=201,
        )

    async def reward(request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        if event_id not in seen["ranks"]:
            return web.json_response({"error": {"code": "ResourceNotFound"}}, status=404)
        seen["rewards"][event_id] = (await request.json())["value"]
        return web.Response(status=204)

    async def activate(request: web.Request) -> web.Response:
        seen["activations"].append(request.match_info["event_id"])
        return web.Response(status=204)

    async def configure(request: web.Request) -> web.Response:
        seen["config"] = await request.json()
        return web.json_response(seen["config"])

    app = web.Application()
    app.router.add_post("/v1/rank", rank)
    app.router.add_post("/v1/events/{event_id}/reward", reward)
    app.router.add_post("/v1/events/{event_id}/activate", activate)
    app.router.add_put("/v1/configurations/service", configure)
    return app, seen


async def test_runner_speaks_the_wire_contract_and_honours_delays_and_drops() -> None:
    app, seen = stand_in()
    scenario = replace(SCENARIOS["delayed"], rounds=80, reward_wait_time=40.0)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("/")).rstrip("/")
        result = await run_http_async(
            scenario,
            base,
            seed=0,
            key=KEY,
            time_scale=0.002,
            max_seconds=20.0,
            run_id="t1-",
        )
    env = scenario.build(0)
    rounds = [env.round(t) for t in range(80)]
    assert result.rounds == 80 and result.scenario == "delayed"
    assert seen["keys"] == {KEY}
    assert len(seen["ranks"]) == 80 and all(e.startswith("t1-delayed-0-") for e in seen["ranks"])
    sent = [t for t, r in enumerate(rounds) if not r.dropped]
    assert result.reported == len(sent) == len(seen["rewards"])
    assert set(seen["rewards"]) == {f"t1-delayed-0-{t}" for t in sent}
    deferred = [t for t, r in enumerate(rounds) if r.request.defer_activation]
    assert sorted(seen["activations"]) == sorted(f"t1-delayed-0-{t}" for t in deferred)
    assert all(seen["ranks"][f"t1-delayed-0-{t}"]["deferActivation"] for t in deferred)
    assert all(v in (0.0, 1.0) for v in seen["rewards"].values())
    assert all(abs(p - 0.1) < 1e-9 for p in result.propensity)


async def test_runner_stops_at_its_time_bound() -> None:
    app, seen = stand_in()
    scenario = replace(SCENARIOS["linear"], rounds=10_000)
    async with TestServer(app, host="127.0.0.1") as server:
        result = await run_http_async(
            scenario, str(server.make_url("/")), seed=1, time_scale=0.05, max_seconds=0.5
        )
    assert 0 < result.rounds < 10_000
    assert len(seen["ranks"]) == result.rounds


async def test_runner_can_configure_the_server_for_the_scenario_first() -> None:
    app, seen = stand_in()
    scenario = replace(SCENARIOS["linear"], rounds=20, interval=0.01)
    async with TestServer(app, host="127.0.0.1") as server:
        result = await run_http_async(
            scenario, str(server.make_url("/")), seed=2, configure=True, exploration=0.1
        )
    assert result.rounds == 20
    assert seen["config"]["rewardWaitTime"] == "PT5S"
    assert seen["config"]["explorationPercentage"] == 0.1


def test_only_loopback_targets_are_accepted() -> None:
    for ok in (
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:80",
        "http://127.3.0.1",
    ):
        check_loopback(ok)
    for bad in (
        "http://10.0.0.1:80",
        "http://example.com",
        "ftp://127.0.0.1",
        "http://192.168.1.2",
    ):
        with pytest.raises(ValueError):
            check_loopback(bad)


def test_request_body_and_scaled_config() -> None:
    rnd = SCENARIOS["many-actions"].build(0).round(0)
    body = request_body(rnd.request)
    assert body["eventId"] == "0" and len(body["actions"]) == len(rnd.request.actions)
    assert body["excludedActions"] == list(rnd.request.excluded_action_ids)
    config = scaled_config(SCENARIOS["delayed"], 0.1, time_scale=0.5)
    assert config.reward_wait_time == SCENARIOS["delayed"].reward_wait_time * 0.5
    assert config.exploration_percentage == 0.1
