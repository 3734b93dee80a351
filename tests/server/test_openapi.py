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

from server.app import create_app
from server.openapi import _path
from server.routes import PREFIXES
from server.settings import Settings
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


async def test_every_route_is_described(client: Client) -> None:
    doc = await document(client)
    for route in client.app.router.routes():
        if route.method in ("HEAD", "*"):  # "*": the edge's 404/405 fallbacks, no operations
            continue
        path = route.resource.canonical if route.resource is not None else ""
        for prefix in sorted(PREFIXES, key=len, reverse=True):
            if path.startswith(prefix + "/"):
                path = path[len(prefix) :]
                break
        described = doc["paths"].get(_path(path), {})
        assert route.method.lower() in described, (route.method, path)


def validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(
    ("path", "schema", "body", "code"),
    [
        ("/v1/configurations/policy", "PolicyContract",
         {"name": "n" * 257, "arguments": "--cb_explore_adf"}, "InvalidPolicyConfiguration"),
        ("/v1/configurations/service", "ServiceConfiguration",
         {"rewardWaitTime": "PT1M"}, "InvalidServiceConfiguration"),
        ("/v1/evaluations", "EvaluationContract", {"name": "e", "startTime": 5},
         "InvalidEvaluationContract"),
        ("/v1/rank", "RankRequest", {"actions": [{"id": 3}]}, "InvalidRankRequest"),
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
    policy = {"name": "p", "arguments": "--cb_explore_adf -q ::"}
    assert validator(doc, "PolicyContract").is_valid(policy)
    response = await client.put("/v1/configurations/policy", json=policy, headers=headers)
    assert response.status == 200
    rank = {"actions": [{"id": "a", "features": [{"x": {"y": 1}}]}], "eventId": "e"}
    assert validator(doc, "RankRequest").is_valid(rank)
    response = await client.post("/v1/rank", json=rank, headers=headers)
    assert response.status == 201
    assert validator(doc, "RankResponse").is_valid(await response.json())
