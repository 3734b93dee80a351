"""Feature names VW's parser cannot take, against a live ``banditd serve`` (issue 17, defect 1).

A rank whose feature key starts with a non-ASCII character and holds an object or an array
killed the process (VW's DSJSON parser corrupts its heap); a rank committed before the crash was
read back by the learner after the restart and killed it again. Here such ranks get 201, the
server stays up, rewards land and the learner learns them; and a store that already holds such
a decision (written as a server without the mapping wrote it) is learned after a start without
a crash. The stored request keeps the names as they were sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bandit.events import Action, Decision, RankRequest, Reward, WriteBatch
from stores.sqlite.store import SQLiteStore
from tests.e2e.conftest import BanditServer, get_json, put_service_config, seed_store

REPRODUCTION = b'{"contextFeatures":[{"\\u00e9":[1.0]}],"actions":[{"id":"a"},{"id":"b"}]}'
"""Issue 17's curl body, byte for byte."""

OTHER_BODIES: list[dict[str, Any]] = [
    {"contextFeatures": [{"中文": {"city": "北京"}}], "actions": [{"id": "a"}, {"id": "b"}]},
    {
        "contextFeatures": [{"user": {"é": {"x": 1}}}],
        "actions": [{"id": "a", "features": [{"\u00a0": [1.0, 2.0]}]}, {"id": "b"}],
    },
    {"contextFeatures": [{"user": {"__aid": 1}}], "actions": [{"id": "a"}, {"id": "b"}]},
]
LEARN_TIMEOUT = 30.0


async def learned(http: aiohttp.ClientSession, server: BanditServer, count: int) -> dict[str, Any]:
    """Wait (bounded) until the learner has learned ``count`` events; the final ``/healthz``."""
    deadline = time.monotonic() + LEARN_TIMEOUT
    while True:
        assert server.proc is not None and server.proc.poll() is None, server.log_tail()
        health: dict[str, Any] = await get_json(http, f"{server.url}/healthz")
        if health["learner"]["learnedCount"] >= count:
            return health
        if time.monotonic() > deadline:
            pytest.fail(f"learned {health} of {count} in {LEARN_TIMEOUT} s:\n{server.log_tail()}")
        await asyncio.sleep(0.2)


async def test_non_ascii_namespace_rank_gets_201_and_is_learned_without_killing_the_server(
    banditd: BanditServer,
) -> None:
    seed_store(banditd.db, 17)
    banditd.start()
    async with aiohttp.ClientSession() as http:
        await banditd.wait_healthy(http)
        await put_service_config(banditd)
        event_ids = []
        bodies = [REPRODUCTION] + [json.dumps(b).encode() for b in OTHER_BODIES]
        for body in bodies:
            async with http.post(
                f"{banditd.url}/v1/rank",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                assert response.status == 201, await response.text()
                event_ids.append((await response.json())["eventId"])
        for event_id in event_ids:
            async with http.post(
                f"{banditd.url}/v1/events/{event_id}/reward", json={"value": 1.0}
            ) as response:
                assert response.status == 204, await response.text()
        health = await learned(http, banditd, len(event_ids))
        assert health["learner"]["failures"] == 0, health
        # And the service still ranks.
        async with http.post(f"{banditd.url}/v1/rank", data=REPRODUCTION) as response:
            assert response.status == 201, await response.text()
    assert banditd.terminate() == 0
    store = SQLiteStore(banditd.db)
    try:
        decision = store.get_decision(event_ids[0])
        assert decision is not None
        assert decision.request.context_features == ({"é": [1.0]},)
    finally:
        store.close()


def log_decisions(db: Path, requests: list[RankRequest]) -> None:
    """Write decisions and rewards into the store as the server's writer does, their reward
    windows already closed: what a server without the mapping logged before it died."""
    store = SQLiteStore(db)
    try:
        past = time.time() - 60.0
        decisions = tuple(
            Decision(
                event_id=r.event_id,
                timestamp=past,
                request=r,
                pmf=(0.5, 0.5),
                chosen_index=0,
                model_version=0,
                activated_at=past,
                close_at=past + 1.0,
            )
            for r in requests
        )
        rewards = tuple(Reward(event_id=r.event_id, value=1.0, received_at=past) for r in requests)
        store.write(WriteBatch(decisions=decisions, rewards=rewards))
    finally:
        store.close()


async def test_a_log_holding_non_ascii_namespaces_is_learned_after_restart(
    banditd: BanditServer,
) -> None:
    seed_store(banditd.db, 17)
    actions = (Action(id="a"), Action(id="b", features=({"中": {"x": 1}},)))
    requests = [
        RankRequest(event_id="poison-1", context_features=({"é": [1.0]},), actions=actions),
        RankRequest(
            event_id="poison-2", context_features=({"u": {"ü": {"x": 1}}},), actions=actions
        ),
        RankRequest(event_id="poison-3", context_features=({"u": {"__aid": 1}},), actions=actions),
    ]
    log_decisions(banditd.db, requests)
    banditd.start()
    async with aiohttp.ClientSession() as http:
        await banditd.wait_healthy(http)
        health = await learned(http, banditd, len(requests))
        assert health["learner"]["failures"] == 0, health
        assert health["learner"]["cursor"] == len(requests), health
    assert banditd.terminate() == 0
