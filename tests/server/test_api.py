"""HTTP tests of the rank/reward/activate/configuration surface: every status and error body."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from server.api.base import SERVICE
from server.entry.app import create_app
from server.entry.settings import Settings

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

JSON_TYPE = "application/json; charset=utf-8"


def rank_body(event_id: str | None = "ev1", n: int = 3, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contextFeatures": [{"user": {"tier": "gold"}}, {"time": "morning"}],
        "actions": [{"id": f"a{i}", "features": [{"item": {"n": i}}]} for i in range(n)],
    }
    if event_id is not None:
        body["eventId"] = event_id
    body.update(extra)
    return body


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(db=str(tmp_path / "banditd.db"), learn_interval=0.05)


@pytest.fixture
async def client(aiohttp_client: MakeClient, settings: Settings) -> Client:
    return await aiohttp_client(create_app(settings))


async def expect_error(response: Any, status: int, code: str, inner: str | None = None) -> None:
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"] == JSON_TYPE
    body = await response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    expected_inner = inner or code
    assert body["error"]["innerError"]["code"] == expected_inner
    assert response.headers["x-ms-error-code"] == expected_inner


async def test_rank_returns_201_with_full_ranking(client: Client) -> None:
    response = await client.post("/v1/rank", json=rank_body(excludedActions=["a1"]))
    assert response.status == 201
    assert response.headers["Content-Type"] == JSON_TYPE
    body = await response.json()
    assert body["eventId"] == "ev1"
    ranking = body["ranking"]
    assert ranking[0]["id"] == body["rewardActionId"]
    assert sorted(r["id"] for r in ranking) == ["a0", "a1", "a2"]
    assert sum(r["probability"] for r in ranking) == pytest.approx(1.0, abs=1e-6)
    assert next(r for r in ranking if r["id"] == "a1")["probability"] == 0.0
    assert body["rewardActionId"] != "a1"


async def test_rank_generates_event_id(client: Client) -> None:
    response = await client.post("/v1/rank", json=rank_body(event_id=None))
    assert response.status == 201
    body = await response.json()
    assert len(body["eventId"]) == 32


@pytest.mark.parametrize(
    "prefix",
    [
        "/v1",
        "/personalizer/v1.0",
        "/personalizer/v1.1-preview.1",
        "/personalizer/v1.1-preview.2",
        "/personalizer/v1.1-preview.3",
        "/personalizer",
    ],
)
async def test_every_url_form_serves_the_loop(client: Client, prefix: str) -> None:
    query = "?api-version=2022-09-01-preview" if prefix == "/personalizer" else ""
    event_id = "ev 1/x" + prefix
    response = await client.post(f"{prefix}/rank{query}", json=rank_body(event_id=event_id))
    assert response.status == 201
    quoted = event_id.replace(" ", "%20").replace("/", "%2F")
    response = await client.post(f"{prefix}/events/{quoted}/reward{query}", json={"value": 0.5})
    assert response.status == 204
    assert await response.read() == b""
    response = await client.post(f"{prefix}/events/{quoted}/activate{query}")
    assert response.status == 204
    response = await client.get(f"{prefix}/configurations/service{query}")
    assert response.status == 200


async def test_rank_replay_same_body_returns_stored_decision(client: Client) -> None:
    first = await (await client.post("/v1/rank", json=rank_body())).json()
    again = await client.post("/v1/rank", json=rank_body())
    assert again.status == 201
    assert await again.json() == first


async def test_rank_replay_different_body_is_409(client: Client) -> None:
    assert (await client.post("/v1/rank", json=rank_body())).status == 201
    response = await client.post("/v1/rank", json=rank_body(n=4))
    await expect_error(response, 409, "Conflict", "EventIdConflict")


BAD_RANKS: list[tuple[str, Any]] = [
    ("not-object", [1, 2]),
    ("no-actions", {"contextFeatures": []}),
    ("empty-actions", {"actions": []}),
    ("too-many-actions", rank_body(n=51)),
    ("repeated-id", {"actions": [{"id": "a", "features": []}, {"id": "a", "features": []}]}),
    ("id-not-string", {"actions": [{"id": 5, "features": []}]}),
    ("id-too-long", {"actions": [{"id": "x" * 257, "features": []}]}),
    ("features-not-list", {"actions": [{"id": "a", "features": {"x": 1}}]}),
    ("feature-not-object", {"actions": [{"id": "a", "features": [5]}]}),
    ("string-array", {"actions": [{"id": "a", "features": [{"n": {"x": ["a"]}}]}]}),
    ("context-not-list", {"actions": [{"id": "a"}], "contextFeatures": {"u": 1}}),
    ("all-excluded", {"actions": [{"id": "a"}], "excludedActions": ["a"]}),
    ("excluded-not-list", {"actions": [{"id": "a"}], "excludedActions": "a"}),
    ("event-id-too-long", rank_body(event_id="e" * 257)),
    ("event-id-number", rank_body(event_id=None, eventId=7)),
    ("defer-not-bool", rank_body(deferActivation="yes")),
    ("max-exploration-range", rank_body(maxExploration=1.5)),
]


@pytest.mark.parametrize(("case", "body"), BAD_RANKS, ids=[c for c, _ in BAD_RANKS])
async def test_bad_rank_requests_are_400(client: Client, case: str, body: Any) -> None:
    response = await client.post("/v1/rank", json=body)
    await expect_error(response, 400, "BadRequest", "InvalidRankRequest")
    # nothing was logged: the same event id still ranks fresh
    if isinstance(body, dict) and isinstance(body.get("eventId"), str):
        assert (await client.post("/v1/rank", json=rank_body(event_id=body["eventId"]))).status in (
            201,
            400,
        )


@pytest.mark.parametrize("raw", [b"{", b"", b'{"actions": NaN}', b"\xff\xfe"])
async def test_rank_body_not_json_is_400(client: Client, raw: bytes) -> None:
    response = await client.post("/v1/rank", data=raw, headers={"Content-Type": "application/json"})
    await expect_error(response, 400, "BadRequest", "InvalidRankRequest")


async def test_rank_body_too_large_is_413(client: Client) -> None:
    body = rank_body(contextFeatures=[{"blob": {"x": "y" * (1 << 20)}}])
    response = await client.post("/v1/rank", data=io.BytesIO(json.dumps(body).encode()))
    await expect_error(response, 413, "BadRequest", "PayloadSizeExceeded")


async def test_reward_unknown_event_is_404(client: Client) -> None:
    response = await client.post("/v1/events/nope/reward", json={"value": 1.0})
    await expect_error(response, 404, "ResourceNotFound")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"value": 1.5}',
        b'{"value": -1.01}',
        b'{"value": "1"}',
        b'{"value": true}',
        b'{"value": NaN}',
        b'{"value": Infinity}',
        b"{}",
        b"[]",
        b"not json",
        b'{"value": null}',
    ],
)
async def test_bad_reward_values_are_400(client: Client, raw: bytes) -> None:
    assert (await client.post("/v1/rank", json=rank_body())).status == 201
    response = await client.post(
        "/v1/events/ev1/reward", data=raw, headers={"Content-Type": "application/json"}
    )
    await expect_error(response, 400, "BadRequest", "InvalidRewardRequest")


async def test_activate_unknown_event_is_404(client: Client) -> None:
    response = await client.post("/v1/events/nope/activate")
    await expect_error(response, 404, "ResourceNotFound")


async def test_unknown_path_and_method(client: Client) -> None:
    await expect_error(await client.get("/v1/nothing"), 404, "ResourceNotFound")
    await expect_error(await client.get("/v1/rank"), 405, "MethodNotAllowed")


async def test_configuration_get_and_put(client: Client) -> None:
    response = await client.get("/v1/configurations/service")
    assert response.status == 200
    config = await response.json()
    assert config["rewardWaitTime"] == "PT10M"
    assert config["explorationPercentage"] == 0.2
    config["explorationPercentage"] = 0.1
    config["rewardWaitTime"] = "PT30S"
    response = await client.put("/v1/configurations/service", json=config)
    assert response.status == 200
    assert (await response.json())["explorationPercentage"] == 0.1
    again = await (await client.get("/v1/configurations/service")).json()
    assert again["rewardWaitTime"] == "PT30S"


CONFIG = {
    "rewardWaitTime": "PT10M",
    "defaultReward": 0,
    "rewardAggregation": "earliest",
    "explorationPercentage": 0.2,
    "modelExportFrequency": "PT5M",
    "logRetentionDays": 7,
}

BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("wait-too-long", {**CONFIG, "rewardWaitTime": "P3D"}, "InvalidRewardWaitTime"),
    (
        "wait-not-duration",
        {**CONFIG, "rewardWaitTime": "ten minutes"},
        "InvalidServiceConfiguration",
    ),
    (
        "retention-too-short",
        {**CONFIG, "rewardWaitTime": "P1D", "logRetentionDays": 1},
        "InvalidLogRetentionDays",
    ),
    ("exploration-range", {**CONFIG, "explorationPercentage": 1.5}, "InvalidServiceConfiguration"),
    ("default-reward-range", {**CONFIG, "defaultReward": 2}, "InvalidServiceConfiguration"),
    ("aggregation", {**CONFIG, "rewardAggregation": "max"}, "InvalidServiceConfiguration"),
    (
        "mode-with-reward-settings",
        {**CONFIG, "learningMode": "Apprentice", "defaultReward": 0.5},
        "InvalidLearningModeServiceConfiguration",
    ),
]


@pytest.mark.parametrize(("case", "body", "inner"), BAD_CONFIGS, ids=[c for c, _, _ in BAD_CONFIGS])
async def test_bad_configurations_are_400(
    client: Client, case: str, body: dict[str, Any], inner: str
) -> None:
    before = await (await client.get("/v1/configurations/service")).json()
    response = await client.put("/v1/configurations/service", json=body)
    await expect_error(response, 400, "BadRequest", inner)
    assert await (await client.get("/v1/configurations/service")).json() == before


async def test_reward_idempotency_key_counts_once(client: Client) -> None:
    config = {**CONFIG, "rewardAggregation": "sum"}
    assert (await client.put("/v1/configurations/service", json=config)).status == 200
    assert (await client.post("/v1/rank", json=rank_body())).status == 201
    for _ in range(3):
        response = await client.post(
            "/v1/events/ev1/reward", json={"value": 0.25}, headers={"Idempotency-Key": "k1"}
        )
        assert response.status == 204
    metrics = await (await client.get("/metrics")).text()
    assert 'banditd_rewards_total{outcome="stored"} 1.0' in metrics
    assert 'banditd_rewards_total{outcome="duplicate"} 2.0' in metrics


async def test_metrics_exposes_every_stage(client: Client) -> None:
    assert (await client.post("/v1/rank", json=rank_body())).status == 201
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    for name in [
        "banditd_ranks_total",
        "banditd_rewards_total",
        "banditd_joined_events_total",
        "banditd_learned_events_total",
        "banditd_default_reward_ratio",
        "banditd_realized_exploration_ratio",
        "banditd_exploration_cap_ratio",
        "banditd_learner_lag_events",
        "banditd_learner_lag_seconds",
        "banditd_model_version",
        "banditd_request_duration_seconds_bucket",
        "banditd_writer_batch_size_bucket",
    ]:
        assert name in text, name
    assert 'banditd_ranks_total{learning_mode="Online"} 1.0' in text


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["learner"]["running"] is True


@pytest.fixture
async def keyed_client(aiohttp_client: MakeClient, tmp_path: Path) -> Client:
    settings = Settings(
        db=str(tmp_path / "keyed.db"), client_keys=("client-key",), admin_keys=("admin-key",)
    )
    return await aiohttp_client(create_app(settings))


async def test_auth_roles(keyed_client: Client) -> None:
    client = keyed_client
    response = await client.post("/v1/rank", json=rank_body())
    await expect_error(response, 401, "Unauthorized")
    response = await client.post(
        "/v1/rank", json=rank_body(), headers={"Ocp-Apim-Subscription-Key": "wrong"}
    )
    await expect_error(response, 401, "Unauthorized")
    client_headers = {"Ocp-Apim-Subscription-Key": "client-key"}
    assert (await client.post("/v1/rank", json=rank_body(), headers=client_headers)).status == 201
    response = await client.get("/v1/configurations/service", headers=client_headers)
    await expect_error(response, 403, "Forbidden", "InvalidApiAccess")
    bearer = {"Authorization": "Bearer admin-key"}
    assert (await client.get("/v1/configurations/service", headers=bearer)).status == 200
    assert (await client.get("/healthz")).status == 200


async def test_unknown_paths_need_an_admin_key_then_get_404(keyed_client: Client) -> None:
    client = keyed_client
    client_headers = {"Ocp-Apim-Subscription-Key": "client-key"}
    admin = {"Ocp-Apim-Subscription-Key": "admin-key"}
    await expect_error(await client.get("/v1/nothing"), 401, "Unauthorized")
    await expect_error(await client.get("/v1/nothing", headers=client_headers), 401, "Unauthorized")
    await expect_error(await client.get("/v1/nothing", headers=admin), 404, "ResourceNotFound")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Ocp-Apim-Subscription-Key": "client-key"}, {"Ocp-Apim-Subscription-Key": "admin-key"}],
    ids=["no-key", "client-key", "admin-key"],
)
async def test_wrong_method_on_a_client_route_was_401_not_405_without_allow(
    keyed_client: Client, headers: dict[str, str]
) -> None:
    """A known path with a method it does not take is 405 with ``Allow``, whatever the key."""
    client = keyed_client
    response = await client.get("/v1/rank", headers=headers)
    await expect_error(response, 405, "MethodNotAllowed")
    assert response.headers["Allow"] == "POST"
    response = await client.delete("/personalizer/v1.0/events/e1/reward", headers=headers)
    await expect_error(response, 405, "MethodNotAllowed")
    assert response.headers["Allow"] == "POST"
    # A path served by several methods names all of them
    response = await client.post("/v1/configurations/service", headers=headers)
    await expect_error(response, 405, "MethodNotAllowed")
    assert response.headers["Allow"] == "GET, HEAD, PUT"


async def test_client_key_on_an_admin_route_was_401_not_403(keyed_client: Client) -> None:
    client_headers = {"Authorization": "Bearer client-key"}
    for method, path in [("GET", "/v1/model"), ("DELETE", "/v1/logs"), ("GET", "/metrics")]:
        response = await keyed_client.request(method, path, headers=client_headers)
        await expect_error(response, 403, "Forbidden", "InvalidApiAccess")
    response = await keyed_client.get("/v1/model", headers={"Authorization": "Bearer other"})
    await expect_error(response, 401, "Unauthorized")


async def test_deep_feature_values_vw_rejects_are_400(client: Client) -> None:
    """Values below the two typed levels go to VW's parser; its errors are 400s, not 500s."""
    body = rank_body()
    body["contextFeatures"] = [{"user": {"profile": {"tags": ["a", "b"]}}}]
    response = await client.post("/v1/rank", json=body)
    await expect_error(response, 400, "BadRequest", "InvalidRankRequest")


