"""HTTP tests of the observation surface: loop status, watch settings, model versions and manual
rollback, the guardrail's fallback in ``rank``, and the dashboard's files behind auth."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bandit.events import (
    Decision,
    GuardrailRecord,
    ModelRecord,
    WriteBatch,
)
from bandit.guardrail import GuardrailState
from server.api.base import SERVICE
from server.entry.app import TRAINER, create_app
from server.entry.settings import Settings, SettingsError
from server.serving.service import Service
from stores.sqlite.store import SQLiteStore
from tests.conftest import decision, joined

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

JSON_TYPE = "application/json; charset=utf-8"
ADMIN = {"Ocp-Apim-Subscription-Key": "admin-key"}
CLIENT = {"Ocp-Apim-Subscription-Key": "client-key"}
WATCH = {"window": 60, "min_events": 40, "margin": 0.05, "interval": 0.05}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(db=str(tmp_path / "banditd.db"), learn_interval=0.05, watch=dict(WATCH))


@pytest.fixture
async def client(aiohttp_client: MakeClient, settings: Settings) -> Client:
    return await aiohttp_client(create_app(settings))


async def expect_error(response: Any, status: int, code: str) -> None:
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"] == JSON_TYPE
    body = await response.json()
    assert body["error"]["code"] == code and body["error"]["message"]


async def until(client: Client, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the status until ``predicate`` holds (at most 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        body: dict[str, Any] = await (await client.get("/v1/loop/status")).json()
        if predicate(body):
            return body
        assert time.monotonic() < deadline, {k: body[k] for k in ("window", "guardrail", "watcher")}
        await asyncio.sleep(0.05)


def decisions(version: int, count: int, start: int = 0) -> list[Decision]:
    """Uniform-random decisions over four actions, by model ``version``, an hour old (from
    before the server started)."""
    now = time.time() - 3600
    return [
        decision(
            f"ev{start + i}",
            at=now,
            context=({"user": {"type": "u"}},),
            chosen=i % 4,
            model_version=version,
        )
        for i in range(count)
    ]


def log_joined(client: Client, version: int, count: int) -> None:
    """Log ``count`` decisions by model ``version`` and join them: the baseline ``a0`` paid 1,
    every other action 0."""
    store = client.app[SERVICE].store
    logged = decisions(version, count)
    store.write(WriteBatch(decisions=tuple(logged)))
    store.append_joined([joined(d, float(d.chosen_index == 0), at=time.time()) for d in logged])


async def test_status_reports_the_watch_guardrail_drift_and_learner(client: Client) -> None:
    response = await client.get("/v1/loop/status")
    assert response.status == 200 and response.headers["Content-Type"] == JSON_TYPE
    body = await until(client, lambda b: bool(b["history"]["at"]))  # after a watcher round
    assert body["serving"] == "policy" and body["guardrail"]["state"] == "serving"
    assert body["window"]["size"] == WATCH["window"] and body["window"]["alpha"] == 0.05
    assert "confidence sequence" in body["window"]["method"]
    assert set(body["window"]) >= {"policy", "baseline", "uniform", "improvement", "events"}
    assert body["guardrail"]["minEvents"] == WATCH["min_events"]
    assert body["drift"]["alarms"] == [] and body["learner"]["lagEvents"] == 0
    assert len(body["history"]["at"]) == len(body["history"]["policy"]) >= 1
    brief = await (await client.get("/v1/loop/status?history=false")).json()
    assert "history" not in brief


async def test_loop_configuration_is_validated_applied_and_stored(
    client: Client, aiohttp_client: MakeClient, settings: Settings
) -> None:
    got = await (await client.get("/v1/loop/configuration")).json()
    assert (got["window"], got["minEvents"], got["margin"]) == (60, 40, 0.05)
    response = await client.put("/v1/loop/configuration", json={"margin": 0.1, "window": 80})
    assert response.status == 200, await response.text()
    assert (await response.json())["margin"] == 0.1
    status = await (await client.get("/v1/loop/status")).json()
    assert status["guardrail"]["margin"] == 0.1 and status["window"]["size"] == 80
    for bad in ({"bogus": 1}, {"window": 1}, {"alpha": 2}, {"guardrailEnabled": "yes"}, [1]):
        await expect_error(await client.put("/v1/loop/configuration", json=bad), 400, "BadRequest")
    await client.close()
    again = await aiohttp_client(create_app(settings))  # stored: survives a restart
    assert (await (await again.get("/v1/loop/configuration")).json())["margin"] == 0.1


def test_bad_watch_settings_in_the_file_fail_loudly(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "b.db"), watch={"windw": 10})
    with pytest.raises(SettingsError, match="windw"):
        create_app(settings)


async def test_models_are_listed_with_scores_and_rolled_back_by_hand(client: Client) -> None:
    service = client.app[SERVICE]
    trainer = client.app[TRAINER].trainer
    for _ in range(2):
        record = trainer.learner.publish(time.time(), trainer.settings.keep_models)
        trainer.install(record, trainer.factory(record.data))
    await service.refresh()
    body = await (await client.get("/v1/models")).json()
    assert [m["version"] for m in body["models"]] == [3, 2, 1]
    assert body["servingVersion"] == 3 and body["models"][0]["serving"]
    assert all("counterfactual" in m and "served" in m for m in body["models"])

    response = await client.post("/v1/models/2/activate")
    assert response.status == 200, await response.text()
    assert (await response.json())["restoredFrom"] == 2
    health = await (await client.get("/healthz")).json()
    assert health["modelVersion"] == 4 and health["learner"]["running"]
    models = (await (await client.get("/v1/models?counterfactual=false")).json())["models"]
    assert models[0]["version"] == 4 and models[0]["restoredFrom"] == 2 and models[0]["serving"]
    assert models[0]["counterfactual"] is None
    metrics = await (await client.get("/metrics")).text()
    assert "banditd_model_activations_total 1.0" in metrics

    await expect_error(await client.post("/v1/models/999/activate"), 404, "ResourceNotFound")
    await expect_error(await client.post("/v1/models/two/activate"), 400, "BadRequest")


def publish_model_preferring_a1(service: Service) -> ModelRecord:
    """Publish a model that learned, from 40 uniform decisions, that only a1 pays."""
    policy = service.factory(None)
    for d in decisions(0, 40, 1000):
        policy.learn_one(joined(d, float(d.chosen_index == 1), at=0.0))
    return service.store.publish_model(
        created_at=time.time(),
        data=policy.to_bytes(),
        arguments=service.policy_settings.arguments,
        learned_count=40,
        cursor=0,
        keep=20,
    )


def store_tripped_once(settings: Settings, recovered_at: float) -> None:
    """Store a guardrail that tripped and recovered at ``recovered_at``, as a past run left it."""
    store = SQLiteStore(settings.db)
    try:
        store.save_guardrail(
            GuardrailRecord(
                state=GuardrailState.SERVING, since=recovered_at, reason="", trips=1, recoveries=1
            )
        )
    finally:
        store.close()


async def test_a_tripped_guardrail_serves_the_baseline_within_the_cap_and_says_why(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    # The guardrail tripped in an earlier run, after the logged decisions: what served them is
    # unknown, so the watcher asks the model version that was current rather than the log.
    store_tripped_once(settings, recovered_at=time.time() - 60)
    client = await aiohttp_client(create_app(settings))
    service = client.app[SERVICE]
    # A served model that learned to prefer a1, in a world where the baseline a0 pays 1.
    bad = publish_model_preferring_a1(service)
    log_joined(client, bad.version, 60)
    # The round reports the trip, then stores it, and only then does the baseline serve.
    status = await until(
        client, lambda b: b["guardrail"]["state"] == "tripped" and b["serving"] == "baseline"
    )
    trip = status["guardrail"]["history"][0]
    assert trip["improvement"]["upper"] < -WATCH["margin"]
    assert trip["improvement"]["events"] >= WATCH["min_events"]
    assert "upper bound" in trip["reason"] and trip["reason"] == status["guardrail"]["reason"]
    assert status["window"]["policy"]["value"] < status["window"]["baseline"]["value"]

    epsilon = service.config.exploration_percentage
    response = await client.post(
        "/v1/rank",
        json={"contextFeatures": [{"u": 1}], "actions": [{"id": f"a{i}"} for i in "0123"]},
    )
    assert response.status == 201
    ranking = {r["id"]: r["probability"] for r in (await response.json())["ranking"]}
    assert math.isclose(ranking["a0"], 1 - epsilon, abs_tol=1e-6)
    assert all(math.isclose(ranking[f"a{i}"], epsilon / 3, abs_tol=1e-6) for i in "123")
    metrics = await (await client.get("/metrics")).text()
    assert "banditd_guardrail_fallback_decisions_total 1.0" in metrics
    assert "banditd_guardrail_tripped 1.0" in metrics
    assert "banditd_guardrail_trips_total 1.0" in metrics
    assert service.store.load_guardrail() is not None

    await client.close()
    again = await aiohttp_client(create_app(settings))  # a restart keeps the fallback
    assert again.app[SERVICE].fallback is not None
    assert again.app[TRAINER].observer.report.state.value == "tripped"


async def test_the_dashboard_loads_without_a_key_and_its_data_needs_the_admin_key(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    settings = Settings(
        db=str(tmp_path / "b.db"), admin_keys=("admin-key",), client_keys=("client-key",)
    )
    client = await aiohttp_client(create_app(settings))
    page = await client.get("/dashboard")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert '<canvas id="chart-value"' in html and "/dashboard/dashboard.js" in html
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = await client.get(f"/dashboard/{name}")
        assert asset.status == 200 and asset.headers["Content-Type"].startswith(kind)
    await expect_error(await client.get("/dashboard/secrets.txt"), 404, "ResourceNotFound")
    for path in ("/v1/loop/status", "/v1/models", "/v1/loop/configuration"):
        await expect_error(await client.get(path), 401, "Unauthorized")
        forbidden = await client.get(path, headers=CLIENT)
        await expect_error(forbidden, 403, "Forbidden")
        assert forbidden.headers["x-ms-error-code"] == "InvalidApiAccess"
        assert (await client.get(path, headers=ADMIN)).status == 200
    await expect_error(await client.post("/v1/models/1/activate", headers=CLIENT), 403, "Forbidden")


async def test_events_from_before_a_start_are_scored_from_their_log_if_it_never_tripped(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    # A model that prefers a1 where the logged decisions were uniform: asked, it would score the
    # window's policy far from the log's own value.
    client = await aiohttp_client(create_app(settings))
    model = publish_model_preferring_a1(client.app[SERVICE])
    log_joined(client, model.version, 60)
    status = await until(client, lambda b: b["window"]["events"] >= 60)
    # Nothing stored says the guardrail ever tripped, so the policy served these decisions and
    # their logged (uniform) pmf is what it served: the policy's value is the logged mean, 1/4.
    assert status["window"]["policy"]["value"] == pytest.approx(0.25)
    # no model version was loaded to ask
    assert client.app[TRAINER].observer.watcher._policies == {}


@pytest.mark.parametrize(
    ("world_changed", "explained"),
    [(False, True), (True, False)],
    ids=["the-policy-learned", "the-world-changed"],
)
async def test_a_reward_shift_is_explained_only_when_the_newer_model_predicts_it(
    aiohttp_client: MakeClient, tmp_path: Path, world_changed: bool, explained: bool
) -> None:
    """Issue 20: an "up shift" badge stayed up after the policy simply learned. A newer model
    that, replayed on the events from before the shift, predicts the new level explains it; the
    same shift in a world that changed under the same newer model is not explained."""
    settings = Settings(
        db=str(tmp_path / "banditd.db"),
        learn_interval=0.05,
        watch={**WATCH, "window": 1000, "min_events": 1000},
    )
    client = await aiohttp_client(create_app(settings))
    service = client.app[SERVICE]
    newer = publish_model_preferring_a1(service)
    # Before: uniform decisions by the first model; a1 pays (so the newer model is right about
    # it), or in the changed world a0 pays and the newer model's preference is worth little.
    paying = 0 if world_changed else 1
    # Deferred (never activated): they never come due, so the learner does not join them too
    # (with the default reward) behind these joined events.
    before, after = (
        [
            decision(
                f"shift{i}",
                at=time.time() - 3600,
                context=({"user": {"type": "u"}},),
                chosen=i % 4,
                model_version=version,
                defer=True,
            )
            for i in indices
        ]
        for version, indices in ((1, range(300)), (newer.version, range(300, 800)))
    )
    now = time.time()
    service.store.write(WriteBatch(decisions=(*before, *after)))
    service.store.append_joined(
        [joined(d, float(d.chosen_index == paying), at=now) for d in before]
        # After: the newer model serves and 85% of its decisions pay.
        + [joined(d, float(i % 20 < 17), at=now) for i, d in enumerate(after)]
    )
    status = await until(client, lambda b: bool(b["drift"]["alarms"]))
    # The drift test sees rewards mapped to [0, 1] by the reward range.
    low, high = service.config.reward_min, service.config.reward_max
    [alarm] = status["drift"]["alarms"]
    mean_before, mean_after, value = (
        low + (high - low) * alarm[k] for k in ("meanBefore", "meanAfter", "counterfactual")
    )
    assert alarm["direction"] == "up", alarm
    assert mean_before == pytest.approx(0.25, abs=0.05), alarm
    assert mean_after == pytest.approx(0.85, abs=0.05), alarm
    if explained:
        # Replayed on the uniform events where a1 paid, the newer model earns what it now does.
        assert alarm["explainedBy"] == newer.version, alarm
        assert value == pytest.approx(mean_after, abs=0.15), alarm
    else:
        # Where a0 paid, the newer model's preference for a1 is worth little: not explained.
        assert alarm["explainedBy"] is None, alarm
        assert value < mean_before, alarm
