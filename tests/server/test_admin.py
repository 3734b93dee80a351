"""HTTP tests of configuration, learning modes, policy, model and log operations."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bandit.config import DAY
from bandit.events import JoinedEvent
from policies import DEFAULT_ARGUMENTS
from server.api.base import SERVICE
from server.entry.app import TRAINER, create_app
from server.entry.settings import Settings
from server.serving import model_archive
from server.serving.service import Service
from tests.conftest import rank_request
from tests.server import world
from tests.server.test_api import CONFIG, JSON_TYPE, expect_error, rank_body

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
DEFAULT_ARGS = DEFAULT_ARGUMENTS


@pytest.fixture
async def client(aiohttp_client: MakeClient, tmp_path: Path) -> Client:
    settings = Settings(db=str(tmp_path / "admin.db"), learn_interval=0.02)
    return await aiohttp_client(create_app(settings))


def service_of(client: Client) -> Service:
    return client.app[SERVICE]


async def learned_all(client: Client, timeout: float = 10.0) -> None:
    """Wait until the trainer's learner cursor reaches the last joined event."""
    trainer = client.app[TRAINER].trainer
    for _ in range(int(timeout / 0.01)):
        if trainer.learner.cursor >= trainer.store.last_seq():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the learner did not catch up")


async def log_world(client: Client, n: int, *, seed: int = 1, start: float | None = None) -> None:
    service = service_of(client)
    now = service.clock()
    logs = world.draw(n, seed=seed, start=start if start is not None else now - n - 100)
    service.store.import_joined(logs.events)
    await learned_all(client)


# -- service configuration ---------------------------------------------------------------


async def test_configuration_put_echoes_and_records_edit_date(client: Client) -> None:
    body = {**CONFIG, "learningMode": "Online", "modelRetrainDays": 3}
    response = await client.put("/personalizer/configurations/service?api-version=x", json=body)
    assert response.status == 200
    assert response.headers["Content-Type"] == JSON_TYPE
    echoed = await response.json()
    assert echoed["modelRetrainDays"] == 3
    assert echoed["lastConfigurationEditDate"].endswith("Z")
    assert echoed["isAutoOptimizationEnabled"] is False
    assert await (await client.get("/v1/configurations/service")).json() == echoed


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("log-mirror", {"logMirrorEnabled": True}),
        ("auto-optimization", {"isAutoOptimizationEnabled": True}),
        ("wrong-type", {"explorationPercentage": "0.2"}),
        ("retrain-days-negative", {"modelRetrainDays": -1}),
        ("unknown-mode", {"learningMode": "Sometimes"}),
        ("not-an-object", None),
    ],
)
async def test_configuration_put_rejections(
    client: Client, case: str, change: dict[str, Any] | None
) -> None:
    body: Any = [1] if change is None else {**CONFIG, **change}
    response = await client.put("/v1/configurations/service", json=body)
    await expect_error(response, 400, "BadRequest", "InvalidServiceConfiguration")


def bad_configuration(message: str, target: str, inner: str = "InvalidServiceConfiguration") -> Any:
    """The whole error body of a refused configuration."""
    return {
        "error": {
            "code": "BadRequest",
            "message": message,
            "target": target,
            "innerError": {"code": inner},
        }
    }


