"""Feature importance end to end: a real ``banditd serve`` process over a SQLite file holding
logs of the world where two of ten context features carry all the signal; the job is created
and read back over HTTP, and its trainer scores the features, the pairs and the stability."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from bandit.dsjson import iso_time
from stores.sqlite.store import SQLiteStore
from tests.bandit import feature_world
from tests.e2e.conftest import BanditServer, get_json

N = 2000
JOB_TIMEOUT = 300.0
"""Seconds the job may take (about 30 replays of N events on a busy machine)."""


def seed(db: Path) -> float:
    """Store the world's logs, recent enough that retention keeps them; their first time."""
    start = float(int(time.time())) - 3 * N
    store = SQLiteStore(db)
    try:
        store.import_joined(feature_world.draw(N, seed=3, start=start))
    finally:
        store.close()
    return start


async def until_done(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        body: dict[str, Any] = await get_json(http, url)
        if body["status"] != "Running":
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"the feature-importance job did not finish in {JOB_TIMEOUT} s")


async def test_feature_importance_over_http(banditd: BanditServer) -> None:
    t0 = seed(banditd.db)
    banditd.start()
    async with aiohttp.ClientSession() as http:
        await banditd.wait_healthy(http)
        url = f"{banditd.url}/personalizer/featureImportances/fi?api-version=2022-09-01-preview"
        contract = {"name": "fi", "startTime": iso_time(t0), "endTime": iso_time(t0 + N)}
        async with http.put(url, json=contract) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["status"] == "Running"
        body = await until_done(http, url)
    assert body["status"] == "Succeeded", body.get("description")
    scores = body["featureScores"]
    for entry in scores:
        assert {"namespace", "featureName", "score"} <= set(entry)
        assert 0.0 <= entry["score"] <= 100.0
    assert [s["score"] for s in scores] == sorted((s["score"] for s in scores), reverse=True)
    context = [s for s in scores if s["kind"] == "feature" and s["name"] != "item.id"]
    assert len(context) == 10
    assert {s["name"] for s in context[:2]} == set(feature_world.SIGNAL)
    assert {(s["namespace"], s["featureName"]) for s in context[:2]} == {
        ("user", "tier"),
        ("user", "visits"),
    }
    pairs = [s for s in scores if s["kind"] == "interaction"]
    assert {s["name"] for s in pairs} == {
        "item.id^user.tier",
        "item.id^user.visits",
        "user.tier^user.visits",
    }
    assert next(s for s in pairs if s["name"] == "item.id^user.tier")["namespace"] == "item^user"
    stability = body["stability"]
    assert stability["halfEvents"] == [N // 2, N - N // 2]
    assert stability["topKOverlap"] == 1.0
    assert stability["rankCorrelation"] > 0.7
    assert "11 features and 3 interactions scored on 2000 events" in body["description"]
