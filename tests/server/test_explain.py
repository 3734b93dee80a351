"""Inference explanations over HTTP: the flag is a stored setting, and only with it on does the
rank response carry ``inferenceExplanation`` for the chosen action, explored choices marked."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bandit.config import ServiceConfiguration
from bandit.memory import MemoryStore
from bandit.store import Store
from server.entry.app import create_app
from server.entry.settings import Settings
from stores.postgres.store import PostgresStore
from stores.sqlite.store import SQLiteStore
from tests import pg
from tests.server.test_api import CONFIG, rank_body

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
FLAG = "isInferenceExplainabilityEnabled"


@pytest.fixture
async def client(aiohttp_client: MakeClient, tmp_path: Path) -> Client:
    settings = Settings(db=str(tmp_path / "explain.db"), learn_interval=0.02)
    return await aiohttp_client(create_app(settings))


async def configure(client: Client, **change: Any) -> dict[str, Any]:
    response = await client.put("/v1/configurations/service", json={**CONFIG, **change})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def rank(client: Client, event_id: str) -> dict[str, Any]:
    response = await client.post("/personalizer/v1.0/rank", json=rank_body(event_id, n=4))
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_the_flag_is_off_by_default_and_round_trips(client: Client) -> None:
    assert (await (await client.get("/v1/configurations/service")).json())[FLAG] is False
    assert (await configure(client, **{FLAG: True}))[FLAG] is True
    assert (await (await client.get("/v1/configurations/service")).json())[FLAG] is True
    # A partial change keeps it; turning it off is stored too.
    response = await client.put("/v1/configurations/service", json={"defaultReward": 0.1})
    assert (await response.json())[FLAG] is True
    assert (await configure(client, **{FLAG: False}))[FLAG] is False
    assert (await (await client.get("/v1/configurations/service")).json())[FLAG] is False


async def test_explanations_appear_only_when_enabled(client: Client) -> None:
    plain = await rank(client, "off-1")
    assert "inferenceExplanation" not in plain
    await configure(client, **{FLAG: True})
    body = await rank(client, "on-1")
    [explanation] = body["inferenceExplanation"]
    assert explanation["id"] == body["rewardActionId"]
    names = {f["name"] for f in explanation["features"]}
    assert {"user.tier", "time", "(constant)"} <= names
    # a0's feature item.n is 0: VW drops zero values, so it has no share of the score.
    assert ("item.n" in names) is (body["rewardActionId"] != "a0")
    assert any("^" in name for name in names)  # the default -q :: interactions
    assert all(isinstance(f["score"], float) for f in explanation["features"])
    assert isinstance(explanation["explored"], bool)
    await configure(client, **{FLAG: False})
    assert "inferenceExplanation" not in await rank(client, "off-2")


async def test_explored_choices_are_marked(client: Client) -> None:
    # An untrained model ties every action; the greedy one is then the first, a0. With ε = 0.9
    # most draws explore.
    await configure(client, **{FLAG: True, "explorationPercentage": 0.9})
    marks = set()
    for n in range(40):
        body = await rank(client, f"x{n}")
        [explanation] = body["inferenceExplanation"]
        assert explanation["id"] == body["rewardActionId"]
        assert explanation["explored"] is (body["rewardActionId"] != "a0")
        marks.add(explanation["explored"])
    assert marks == {True, False}


async def test_errors_are_unchanged_with_explanations_on(client: Client) -> None:
    await configure(client, **{FLAG: True})
    response = await client.post("/personalizer/v1.0/rank", json={"actions": []})
    assert response.status == 400
    body = await response.json()
    assert set(body) == {"error"}
    assert body["error"]["innerError"]["code"] == "InvalidRankRequest"


@contextlib.contextmanager
def each_store(kind: str, tmp_path: Path) -> Iterator[Store]:
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        store = SQLiteStore(tmp_path / "config.db")
        try:
            yield store
        finally:
            store.close()
    else:
        pg.require()
        with pg.fresh_schema("explain") as schema:
            store = PostgresStore(pg.URL, schema=schema)
            try:
                yield store
            finally:
                store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_every_store_keeps_the_flag(kind: str, tmp_path: Path) -> None:
    with each_store(kind, tmp_path) as store:
        store.save_config(ServiceConfiguration(inference_explainability=True))
        loaded = store.load_config()
        assert loaded is not None and loaded.inference_explainability is True
        store.save_config(ServiceConfiguration())
        loaded = store.load_config()
        assert loaded is not None and loaded.inference_explainability is False