CONFIGURATION_ERRORS: list[tuple[str, dict[str, Any], Any]] = [
    (
        "misspelt-field",
        {**CONFIG, "rewardWait": "PT5S"},
        bad_configuration("unknown field rewardWait; did you mean rewardWaitTime?", "rewardWait"),
    ),
    (
        "unknown-field-alone",
        {"zzz": 1},
        bad_configuration(
            "unknown field zzz; the fields are rewardWaitTime, defaultReward, rewardAggregation, "
            "explorationPercentage, modelExportFrequency, logRetentionDays, modelRetrainDays, "
            "learningMode, lastConfigurationEditDate, isAutoOptimizationEnabled, "
            "autoOptimizationFrequency, autoOptimizationStartDate, logMirrorEnabled, "
            "logMirrorSasUri, isInferenceExplainabilityEnabled, latestApprenticeModeMetrics, "
            "minPropensity, apprenticeExplorationPercentage, apprenticeAutoGraduate, "
            "apprenticeGraduationMinEvents.",
            "zzz",
        ),
    ),
    (
        "learning-mode",
        {"learningMode": "Sometimes"},
        bad_configuration(
            "learningMode must be one of Online, Apprentice, LoggingOnly; got 'Sometimes'.",
            "learningMode",
        ),
    ),
    (
        "reward-aggregation",
        {**CONFIG, "rewardAggregation": "max"},
        bad_configuration(
            "rewardAggregation must be one of earliest, sum; got 'max'.", "rewardAggregation"
        ),
    ),
    (
        "reward-aggregation-not-text",
        {"rewardAggregation": 3},
        bad_configuration(
            "Expected `str | null`, got `int` - at `$.rewardAggregation`.", "rewardAggregation"
        ),
    ),
    (
        "inference-explainability-not-boolean",
        {"isInferenceExplainabilityEnabled": "yes"},
        bad_configuration(
            "Expected `bool | null`, got `str` - at `$.isInferenceExplainabilityEnabled`.",
            "isInferenceExplainabilityEnabled",
        ),
    ),
    (
        "partial-out-of-range",
        {"explorationPercentage": 1.5},
        bad_configuration(
            "Expected `float` <= 1.0 - at `$.explorationPercentage`.", "explorationPercentage"
        ),
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "error"), CONFIGURATION_ERRORS, ids=[c for c, _, _ in CONFIGURATION_ERRORS]
)
async def test_configuration_errors_name_the_field(
    client: Client, case: str, body: dict[str, Any], error: Any
) -> None:
    before = await (await client.get("/v1/configurations/service")).json()
    response = await client.put("/v1/configurations/service", json=body)
    assert response.status == 400
    assert response.headers["x-ms-error-code"] == error["error"]["innerError"]["code"]
    assert await response.json() == error
    assert await (await client.get("/v1/configurations/service")).json() == before


async def test_a_partial_configuration_merges_onto_the_current_one(client: Client) -> None:
    """Regression: a body with only some fields failed with "missing required field"."""
    full = {**CONFIG, "rewardWaitTime": "PT30S", "explorationPercentage": 0.3}
    assert (await client.put("/v1/configurations/service", json=full)).status == 200
    before = await (await client.get("/v1/configurations/service")).json()
    response = await client.put("/v1/configurations/service", json={"defaultReward": 0.5})
    assert response.status == 200
    after = await response.json()
    assert after["defaultReward"] == 0.5
    assert service_of(client).config.default_reward == 0.5
    unchanged = {
        k: v for k, v in after.items() if k not in {"defaultReward", "lastConfigurationEditDate"}
    }
    assert unchanged == {k: v for k, v in before.items() if k in unchanged}
    assert set(unchanged) | {"defaultReward", "lastConfigurationEditDate"} == set(before)
    # An enumerated value in any case, and nulls, which keep what is there.
    body = {"rewardAggregation": "SUM", "learningMode": None, "modelRetrainDays": None}
    response = await client.put("/v1/configurations/service", json=body)
    assert response.status == 200
    after = await response.json()
    assert (after["rewardAggregation"], after["learningMode"]) == ("sum", "Online")
    assert after["modelRetrainDays"] == before["modelRetrainDays"]


async def test_what_a_client_read_it_may_send_back(client: Client) -> None:
    """Every Personalizer field is still taken, the read-only ones a client echoes included."""
    read = await (await client.get("/v1/configurations/service")).json()
    echoed = {
        **read,
        "lastConfigurationEditDate": "2026-01-01T00:00:00Z",
        "autoOptimizationFrequency": "P7D",
        "autoOptimizationStartDate": "2026-01-01T00:00:00Z",
        "logMirrorSasUri": "https://example.invalid/container?sig=x",
        "isInferenceExplainabilityEnabled": False,
        "latestApprenticeModeMetrics": {
            "startTime": "2026-01-01T00:00:00Z",
            "lastProcessedEventTime": "2026-01-01T00:10:00Z",
            "numberOfEvents": 10,
            "sumOfRewards": 4.0,
            "sumOfImitatedRewards": 3.0,
            "numberOfImitatedEvents": 7,
            "lastBatchMetrics": {
                "numberOfEvents": 2,
                "sumOfRewards": 1.0,
                "sumOfImitatedRewards": 1.0,
                "numberOfImitatedEvents": 2,
            },
        },
    }
    response = await client.put("/v1/configurations/service", json=echoed)
    assert response.status == 200, await response.text()
    after = await response.json()
    assert "latestApprenticeModeMetrics" not in after  # read-only: not taken from the body
    assert after["lastConfigurationEditDate"] != "2026-01-01T00:00:00Z"


async def test_unchanged_reward_settings_keep_the_model(client: Client) -> None:
    service = service_of(client)
    version = service.serving.version
    body = {**CONFIG, "learningMode": "Apprentice"}
    assert (await client.put("/v1/configurations/service", json=body)).status == 200
    assert service.serving.version == version


