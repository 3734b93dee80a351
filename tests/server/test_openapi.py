"""``/openapi.json``: valid OpenAPI 3.1, describing every route, with the handlers' schemas."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from server.api.base import PREFIXES
from server.entry.app import create_app
from server.entry.settings import Settings
from tests.server.test_api import expect_error

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client(aiohttp_client: MakeClient, tmp_path: Path) -> Client:
    settings = Settings(db=str(tmp_path / "o.db"), admin_keys=("admin",))
    return await aiohttp_client(create_app(settings))


async def document(client: Client) -> dict[str, Any]:
    response = await client.get("/openapi.json")  # no key: the description is public
    assert response.status == 200
    return dict(await response.json())


async def test_document_is_valid_openapi_3_1(client: Client) -> None:
    doc = await document(client)
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    assert doc["servers"][0]["variables"]["prefix"]["enum"] == list(PREFIXES)


# Every operation the server offers, written out by hand rather than read from the router the
# generator reads: a route that is mounted and not described, or described and not mounted,
# fails one of the two tests below.
OPERATIONS = {
    ("POST", "/rank"),
    ("POST", "/events/{event_id}/reward"),
    ("POST", "/events/{event_id}/activate"),
    ("POST", "/multislot/rank"),
    ("POST", "/multislot/events/{event_id}/reward"),
    ("POST", "/multislot/events/{event_id}/activate"),
    ("GET", "/configurations/service"),
    ("PUT", "/configurations/service"),
    ("GET", "/configurations/policy"),
    ("PUT", "/configurations/policy"),
    ("DELETE", "/configurations/policy"),
    ("POST", "/configurations/applyFromEvaluation"),
    ("GET", "/model"),
    ("PUT", "/model"),
    ("DELETE", "/model"),
    ("GET", "/model/properties"),
    ("GET", "/models"),
    ("POST", "/models/{version}/activate"),
    ("GET", "/logs/properties"),
    ("DELETE", "/logs"),
    ("GET", "/logs/export"),
    ("POST", "/logs/import"),
    ("GET", "/loop/status"),
    ("GET", "/loop/configuration"),
    ("PUT", "/loop/configuration"),
    ("GET", "/evaluations"),
    ("POST", "/evaluations"),
    ("GET", "/evaluations/{evaluation_id}"),
    ("PUT", "/evaluations/{evaluation_id}"),
    ("DELETE", "/evaluations/{evaluation_id}"),
    ("GET", "/featureImportances"),
    ("GET", "/featureImportances/{item_id}"),
    ("PUT", "/featureImportances/{item_id}"),
    ("DELETE", "/featureImportances/{item_id}"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/{asset}"),
}
UNPREFIXED = {"/healthz", "/metrics", "/openapi.json", "/dashboard", "/dashboard/{asset}"}
V1_ONLY = {"/loop/status", "/loop/configuration", "/models", "/models/{version}/activate"}


async def test_the_document_describes_exactly_the_operations_listed(client: Client) -> None:
    doc = await document(client)
    described = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method != "servers"
    }
    assert described == OPERATIONS
    for path in V1_ONLY:
        assert doc["paths"][path]["servers"] == [{"url": "/v1"}]
    for path in UNPREFIXED:
        assert doc["paths"][path]["servers"] == [{"url": "/"}]


@pytest.mark.parametrize(("method", "path"), sorted(OPERATIONS))
async def test_every_listed_operation_is_served(client: Client, method: str, path: str) -> None:
    """Under each prefix (or at the root), the path answers this method: whatever it answers,
    it is not the edge's 404 for an unknown path nor its 405 for a method the path lacks."""
    concrete = path.replace("{event_id}", "e").replace("{version}", "1")
    concrete = concrete.replace("{evaluation_id}", "x").replace("{item_id}", "x")
    concrete = concrete.replace("{asset}", "dashboard.js")
    prefixes = [p for p in PREFIXES if p != "/personalizer"]
    if path in UNPREFIXED or path in V1_ONLY:
        prefixes = [""] if path in UNPREFIXED else ["/v1"]
    headers = {"Ocp-Apim-Subscription-Key": "admin"}
    for prefix in prefixes:
        response = await client.request(method, prefix + concrete, headers=headers)
        if response.status in (404, 405):
            body = await response.json()
            assert body["error"]["message"] not in {
                "no resource at this path.",
                "this method is not allowed on this path.",
            }, (method, prefix + concrete)


