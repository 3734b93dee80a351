"""HTTP tests of offline evaluations: both API shapes, the job's estimates, apply, every error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bandit.dsjson import iso_time
from bandit.events import JobRecord
from policies import DEFAULT_ARGUMENTS
from server.api.base import SERVICE
from server.entry.app import TRAINER, create_app
from server.entry.settings import Settings
from server.trainer import job_records as wire
from server.trainer import job_work
from stores.sqlite.store import SQLiteStore
from tests.conftest import decision, joined
from tests.server import world
from tests.server.test_api import JSON_TYPE, expect_error

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

T0 = 1_700_000_000.0
N = 900
CUSTOM = {"name": "fast", "arguments": "--cb_explore_adf --cb_type mtr --power_t 0 -l 0.05 -q ::"}


def contract(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "eval",
        "startTime": iso_time(T0),
        "endTime": iso_time(T0 + N),
        "policies": [CUSTOM],
    }
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def logs() -> world.Logs:
    return world.draw(N, seed=11, start=T0)


@pytest.fixture
async def client(aiohttp_client: MakeClient, tmp_path: Path, logs: world.Logs) -> Client:
    made = await aiohttp_client(create_app(Settings(db=str(tmp_path / "e.db"))))
    made.app[SERVICE].store.import_joined(logs.events)
    return made


async def finished(client: Client, path: str) -> dict[str, Any]:
    await client.app[TRAINER].run_jobs()
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def test_v1_create_get_list_delete(client: Client, logs: world.Logs) -> None:
    response = await client.post("/personalizer/v1.0/evaluations", json=contract())
    assert response.status == 201
    assert response.headers["Content-Type"] == JSON_TYPE
    created = await response.json()
    assert created["status"] == "pending"
    location = response.headers["Location"]
    assert location.endswith(f"/personalizer/v1.0/evaluations/{created['id']}")
    body = await finished(client, f"/personalizer/v1.0/evaluations/{created['id']}")
    assert body["status"] == "completed"
    results = {r["name"]: r for r in body["policyResults"]}
    assert set(results) == {"Online", "Baseline", "Random", "fast"}
    assert results["Baseline"]["policySource"] == "Baseline"
    total = results["Random"]["totalSummary"]
    assert total["ipsEstimatorDenominator"] == N
    assert len(results["Random"]["summary"]) == 4  # 5-minute buckets over 15 minutes
    truths = {
        "Baseline": float(np.mean(world.MEANS[logs.kinds, 0])),
        "Random": float(np.mean(world.MEANS[logs.kinds])),
    }
    for item in body["content"]["value"]:
        if item["name"] in truths:
            low, high = item["summary"]["confidenceInterval"]
            assert low <= truths[item["name"]] <= high
            low, high = item["summary"]["ips"]["confidenceInterval"]
            assert low <= truths[item["name"]] <= high
    listed = await (await client.get("/personalizer/v1.1-preview.3/evaluations")).json()
    assert isinstance(listed, list) and listed[0]["id"] == created["id"]
    assert listed[0]["status"] == "completed"
    response = await client.delete(f"/personalizer/v1.0/evaluations/{created['id']}")
    assert response.status == 204
    response = await client.get(f"/personalizer/v1.0/evaluations/{created['id']}")
    await expect_error(response, 404, "ResourceNotFound", "EvaluationNotFound")


async def test_2022_put_is_idempotent_and_lists_in_pages(client: Client) -> None:
    query = "?api-version=2022-09-01-preview"
    short = contract(policies=[], endTime=iso_time(T0 + 200))
    for i in range(3):
        response = await client.put(f"/personalizer/evaluations/e{i}{query}", json=short)
        assert response.status == 200
    again = await client.put(f"/personalizer/evaluations/e0{query}", json=short)
    assert again.status == 200
    clash = await client.put(f"/personalizer/evaluations/e0{query}", json=contract())
    await expect_error(clash, 409, "Conflict")
    await client.app[TRAINER].run_jobs()
    page = await (await client.get(f"/personalizer/evaluations{query}&top=2&skip=0")).json()
    assert [e["id"] for e in page["value"]] == ["e0", "e1"]
    assert "nextLink" not in page
    page = await (await client.get(f"/personalizer/evaluations{query}&maxpagesize=2")).json()
    assert [e["id"] for e in page["value"]] == ["e0", "e1"]
    assert set(page["value"][0]) == {
        "id",
        "name",
        "startTime",
        "endTime",
        "creationTime",
        "status",
        "evaluationType",
    }
    assert page["value"][0]["status"] == "Succeeded"
    following = page["nextLink"]
    assert "skip=2" in following and "api-version" in following
    rest = await (await client.get(following.split(str(client.make_url("")), 1)[-1])).json()
    assert [e["id"] for e in rest["value"]] == ["e2"]
    assert "nextLink" not in rest


async def test_2022_time_series_windows(client: Client) -> None:
    query = "?api-version=2022-09-01-preview"
    await client.put(f"/personalizer/evaluations/ts{query}", json=contract())
    await client.app[TRAINER].run_jobs()
    window = f"&startTime={iso_time(T0)}&endTime={iso_time(T0 + N)}"
    body = await (await client.get(f"/personalizer/evaluations/ts{query}{window}")).json()
    assert body["status"] == "Succeeded"
    series = body["content"]["value"][0]["timeseries"]["data"]
    assert len(series) == 3 and body["content"]["intervalInMinutes"] == 5
    last = series[-1]
    summary = body["content"]["value"][0]["summary"]
    assert last["expectedReward"] == pytest.approx(summary["expectedReward"])
    rolling = await (
        await client.get(f"/personalizer/evaluations/ts{query}{window}&intervalInMinutes=60")
    ).json()
    assert len(rolling["content"]["value"][0]["timeseries"]["data"]) == 1
    for bad in ("&intervalInMinutes=7", "&intervalInMinutes=60&window=Expanding", "&window=Up"):
        response = await client.get(f"/personalizer/evaluations/ts{query}{bad}")
        await expect_error(response, 400, "BadRequest", "InvalidRequest")


async def test_policy_optimization_and_apply(client: Client) -> None:
    body = contract(policies=[], enablePolicyOptimization=True, endTime=iso_time(T0 + 400))
    await client.put("/personalizer/evaluations/opt?api-version=x", json=body)
    result = await finished(client, "/personalizer/evaluations/opt?api-version=x")
    sources = {v["name"]: v["policySource"] for v in result["content"]["value"]}
    assert sources["Hyper1"] == "OfflineExperimentation" and "Hyper12" in sources
    optimal = result["optimalPolicy"]
    assert sources[optimal] in {"Online", "OfflineExperimentation"}
    arguments = next(v["arguments"] for v in result["content"]["value"] if v["name"] == optimal)
    response = await client.post(
        "/personalizer/configurations/applyFromEvaluation?api-version=x",
        json={"evaluationId": "opt", "policyName": optimal},
    )
    assert response.status == 204
    policy = await (await client.get("/v1/configurations/policy")).json()
    assert policy == {"name": optimal, "arguments": arguments}


async def test_apply_errors(client: Client) -> None:
    apply = "/v1/configurations/applyFromEvaluation"
    response = await client.post(apply, json={"evaluationId": "none", "policyName": "x"})
    await expect_error(response, 404, "ResourceNotFound", "EvaluationNotFound")
    await client.put("/v1/evaluations/done", json=contract())
    await client.app[TRAINER].run_jobs()
    response = await client.post(apply, json={"evaluationId": "done", "policyName": "nope"})
    await expect_error(response, 400, "BadRequest", "InvalidRequest")
    response = await client.post(apply, json={"evaluationId": "done", "policyName": "Baseline"})
    await expect_error(response, 400, "BadRequest", "InvalidPolicyConfiguration")
    response = await client.post(apply, json={"evaluationId": "done"})
    await expect_error(response, 400, "BadRequest", "InvalidRequest")
    running = wire.StoredEvaluation(
        id="busy", name="b", start=T0, end=T0 + 1, created=T0, status="Running", policies=[],
        optimize=False,
    )  # fmt: skip
    client.app[SERVICE].store.save_job(
        JobRecord(kind=wire.KIND, id="busy", created_at=T0, data=wire.encode(running))
    )
    response = await client.post(apply, json={"evaluationId": "busy", "policyName": "Online"})
    await expect_error(response, 400, "BadRequest", "OperationNotAllowed")


BAD_CONTRACTS: list[tuple[str, Any, str]] = [
    ("reversed-window", contract(startTime=iso_time(T0 + 10), endTime=iso_time(T0)),
     "InvalidEvaluationContract"),
    ("bad-time", contract(startTime="yesterday"), "InvalidEvaluationContract"),
    ("missing-name", {k: v for k, v in contract().items() if k != "name"},
     "InvalidEvaluationContract"),
    ("not-json", "{", "InvalidEvaluationContract"),
    ("duplicate-names", contract(policies=[CUSTOM, CUSTOM]), "DuplicateCustomPolicyNames"),
    ("reserved-name", contract(policies=[{**CUSTOM, "name": "Online"}]),
     "DuplicateCustomPolicyNames"),
    ("bad-arguments", contract(policies=[{"name": "x", "arguments": "--cb_explore_adf -d f"}]),
     "InvalidPolicyConfiguration"),
    ("no-logs", contract(startTime=iso_time(T0 - 1000), endTime=iso_time(T0 - 10)),
     "NoLogsExistInDateRange"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "body", "inner"), BAD_CONTRACTS, ids=[b[0] for b in BAD_CONTRACTS]
)
async def test_bad_evaluations_are_400(client: Client, case: str, body: Any, inner: str) -> None:
    if isinstance(body, str):
        response = await client.post("/v1/evaluations", data=body)
    else:
        response = await client.post("/v1/evaluations", json=body)
    await expect_error(response, 400, "BadRequest", inner)
    response = await client.put("/personalizer/evaluations/x?api-version=x", json=body)
    await expect_error(response, 400, "BadRequest", inner)
    assert await (await client.get("/v1/evaluations")).json() == []


async def test_unknown_evaluation_is_404(client: Client) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, "/personalizer/evaluations/none?api-version=x")
        await expect_error(response, 404, "ResourceNotFound", "EvaluationNotFound")


async def test_an_evaluation_left_running_by_a_stopped_trainer_is_run_again(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    db = tmp_path / "restart.db"
    store = SQLiteStore(db)
    running = wire.StoredEvaluation(
        id="r", name="r", start=T0, end=T0 + 1, created=T0, status="Running", policies=[],
        optimize=False, online=("default", DEFAULT_ARGUMENTS),
    )  # fmt: skip
    store.save_job(JobRecord(kind=wire.KIND, id="r", created_at=T0, data=wire.encode(running)))
    store.close()
    client = await aiohttp_client(create_app(Settings(db=str(db))))
    await client.app[TRAINER].run_jobs()
    body = await (await client.get("/personalizer/evaluations/r?api-version=x")).json()
    # Run again (not marked failed by the restart): it finds no logged event in its window.
    assert (body["status"], body["description"]) == ("Failed", "no events in the window")


# -- feature importances ---------------------------------------------------------------------


async def test_feature_importance_lifecycle(client: Client) -> None:
    query = "?api-version=2022-09-01-preview"
    body = {"name": "fi", "startTime": iso_time(T0), "endTime": iso_time(T0 + 600)}
    response = await client.put(f"/personalizer/featureImportances/fi1{query}", json=body)
    assert response.status == 200
    assert (
        await client.put(f"/personalizer/featureImportances/fi1{query}", json=body)
    ).status == 200
    clash = await client.put(
        f"/personalizer/featureImportances/fi1{query}", json={**body, "name": "other"}
    )
    await expect_error(clash, 409, "Conflict")
    result = await finished(client, f"/personalizer/featureImportances/fi1{query}")
    assert result["status"] == "Succeeded"
    scores = result["featureScores"]
    singles = [s for s in scores if s["kind"] == "feature"]
    assert {s["name"] for s in singles} == {"device.mobile", "item.id", "user.kind"}
    assert {(s["namespace"], s["featureName"]) for s in singles} == {
        ("device", "mobile"),
        ("item", "id"),
        ("user", "kind"),
    }
    assert len(scores) == len(singles) + 3  # the pairs of the three features
    assert scores[0]["score"] == 100.0
    assert set(result["stability"]) == {"rankCorrelation", "topKOverlap", "k", "halfEvents"}
    assert [s["score"] for s in scores] == sorted((s["score"] for s in scores), reverse=True)
    listed = await (await client.get(f"/personalizer/featureImportances{query}&top=1")).json()
    assert [i["id"] for i in listed["value"]] == ["fi1"]
    response = await client.delete(f"/personalizer/featureImportances/fi1{query}")
    assert response.status == 204
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/personalizer/featureImportances/fi1{query}")
        await expect_error(response, 404, "ResourceNotFound")


@pytest.mark.parametrize(
    ("case", "body", "inner"),
    [
        ("reversed", {"name": "x", "startTime": iso_time(T0 + 5), "endTime": iso_time(T0)},
         "InvalidEvaluationContract"),
        ("missing-end", {"name": "x", "startTime": iso_time(T0)}, "InvalidEvaluationContract"),
        ("no-logs", {"name": "x", "startTime": iso_time(T0 - 99), "endTime": iso_time(T0 - 9)},
         "NoLogsExistInDateRange"),
    ],
)  # fmt: skip
async def test_bad_feature_importances_are_400(
    client: Client, case: str, body: dict[str, Any], inner: str
) -> None:
    response = await client.put("/personalizer/featureImportances/x?api-version=x", json=body)
    await expect_error(response, 400, "BadRequest", inner)


async def test_bad_ids_and_paging_parameters_are_400(client: Client) -> None:
    response = await client.put(
        f"/personalizer/evaluations/{'x' * 257}?api-version=x", json=contract()
    )
    await expect_error(response, 400, "BadRequest", "InvalidEvaluationContract")
    for query in ("skip=-1", "top=many", "maxpagesize=1.5"):
        response = await client.get(f"/personalizer/evaluations?api-version=x&{query}")
        await expect_error(response, 400, "BadRequest", "InvalidRequest")
        response = await client.get(f"/personalizer/featureImportances?api-version=x&{query}")
        await expect_error(response, 400, "BadRequest", "InvalidRequest")


async def test_a_per_namespace_record_still_renders(client: Client) -> None:
    # Jobs scored before features were scored one by one stored per-namespace triples.
    item = wire.StoredImportance(
        id="old",
        name="old",
        start=T0,
        end=T0 + 600,
        created=T0,
        status="Succeeded",
        arguments=DEFAULT_ARGUMENTS,
        epsilon=0.2,
        min_propensity=0.0,
        scores=[("user", 100.0, 0.2)],
    )
    client.app[SERVICE].store.save_job(wire.importance_record(item))
    response = await client.get("/personalizer/featureImportances/old?api-version=x")
    body = await response.json()
    assert body["featureScores"] == [
        {"namespace": "user", "featureName": "*", "score": 100.0, "drop": 0.2}
    ]
    assert "stability" not in body


async def test_a_feature_importance_scores_at_most_the_bound_of_features(client: Client) -> None:
    wide = {"wide": {f"f{i:02d}": f"v{i % 3}" for i in range(job_work.MAX_FEATURES + 2)}}
    start = T0 + 10 * N
    events = [
        joined(decision(f"wide{i}", at=start + i, context=(wide,), k=2), float(i % 2))
        for i in range(40)
    ]
    client.app[SERVICE].store.import_joined(events)
    body = {"name": "w", "startTime": iso_time(start), "endTime": iso_time(start + 40)}
    response = await client.put("/personalizer/featureImportances/w?api-version=x", json=body)
    assert response.status == 200
    result = await finished(client, "/personalizer/featureImportances/w?api-version=x")
    assert result["status"] == "Succeeded", result["description"]
    singles = [s for s in result["featureScores"] if s["kind"] == "feature"]
    assert len(singles) == job_work.MAX_FEATURES
    found = job_work.MAX_FEATURES + 3  # and item.id
    assert result["description"].startswith(
        f"{job_work.MAX_FEATURES} features (of {found}; the first {job_work.MAX_FEATURES} by name)"
    )
    assert result["stability"]["halfEvents"] == [20, 20]