async def test_reward_change_resets_and_retrains_from_retained_logs(client: Client) -> None:
    service = service_of(client)
    await log_world(client, 60)
    old = service.serving.version
    body = {**CONFIG, "defaultReward": -0.5, "modelRetrainDays": 1}
    assert (await client.put("/v1/configurations/service", json=body)).status == 200
    assert service.serving.version > old  # reset at once
    await client.app[TRAINER].control.idle()
    await service.refresh()  # the edge picks up what the trainer published
    record = service.store.latest_model()
    assert record is not None and record.learned_count == 60
    assert service.serving.version == record.version


async def test_exploration_change_with_no_retrain_days_only_resets(client: Client) -> None:
    service = service_of(client)
    await log_world(client, 20)
    body = {**CONFIG, "explorationPercentage": 0.05, "modelRetrainDays": 0}
    assert (await client.put("/v1/configurations/service", json=body)).status == 200
    await client.app[TRAINER].control.idle()
    record = service.store.latest_model()
    assert record is not None and record.learned_count == 0


async def test_retrain_uses_only_the_last_model_retrain_days(client: Client) -> None:
    service = service_of(client)
    await log_world(client, 30, seed=1, start=service.clock() - 3 * DAY)
    await log_world(client, 20, seed=2)
    body = {**CONFIG, "rewardAggregation": "sum", "modelRetrainDays": 1}
    assert (await client.put("/v1/configurations/service", json=body)).status == 200
    await client.app[TRAINER].control.idle()
    record = service.store.latest_model()
    assert record is not None and record.learned_count == 20


# -- learning modes ----------------------------------------------------------------------


async def test_apprentice_serves_baseline_and_counts_imitation(client: Client) -> None:
    body = {**CONFIG, "learningMode": "Apprentice"}
    assert (await client.put("/v1/configurations/service", json=body)).status == 200
    service = service_of(client)
    for i in range(20):
        response = await client.post(
            "/v1/rank", json=rank_body(f"ap{i}", excludedActions=["a0"] if i % 2 else [])
        )
        ranked = await response.json()
        assert ranked["rewardActionId"] == ("a1" if i % 2 else "a0")
        assert ranked["ranking"][0]["probability"] == 1.0
    events = [service.store.get_decision(f"ap{i}") for i in range(20)]
    joined = [
        JoinedEvent(decision=d, reward=1.0, reward_count=1, defaulted=False, joined_at=0.0)
        for d in events
        if d is not None
    ]
    appended = service.store.append_joined(joined)
    assert len(appended) == 20
    await learned_all(client)
    client.app[TRAINER].control.apprentice.flush()
    config = await (await client.get("/personalizer/configurations/service")).json()
    metrics = config["latestApprenticeModeMetrics"]
    assert metrics["numberOfEvents"] == 20
    assert metrics["sumOfRewards"] == 20.0
    assert 0 <= metrics["numberOfImitatedEvents"] <= 20
    assert metrics["sumOfImitatedRewards"] == float(metrics["numberOfImitatedEvents"])
    assert metrics["lastBatchMetrics"]["numberOfEvents"] >= 1
    assert metrics["startTime"].endswith("Z")


async def test_logging_only_learns_nothing(client: Client) -> None:
    body = {**CONFIG, "learningMode": "LoggingOnly"}
    assert (await client.put("/v1/configurations/service", json=body)).status == 200
    trainer = client.app[TRAINER].trainer
    before = trainer.learner.learned_count
    response = await client.post("/v1/rank", json=rank_body("lo1"))
    assert (await response.json())["rewardActionId"] == "a0"
    await log_world(client, 10)
    assert trainer.learner.learned_count == before
    assert (
        "latestApprenticeModeMetrics"
        not in await (await client.get("/v1/configurations/service")).json()
    )


# -- policy ------------------------------------------------------------------------------


async def test_policy_get_put_delete(client: Client) -> None:
    response = await client.get("/v1/configurations/policy")
    assert response.status == 200
    assert await response.json() == {"name": "default", "arguments": DEFAULT_ARGS}
    custom = {"name": "custom", "arguments": "--cb_explore_adf --epsilon 0.1 -l 0.01 -q ::"}
    service = service_of(client)
    version = service.serving.version
    response = await client.put("/v1/configurations/policy", json=custom)
    assert response.status == 200
    assert await response.json() == custom
    assert service.serving.version > version
    assert service.store.latest_model().arguments == custom["arguments"]  # type: ignore[union-attr]
    assert await (await client.get("/v1/configurations/policy")).json() == custom
    response = await client.delete("/v1/configurations/policy")
    assert response.status == 200
    assert (await response.json())["arguments"] == DEFAULT_ARGS


