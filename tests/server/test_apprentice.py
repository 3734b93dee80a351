"""HTTP tests of Apprentice mode's banditd extensions: apprentice exploration, the learned
policy's estimated value against the baseline, and automatic graduation to Online."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bandit.config import LearningMode, ServiceConfiguration
from bandit.events import Action, JoinedEvent, RankRequest
from bandit.loop import decide
from bandit.memory import MemoryStore
from policies import BaselinePolicy, UniformPolicy
from server.api.base import SERVICE
from server.entry.app import TRAINER, create_app
from server.entry.settings import Settings
from server.trainer.apprentice import ApprenticeTracker
from tests.server.test_api import CONFIG, expect_error, rank_body

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

FAST = {**CONFIG, "rewardWaitTime": "PT1S", "modelExportFrequency": "PT1S"}
"""Rewards join 1 s after the decision plus the 2 s join grace; models publish every second."""
MIN_EVENTS = 150
MAX_EVENTS = 3_000
MAX_SECONDS = 20.0
ROUND = 50


@pytest.fixture
async def client(aiohttp_client: MakeClient, tmp_path: Path) -> Client:
    settings = Settings(db=str(tmp_path / "apprentice.db"), learn_interval=0.02)
    return await aiohttp_client(create_app(settings))


async def put_config(client: Client, **changes: Any) -> dict[str, Any]:
    response = await client.put("/v1/configurations/service", json={**FAST, **changes})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def get_config(client: Client) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get("/v1/configurations/service")).json()
    return body


class World:
    """Action a1 earns 1 with probability 0.9; the baseline a0 and a2 with probability 0.1."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.served = 0
        self.explored = 0

    async def round(self, client: Client, start: int) -> None:
        ids = [f"ev{start + i}" for i in range(ROUND)]
        responses = await asyncio.gather(*(client.post("/v1/rank", json=rank_body(e)) for e in ids))
        rewards = []
        for event_id, response in zip(ids, responses, strict=True):
            assert response.status == 201
            ranked = await response.json()
            action = ranked["rewardActionId"]
            self.served += 1
            self.explored += action != "a0"
            value = 1.0 if self.rng.random() < (0.9 if action == "a1" else 0.1) else 0.0
            rewards.append(client.post(f"/v1/events/{event_id}/reward", json={"value": value}))
        for response in await asyncio.gather(*rewards):
            assert response.status == 204


async def test_apprentice_exploration_values_the_policy_and_graduates_to_online(
    client: Client,
) -> None:
    service = client.app[SERVICE]
    control = client.app[TRAINER].control
    await put_config(client)  # the reward wait first: it cannot change with the mode
    echoed = await put_config(
        client,
        learningMode="Apprentice",
        apprenticeExplorationPercentage=0.5,
        apprenticeGraduationMinEvents=MIN_EVENTS,
    )
    assert echoed["apprenticeExplorationPercentage"] == 0.5
    assert echoed["apprenticeAutoGraduate"] is False
    assert echoed["apprenticeGraduationMinEvents"] == MIN_EVENTS
    stored = service.store.load_config()
    assert stored is not None and stored.apprentice_exploration == 0.5

    world = World(seed=7)
    deadline = time.monotonic() + MAX_SECONDS
    evidence: dict[str, Any] = {}
    # Phase 1, graduation off: the evidence builds up but the mode stays Apprentice.
    while world.served < MAX_EVENTS and time.monotonic() < deadline:
        await world.round(client, world.served)
        control.apprentice.flush()
        metrics = (await get_config(client))["latestApprenticeModeMetrics"]
        low = metrics.get("improvementLowerBound")
        if metrics.get("evaluatedEvents", 0) >= MIN_EVENTS and low is not None and low > 0:
            evidence = metrics
            break
        await asyncio.sleep(0.1)
    assert evidence, f"no evidence after {world.served} events"
    assert not await control.graduate_if_ready()
    assert service.config.learning_mode is LearningMode.APPRENTICE
    assert evidence["estimatedPolicyValue"] > evidence["estimatedBaselineValue"]
    assert evidence["improvementUpperBound"] >= evidence["estimatedImprovement"] > 0
    assert 0.4 <= world.explored / world.served <= 0.6  # ε_a = 0.5 leaves the baseline

    # Phase 2, graduation on: the periodic job switches to Online by itself.
    await put_config(
        client,
        learningMode="Apprentice",
        apprenticeExplorationPercentage=0.5,
        apprenticeGraduationMinEvents=MIN_EVENTS,
        apprenticeAutoGraduate=True,
    )
    while service.config.learning_mode is LearningMode.APPRENTICE:
        assert time.monotonic() < deadline, "did not graduate in time"
        await asyncio.sleep(0.05)
    body = await get_config(client)
    assert body["learningMode"] == "Online"
    assert body["apprenticeAutoGraduate"] is True
    assert body["latestApprenticeModeMetrics"]["improvementLowerBound"] > 0
    stored = service.store.load_config()
    assert stored is not None and stored.learning_mode is LearningMode.ONLINE
    await asyncio.to_thread(client.app[TRAINER].write_report)  # else within report_interval
    text = await (await client.get("/metrics")).text()
    assert "banditd_apprentice_graduations_total 1.0" in text

    # Online now: decisions come from the model and explore within explorationPercentage.
    response = await client.post("/v1/rank", json=rank_body("after"))
    assert response.status == 201
    decision = service.store.get_decision("after")
    assert decision is not None and decision.learning_mode is LearningMode.ONLINE
    assert sum(p for i, p in enumerate(decision.pmf) if i != decision.greedy_index) <= 0.2 + 1e-6