async def test_pathological_nesting_is_400_not_a_crash(client: Client) -> None:
    depth = 20_000
    raw = '{"actions":[{"id":"a","features":[' + '{"a":' * depth + "1" + "}" * depth + "]}]}"
    response = await client.post(
        "/v1/rank", data=io.BytesIO(raw.encode()), headers={"Content-Type": "application/json"}
    )
    await expect_error(response, 400, "BadRequest", "InvalidRankRequest")
    assert (await client.post("/v1/rank", json=rank_body())).status == 201


def _raw(path: str) -> URL:
    """A path sent exactly as written (no re-quoting by the client)."""
    return URL(path, encoded=True)


async def _stored_rewards(client: Client, event_id: str) -> list[float]:
    store = client.app[SERVICE].store
    rewards = await asyncio.to_thread(store.counted_rewards, [event_id])
    return [r.value for r in rewards.get(event_id, [])]


async def test_event_ids_were_percent_decoded_twice(client: Client) -> None:
    """``q%2541`` is the id ``q%41``: decoded once it must not become ``qA``."""
    for event_id in ("q%41", "qA"):
        assert (await client.post("/v1/rank", json=rank_body(event_id))).status == 201
    response = await client.post(_raw("/v1/events/q%2541/reward"), json={"value": 0.5})
    assert response.status == 204
    assert await _stored_rewards(client, "q%41") == [0.5]
    assert await _stored_rewards(client, "qA") == []