BAD_POLICIES: list[tuple[str, Any]] = [
    ("not-cb-explore-adf", {"name": "p", "arguments": "--cb_adf"}),
    ("data-file", {"name": "p", "arguments": "--cb_explore_adf -d /etc/passwd"}),
    ("final-regressor", {"name": "p", "arguments": "--cb_explore_adf -f /tmp/m.vw"}),
    ("attached-short-flag", {"name": "p", "arguments": "--cb_explore_adf -f/tmp/m.vw"}),
    ("cache-file", {"name": "p", "arguments": "--cb_explore_adf --cache_file x"}),
    ("readable-model", {"name": "p", "arguments": "--cb_explore_adf --readable_model x"}),
    ("invert-hash", {"name": "p", "arguments": "--cb_explore_adf --invert_hash x"}),
    ("daemon", {"name": "p", "arguments": "--cb_explore_adf --daemon --port 26542"}),
    ("unknown-flag", {"name": "p", "arguments": "--cb_explore_adf --no_such_flag"}),
    ("too-long", {"name": "p", "arguments": "--cb_explore_adf " + "-l 0.1 " * 200}),
    ("name-too-long", {"name": "n" * 257, "arguments": "--cb_explore_adf"}),
    ("missing-name", {"arguments": "--cb_explore_adf"}),
    ("unknown-field", {"name": "p", "arguments": "--cb_explore_adf", "argument": "-q ::"}),
    ("not-json", "{"),
]


@pytest.mark.parametrize(("case", "body"), BAD_POLICIES, ids=[c for c, _ in BAD_POLICIES])
async def test_bad_policies_are_400(client: Client, case: str, body: Any) -> None:
    before = await (await client.get("/v1/configurations/policy")).json()
    if isinstance(body, str):
        response = await client.put("/v1/configurations/policy", data=body)
    else:
        response = await client.put("/v1/configurations/policy", json=body)
    await expect_error(response, 400, "BadRequest", "InvalidPolicyConfiguration")
    assert await (await client.get("/v1/configurations/policy")).json() == before


async def test_policy_unknown_field_is_refused_by_name(client: Client) -> None:
    body = {"name": "p", "arguments": "--cb_explore_adf", "argument": "-q ::"}
    response = await client.put("/v1/configurations/policy", json=body)
    assert response.status == 400
    assert await response.json() == {
        "error": {
            "code": "BadRequest",
            "message": "unknown field argument; did you mean arguments?",
            "target": "argument",
            "innerError": {"code": "InvalidPolicyConfiguration"},
        }
    }


# -- model -------------------------------------------------------------------------------


