"""Inference explanations against a live ``banditd serve``: the flag is stored (it survives a
restart), and a model that learned explains its choice with non-zero scores, named as sent."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp

from tests.e2e.conftest import BanditServer, get_json, put_service_config, seed_store

FLAG = "isInferenceExplainabilityEnabled"
WAIT = 30.0
TIERS = ["gold", "silver"]
BEST = {"gold": "a0", "silver": "a2"}


def body(event_id: str, tier: str) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "contextFeatures": [{"user": {"tier": tier}, "é地": {"x": 1.0}}],
        "actions": [{"id": f"a{i}", "features": [{"item": {"id": f"a{i}"}}]} for i in range(3)],
    }


async def rank(http: aiohttp.ClientSession, server: BanditServer, event_id: str, tier: str) -> Any:
    async with http.post(f"{server.url}/v1/rank", json=body(event_id, tier)) as response:
        assert response.status == 201, await response.text()
        return await response.json()


async def test_a_learned_model_explains_its_choices_and_the_flag_survives_a_restart(
    banditd: BanditServer,
) -> None:
    seed_store(banditd.db, 21)
    banditd.start()
    async with aiohttp.ClientSession() as http:
        await banditd.wait_healthy(http)
        await put_service_config(banditd)
        assert "inferenceExplanation" not in await rank(http, banditd, "off", "gold")
        async with http.put(
            f"{banditd.url}/v1/configurations/service", json={FLAG: True}
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())[FLAG] is True
        rng = random.Random(5)
        learned_scores = False
        deadline = time.monotonic() + WAIT
        n = 0
        while not learned_scores:
            assert time.monotonic() < deadline, f"no learned explanation:\n{banditd.log_tail()}"
            tier = rng.choice(TIERS)
            ranked = await rank(http, banditd, f"e{n}", tier)
            n += 1
            [explanation] = ranked["inferenceExplanation"]
            assert explanation["id"] == ranked["rewardActionId"]
            names = {f["name"] for f in explanation["features"]}
            assert {"user.tier", "é地.x", "item.id", "(constant)"} <= names, names
            learned_scores = any(f["score"] != 0.0 for f in explanation["features"])
            value = 1.0 if ranked["rewardActionId"] == BEST[tier] else 0.0
            async with http.post(
                f"{banditd.url}/v1/events/{ranked['eventId']}/reward", json={"value": value}
            ) as response:
                assert response.status == 204, await response.text()
            if n % 20 == 0:
                await asyncio.sleep(0.5)  # let rewards join and the model publish
        assert banditd.terminate() == 0
        banditd.start()
        await banditd.wait_healthy(http)
        config = await get_json(http, f"{banditd.url}/v1/configurations/service")
        assert config[FLAG] is True
        ranked = await rank(http, banditd, "after-restart", "gold")
        assert ranked["inferenceExplanation"][0]["id"] == ranked["rewardActionId"]
    assert banditd.terminate() == 0