async def test_every_operation_declares_the_errors_the_edge_answers(client: Client) -> None:
    doc = await document(client)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "servers":
                continue
            declared = set(op["responses"])
            assert {"400", "408", "431", "503"} <= declared, (method, path)
            public = path in {"/healthz", "/openapi.json"} or path.startswith("/dashboard")
            client_route = path in {"/rank", "/events/{event_id}/reward"} or path.startswith(
                ("/events/", "/multislot/")
            )
            assert ("401" in declared) is not public, (method, path)
            assert ("403" in declared) is not (public or client_route), (method, path)
            if "{" in path:
                assert "404" in declared, (method, path)
            if "requestBody" in op:
                assert "413" in declared, (method, path)
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    media = response["content"]["application/json"]["schema"]
                    assert media == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)


def validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(
    ("path", "schema", "body", "code"),
    [
        ("/v1/configurations/policy", "PolicyContract",
         {"name": "n" * 257, "arguments": "--cb_explore_adf"}, "InvalidPolicyConfiguration"),
        ("/v1/configurations/service", "ServiceConfigurationUpdate",
         {"rewardWait": "PT5S"}, "InvalidServiceConfiguration"),
        ("/v1/configurations/service", "ServiceConfigurationUpdate",
         {"learningMode": "online"}, "InvalidServiceConfiguration"),
        ("/v1/configurations/policy", "PolicyContract",
         {"name": "p", "arguments": "--cb_explore_adf", "argument": "-q ::"},
         "InvalidPolicyConfiguration"),
        ("/v1/evaluations", "EvaluationContract", {"name": "e", "startTime": 5},
         "InvalidEvaluationContract"),
        ("/v1/rank", "RankRequest", {"actions": [{"id": 3}]}, "InvalidRankRequest"),
        ("/v1/rank", "RankRequest", {"actions": []}, "InvalidRankRequest"),
        ("/v1/rank", "RankRequest", {"actions": [{"id": f"a{i}"} for i in range(51)]},
         "InvalidRankRequest"),
        ("/v1/rank", "RankRequest", {"actions": [{"id": ""}]}, "InvalidRankRequest"),
        ("/v1/rank", "RankRequest", {"actions": [{"id": "a" * 257}]}, "InvalidRankRequest"),
        ("/v1/rank", "RankRequest", {"actions": [{"id": "a"}], "eventId": "e" * 257},
         "InvalidRankRequest"),
        ("/v1/rank", "RankRequest", {"actions": [{"id": "a"}], "eventId": ""},
         "InvalidRankRequest"),
        ("/v1/rank", "RankRequest", {"actions": [{"id": "a"}], "maxExploration": 1.5},
         "InvalidRankRequest"),
    ],
)  # fmt: skip
async def test_schema_rejects_what_the_handler_rejects(
    client: Client, path: str, schema: str, body: dict[str, Any], code: str
) -> None:
    doc = await document(client)
    assert not validator(doc, schema).is_valid(body)
    method = client.post if path.endswith(("rank", "evaluations")) else client.put
    response = await method(path, json=body, headers={"Ocp-Apim-Subscription-Key": "admin"})
    await expect_error(response, 400, "BadRequest", code)


async def test_schema_accepts_what_the_handler_accepts(client: Client) -> None:
    doc = await document(client)
    headers = {"Ocp-Apim-Subscription-Key": "admin"}
    config = await (await client.get("/v1/configurations/service", headers=headers)).json()
    assert validator(doc, "ServiceConfiguration").is_valid(config)
    # What a client read, sent back whole (read-only fields too) or in part, is taken.
    for update in (config, {"explorationPercentage": 0.3}):
        assert validator(doc, "ServiceConfigurationUpdate").is_valid(update)
        response = await client.put("/v1/configurations/service", json=update, headers=headers)
        assert response.status == 200, await response.text()
    policy = {"name": "p", "arguments": "--cb_explore_adf -q ::"}
    assert validator(doc, "PolicyContract").is_valid(policy)
    response = await client.put("/v1/configurations/policy", json=policy, headers=headers)
    assert response.status == 200
    rank = {"actions": [{"id": "a", "features": [{"x": {"y": 1}}]}], "eventId": "e"}
    assert validator(doc, "RankRequest").is_valid(rank)
    response = await client.post("/v1/rank", json=rank, headers=headers)
    assert response.status == 201
    assert validator(doc, "RankResponse").is_valid(await response.json())