async def test_personalizer_apprentice_reports_no_estimate(client: Client) -> None:
    """With no apprentice exploration the object is Personalizer's, extra fields absent."""
    await put_config(client)
    await put_config(client, learningMode="Apprentice")
    for i in range(10):
        ranked = await (await client.post("/v1/rank", json=rank_body(f"p{i}"))).json()
        assert ranked["rewardActionId"] == "a0"
        assert ranked["ranking"][0]["probability"] == 1.0
    metrics = (await get_config(client))["latestApprenticeModeMetrics"]
    assert "evaluatedEvents" not in metrics
    assert not await client.app[TRAINER].control.graduate_if_ready()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("apprenticeExplorationPercentage", 1.5),
        ("apprenticeExplorationPercentage", "0.1"),
        ("apprenticeAutoGraduate", "yes"),
        ("apprenticeGraduationMinEvents", 0),
    ],
)
async def test_bad_apprentice_settings_are_400(client: Client, field: str, value: Any) -> None:
    response = await client.put("/v1/configurations/service", json={**CONFIG, field: value})
    await expect_error(response, 400, "BadRequest", "InvalidServiceConfiguration")


def test_the_estimate_survives_a_restart() -> None:
    """The running sums are persisted with the apprentice counts and read back on start."""
    store = MemoryStore()
    tracker = ApprenticeTracker(store)
    tracker.start(0.0)
    config = ServiceConfiguration(learning_mode=LearningMode.APPRENTICE, apprentice_exploration=0.5)
    rng = random.Random(3)
    for i in range(200):
        request = RankRequest(
            event_id=f"e{i}", context_features=(), actions=(Action(id="a0"), Action(id="a1"))
        )
        decision = decide(
            request, BaselinePolicy(), config=config, seed=1, model_version=1, now=float(i)
        )
        reward = 1.0 if rng.random() < (0.8 if decision.chosen_index == 1 else 0.2) else 0.0
        event = JoinedEvent(
            decision=decision, reward=reward, reward_count=1, defaulted=False, joined_at=0.0
        )
        tracker.observe(UniformPolicy(), event)  # ties: its greedy action is the baseline
    tracker.flush()
    again = ApprenticeTracker(store)
    assert again.value(MIN_EVENTS) == tracker.value(MIN_EVENTS)
    assert again.to_wire(MIN_EVENTS) == tracker.to_wire(MIN_EVENTS)
    body = again.to_wire(MIN_EVENTS)
    assert body is not None and body["evaluatedEvents"] == 200
    assert body["numberOfImitatedEvents"] == 200
    again.restart_evaluation()  # a fresh model: valued afresh, counts kept
    assert again.value(MIN_EVENTS).evaluated_events == 0
    restarted = again.to_wire(MIN_EVENTS)
    assert restarted is not None and restarted["numberOfEvents"] == 200
    assert "evaluatedEvents" not in restarted
    tracker.start(10.0)  # Apprentice turned on again: counting starts afresh
    assert tracker.value(MIN_EVENTS).evaluated_events == 0