async def test_an_event_id_with_a_nul_is_refused_by_rank_reward_and_activate(
    client: Client,
) -> None:
    """No store could keep it (PostgreSQL's text cannot): a 400 naming it, before any write,
    rather than a group commit that fails for every request sharing its batch."""
    response = await client.post("/v1/rank", json=rank_body("a\x00b"))
    assert response.status == 400
    assert "NUL" in (await response.json())["error"]["message"]
    for path in ("/v1/events/a%00b/reward", "/v1/events/a%00b/activate"):
        response = await client.post(_raw(path), json={"value": 1})
        assert response.status == 400, path
        assert (await response.json())["error"]["code"] == "BadRequest"


@pytest.mark.parametrize(
    "event_id",
    ["x y", "x%20y", "a/b", "100%", "%2F", "é-中", "a+b?c#d", "~!*'();:@&=$,[]"],
)
async def test_event_ids_round_trip_through_the_path(client: Client, event_id: str) -> None:
    body = rank_body(event_id, deferActivation=True)
    response = await client.post("/v1/rank", json=body)
    assert response.status == 201
    assert (await response.json())["eventId"] == event_id
    segment = quote(event_id, safe="")
    for prefix in ("/v1", "/personalizer/v1.0", "/personalizer/v1.1-preview.3"):
        activated = await client.post(_raw(f"{prefix}/events/{segment}/activate"))
        assert activated.status == 204, await activated.text()
    response = await client.post(_raw(f"/v1/events/{segment}/reward"), json={"value": 1})
    assert response.status == 204, await response.text()
    assert await _stored_rewards(client, event_id) == [1.0]