async def test_model_export_import_reset_and_properties(client: Client) -> None:
    service = service_of(client)
    await log_world(client, 30)
    trainer = client.app[TRAINER].trainer
    trainer.learner_thread.publish(trainer.clock())  # type: ignore[union-attr]
    await asyncio.sleep(0.05)  # the trainer's install runs on the event loop
    await service.refresh()
    raw = await client.get("/v1/model")
    assert raw.status == 200
    assert raw.headers["Content-Type"] == "application/octet-stream"
    raw_bytes = await raw.read()
    assert raw_bytes == service.store.get_model(service.serving.version).data  # type: ignore[union-attr]
    signed = await (await client.get("/personalizer/model?signed=true&api-version=x")).read()
    assert zipfile.ZipFile(io.BytesIO(signed)).namelist() == [
        "model.vw",
        "metadata.json",
        "signature",
    ]
    response = await client.delete("/v1/model")
    assert response.status == 204
    assert service.store.latest_model().learned_count == 0  # type: ignore[union-attr]
    properties = await (await client.get("/v1/model/properties")).json()
    assert properties["creationTime"] == properties["lastModifiedTime"]
    response = await client.put(
        "/v1/model", data=signed, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status == 204
    exported = service.factory(raw_bytes)
    probe = rank_request("probe", k=world.ACTIONS, context=world.context(1))
    assert service.serving.policy.predict_one(probe) == exported.predict_one(probe)
    assert service.serving.policy.predict_one(probe) != service.factory(None).predict_one(probe)
    properties = await (await client.get("/v1/model/properties")).json()
    assert properties["creationTime"].endswith("Z")


def tampered(archive: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, data + b"\0" if name == "model.vw" else data)
    return out.getvalue()


async def test_model_import_errors(client: Client) -> None:
    signed = await (await client.get("/v1/model?signed=true")).read()
    raw = await (await client.get("/v1/model")).read()
    response = await client.put("/v1/model", data=tampered(signed))
    await expect_error(response, 400, "BadRequest", "InvalidModelImportSignature")
    response = await client.put("/v1/model", data=raw)
    await expect_error(response, 400, "BadRequest", "InvalidModelImportFormat")
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    response = await client.put("/v1/model", data=empty.getvalue())
    await expect_error(response, 400, "BadRequest", "InvalidModelImportFormat")
    response = await client.get("/v1/model?signed=maybe")
    await expect_error(response, 400, "BadRequest", "InvalidRequest")


async def test_model_signed_by_another_key_is_rejected(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    other = await aiohttp_client(
        create_app(Settings(db=str(tmp_path / "other.db"), model_signing_key="other"))
    )
    signed = await (await other.get("/v1/model?signed=true")).read()
    mine = await aiohttp_client(
        create_app(Settings(db=str(tmp_path / "mine.db"), model_signing_key="mine"))
    )
    response = await mine.put("/v1/model", data=signed)
    await expect_error(response, 400, "BadRequest", "InvalidModelImportSignature")


# -- logs --------------------------------------------------------------------------------


async def test_logs_properties_delete_and_retention(client: Client) -> None:
    service = service_of(client)
    empty = await (await client.get("/v1/logs/properties")).json()
    assert empty == {"dateRange": {"from": None, "to": None}}
    now = service.clock()
    await log_world(client, 10, seed=1, start=now - 100 * DAY)
    await log_world(client, 10, seed=2, start=now - 1000)
    properties = await (await client.get("/personalizer/logs/properties")).json()
    assert properties["dateRange"]["from"] < properties["dateRange"]["to"]
    deleted = await client.app[TRAINER].control.enforce_retention()  # 90 days by default
    assert deleted == 10
    response = await client.delete("/v1/logs")
    assert response.status == 204
    assert await (await client.get("/v1/logs/properties")).json() == empty
    assert service.store.get_decision("w2-0") is None


async def test_retention_minus_one_keeps_everything(client: Client) -> None:
    body = {**CONFIG, "logRetentionDays": -1}
    assert (await client.put("/v1/configurations/service", json=body)).status == 200
    await log_world(client, 5, start=service_of(client).clock() - 1000 * DAY)
    assert await client.app[TRAINER].control.enforce_retention() == 0


async def test_admin_operations_need_the_admin_key(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    settings = Settings(
        db=str(tmp_path / "k.db"), client_keys=("client",), admin_keys=("admin", "admin2")
    )
    client = await aiohttp_client(create_app(settings))
    for method, path in [
        ("GET", "/v1/configurations/policy"),
        ("DELETE", "/v1/model"),
        ("GET", "/v1/model/properties"),
        ("DELETE", "/v1/logs"),
    ]:
        response = await client.request(method, path)
        await expect_error(response, 401, "Unauthorized")
        response = await client.request(
            method, path, headers={"Ocp-Apim-Subscription-Key": "client"}
        )
        await expect_error(response, 403, "Forbidden", "InvalidApiAccess")
        response = await client.request(
            method, path, headers={"Ocp-Apim-Subscription-Key": "admin2"}
        )
        assert response.status in (200, 204)


@pytest.mark.parametrize(
    "path", ["/multislot/rank", "/multislot/events/e1/reward", "/multislot/events/e1/activate"]
)
async def test_multislot_is_refused_as_on_a_single_slot_loop(client: Client, path: str) -> None:
    response = await client.post(f"/personalizer{path}?api-version=x", json={})
    await expect_error(response, 400, "BadRequest", "InvalidMultiSlotApiAccess")


async def test_signed_archives_that_cannot_be_loaded_are_rejected(client: Client) -> None:
    key = client.app[TRAINER].control.signing_key
    meta = model_archive.ModelMetadata(name="x", arguments=DEFAULT_ARGS, version=1, created_at=0)
    garbage = model_archive.sign(b"not a vw model", meta, key)
    response = await client.put("/v1/model", data=garbage)
    await expect_error(response, 400, "BadRequest", "InvalidModelImportFormat")
    unsafe = dataclasses.replace(meta, arguments="--cb_explore_adf -f /tmp/out.vw")
    good = await (await client.get("/v1/model")).read()
    response = await client.put("/v1/model", data=model_archive.sign(good, unsafe, key))
    await expect_error(response, 400, "BadRequest", "InvalidModelImportFormat")


async def test_model_import_too_large_is_413(aiohttp_client: MakeClient, tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "small.db"), max_model_bytes=64)
    client = await aiohttp_client(create_app(settings))
    response = await client.put("/v1/model", data=b"x" * 65)
    await expect_error(response, 413, "BadRequest", "PayloadSizeExceeded")