@pytest.mark.parametrize("what", ["reward", "activate"])
async def test_event_id_over_256_characters_was_404_not_400(client: Client, what: str) -> None:
    response = await client.post(f"/v1/events/{'e' * 257}/{what}", json={"value": 1})
    await expect_error(response, 400, "BadRequest", "InvalidRequest")
    response = await client.post(f"/v1/events/{'e' * 256}/{what}", json={"value": 1})
    await expect_error(response, 404, "ResourceNotFound")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/featureImportances?top=%C2%B2",
        "/v1/featureImportances?skip=%C2%B2",
        "/v1/featureImportances?maxpagesize=%C2%B2",
        "/personalizer/evaluations?top=%C2%B2&api-version=2022-09-01-preview",
        "/personalizer/evaluations?skip=-1&api-version=2022-09-01-preview",
        "/personalizer/evaluations?maxpagesize=%D9%A3&api-version=2022-09-01-preview",
    ],
)
async def test_unicode_digits_in_numbers_were_500_not_400(client: Client, path: str) -> None:
    response = await client.get(_raw(path))
    await expect_error(response, 400, "BadRequest", "InvalidRequest")


async def test_model_version_of_unicode_digits_or_past_int64_was_500(client: Client) -> None:
    response = await client.post(_raw("/v1/models/%C2%B2/activate"))
    await expect_error(response, 400, "BadRequest", "InvalidRequest")
    response = await client.post("/v1/models/99999999999999999999999/activate")
    await expect_error(response, 404, "ResourceNotFound")
    response = await client.post("/v1/models/9223372036854775807/activate")
    await expect_error(response, 404, "ResourceNotFound")
