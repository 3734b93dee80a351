"""Both official Personalizer SDKs against a real ``banditd serve`` on a loopback port.

``azure-cognitiveservices-personalizer`` (legacy, msrest, ``/personalizer/v1.0``) covers rank,
reward and activate; ``azure-ai-personalizer`` (azure-core, ``/personalizer?api-version=
2022-09-01-preview``) covers those and every ``PersonalizerAdministrationClient`` operation.
Errors must surface as each SDK's own exception types with Personalizer's codes.
"""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.cognitiveservices.personalizer import PersonalizerClient as LegacyClient
from azure.cognitiveservices.personalizer.models import (
    ErrorResponseException,
    RankableAction,
    RankRequest,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from msrest.authentication import CognitiveServicesCredentials
from msrest.exceptions import HttpOperationError

from stores.sqlite.store import SQLiteStore
from tests.server import world

LOGGED = 400
CLIENT_KEY = "client-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Server:
    endpoint: str
    db: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(endpoint: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"banditd exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{endpoint}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("banditd did not become healthy")


@contextmanager
def running_server(directory: Path) -> Iterator[Server]:
    """A ``banditd serve`` on a fresh file in ``directory`` holding an hour of joined logs (so
    evaluations have events to replay), stopped on exit."""
    db = directory / "banditd.db"
    store = SQLiteStore(db)
    store.import_joined(world.draw(LOGGED, seed=5, start=time.time() - 3600, step=3).events)
    store.close()
    port = _free_port()
    env = {**os.environ, "BANDITD_CLIENT_KEY": CLIENT_KEY, "BANDITD_ADMIN_KEY": ADMIN_KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "server.entry.cli", "serve", "--db", str(db), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(endpoint, process)
        yield Server(endpoint=endpoint, db=db)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: tests that change its state go through :func:`admin`, which
    puts the state back, and a test that deletes its logs has a server of its own."""
    with running_server(tmp_path_factory.mktemp("sdk")) as shared:
        yield shared


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[PersonalizerClient]:
    with PersonalizerClient(server.endpoint, AzureKeyCredential(CLIENT_KEY)) as made:
        yield made


@dataclass(frozen=True)
class AdminState:
    """What the shared server's administration started with."""

    client: PersonalizerAdministrationClient
    configuration: dict[str, Any]
    policy: dict[str, Any]


@pytest.fixture(scope="module")
def admin_state(server: Server) -> Iterator[AdminState]:
    with PersonalizerAdministrationClient(server.endpoint, AzureKeyCredential(ADMIN_KEY)) as made:
        yield AdminState(
            client=made,
            configuration=dict(made.get_service_configuration()),
            policy=dict(made.get_policy()),
        )


@pytest.fixture
def admin(admin_state: AdminState) -> Iterator[PersonalizerAdministrationClient]:
    """The shared server's administration client; after the test the server's configuration,
    policy, evaluations and feature importances are as they were, so no test depends on what
    another did before it."""
    made = admin_state.client
    yield made
    if dict(made.get_service_configuration()) != admin_state.configuration:
        made.update_service_configuration(admin_state.configuration)
    if dict(made.get_policy()) != admin_state.policy:
        made.reset_policy()
    for evaluation in list(made.list_evaluations()):
        made.delete_evaluation(evaluation["id"])
    for importance in list(made.list_feature_importances()):
        made.delete_feature_importance(importance["id"])


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for a test that destroys what the shared one holds."""
    with running_server(tmp_path) as made:
        yield made


@pytest.fixture(scope="module")
def legacy(server: Server) -> LegacyClient:
    return LegacyClient(server.endpoint, CognitiveServicesCredentials(CLIENT_KEY))


def rank_dict(event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "contextFeatures": [{"user": {"tier": "gold"}}, {"time": "morning"}],
        "actions": [
            {"id": "news", "features": [{"topic": "politics", "length": 3}]},
            {"id": "sports", "features": [{"topic": "football"}]},
            {"id": "music", "features": [{"topic": "jazz", "tags": [1, 2.5]}]},
        ],
        "eventId": event_id,
        **extra,
    }


def assert_code(error: HttpResponseError, status: int, code: str) -> None:
    assert error.status_code == status
    assert error.error is not None
    assert error.error.code == code


# -- new SDK: rank, reward, activate ---------------------------------------------------------


def test_new_sdk_rank_with_context_excluded_actions_and_reward(client: PersonalizerClient) -> None:
    response = client.rank(rank_dict("new-1", excludedActions=["sports"]))
    assert response["eventId"] == "new-1"
    ranking = {r["id"]: r["probability"] for r in response["ranking"]}
    assert set(ranking) == {"news", "sports", "music"}
    assert ranking["sports"] == 0.0
    assert response["rewardActionId"] in {"news", "music"}
    assert response["ranking"][0]["id"] == response["rewardActionId"]
    assert client.reward("new-1", {"value": 0.5}) is None


def test_new_sdk_deferred_activation(client: PersonalizerClient) -> None:
    response = client.rank(rank_dict("new-deferred 1/x", deferActivation=True))
    assert response["eventId"] == "new-deferred 1/x"
    assert client.activate("new-deferred 1/x") is None
    assert client.activate("new-deferred 1/x") is None  # idempotent
    assert client.reward("new-deferred 1/x", {"value": 1.0}) is None


def test_new_sdk_generates_event_id(client: PersonalizerClient) -> None:
    response = client.rank({"actions": [{"id": "a", "features": [{"x": 1}]}]})
    assert response["eventId"]
    assert response["rewardActionId"] == "a"


def test_new_sdk_errors(client: PersonalizerClient, server: Server) -> None:
    with pytest.raises(ResourceNotFoundError) as not_found:
        client.reward("no-such-event", {"value": 1.0})
    assert_code(not_found.value, 404, "ResourceNotFound")
    with pytest.raises(ResourceNotFoundError):
        client.activate("no-such-event")
    client.rank(rank_dict("new-errors"))
    with pytest.raises(HttpResponseError) as bad_reward:
        client.reward("new-errors", {"value": 2.0})
    assert_code(bad_reward.value, 400, "BadRequest")
    assert "InvalidRewardRequest" in str(bad_reward.value.response.headers["x-ms-error-code"])
    with pytest.raises(HttpResponseError) as bad_rank:
        client.rank({"actions": []})
    assert_code(bad_rank.value, 400, "BadRequest")
    with (
        PersonalizerClient(server.endpoint, AzureKeyCredential("wrong")) as wrong,
        pytest.raises(ClientAuthenticationError) as denied,
    ):
        wrong.rank(rank_dict("denied"))
    assert_code(denied.value, 401, "Unauthorized")


def test_new_sdk_multi_slot_is_refused_as_on_a_single_slot_loop(
    client: PersonalizerClient,
) -> None:
    body = {
        "actions": [{"id": "a", "features": [{"x": 1}]}],
        "slots": [{"id": "s1", "baselineAction": "a"}],
    }
    calls = (
        lambda: client.rank_multi_slot(body),
        lambda: client.reward_multi_slot("e", {"reward": [{"slotId": "s1", "value": 1.0}]}),
        lambda: client.activate_multi_slot("e"),
    )
    for call in calls:
        with pytest.raises(HttpResponseError) as refused:
            call()
        assert_code(refused.value, 400, "BadRequest")
        assert refused.value.response.headers["x-ms-error-code"] == "InvalidMultiSlotApiAccess"


# -- legacy SDK: rank, reward, activate ------------------------------------------------------


def legacy_request(event_id: str, **extra: Any) -> RankRequest:
    return RankRequest(
        context_features=[{"user": {"tier": "gold"}}, {"time": "morning"}],
        actions=[
            RankableAction(id="news", features=[{"topic": "politics"}]),
            RankableAction(id="sports", features=[{"topic": "football"}]),
        ],
        event_id=event_id,
        **extra,
    )


def test_legacy_sdk_rank_reward_activate(legacy: LegacyClient) -> None:
    response = legacy.rank(legacy_request("old-1", excluded_actions=["news"]))
    assert response.event_id == "old-1"
    assert response.reward_action_id == "sports"
    assert {r.id: r.probability for r in response.ranking} == {"sports": 1.0, "news": 0.0}
    assert legacy.events.reward("old-1", 0.25) is None
    deferred = legacy.rank(legacy_request("old-deferred", defer_activation=True))
    assert deferred.event_id == "old-deferred"
    assert legacy.events.activate("old-deferred") is None


def test_both_sdks_rank_with_inference_explanations_on(
    admin: PersonalizerAdministrationClient, client: PersonalizerClient, legacy: LegacyClient
) -> None:
    config = dict(admin.get_service_configuration())
    assert config["isInferenceExplainabilityEnabled"] is False
    changed = admin.update_service_configuration(
        {**config, "isInferenceExplainabilityEnabled": True}
    )
    assert changed["isInferenceExplainabilityEnabled"] is True
    response = client.rank(rank_dict("explain-new"))
    [explanation] = response["inferenceExplanation"]
    assert explanation["id"] == response["rewardActionId"]
    assert {"user.tier", "time", "topic", "(constant)"} <= {
        f["name"] for f in explanation["features"]
    }
    # The legacy SDK ignores the field it does not know and reads the rest as always.
    old = legacy.rank(legacy_request("explain-old"))
    assert old.event_id == "explain-old"
    assert old.ranking[0].id == old.reward_action_id


def test_legacy_sdk_errors(legacy: LegacyClient, server: Server) -> None:
    with pytest.raises(ErrorResponseException) as bad_rank:
        legacy.rank(RankRequest(actions=[]))
    assert bad_rank.value.response.status_code == 400
    assert bad_rank.value.error.error.code == "BadRequest"
    assert bad_rank.value.error.error.message
    with pytest.raises(HttpOperationError) as not_found:
        legacy.events.reward("no-such-event", 1.0)
    assert not_found.value.response.status_code == 404
    with pytest.raises(HttpOperationError) as not_found:
        legacy.events.activate("no-such-event")
    assert not_found.value.response.status_code == 404
    wrong = LegacyClient(server.endpoint, CognitiveServicesCredentials("wrong"))
    with pytest.raises(ErrorResponseException) as denied:
        wrong.rank(legacy_request("old-denied"))
    assert denied.value.response.status_code == 401
    assert denied.value.error.error.code == "Unauthorized"


# -- new SDK: administration -----------------------------------------------------------------


def test_admin_service_configuration(admin: PersonalizerAdministrationClient) -> None:
    config = admin.get_service_configuration()
    assert config["rewardWaitTime"] == "PT10M"
    config["explorationPercentage"] = 0.3
    config["modelRetrainDays"] = 1
    updated = admin.update_service_configuration(config)
    assert updated["explorationPercentage"] == 0.3
    assert admin.get_service_configuration()["explorationPercentage"] == 0.3
    updated["learningMode"] = "Apprentice"
    assert admin.update_service_configuration(updated)["learningMode"] == "Apprentice"
    updated["learningMode"] = "Online"
    assert admin.update_service_configuration(updated)["learningMode"] == "Online"
    bad = {**updated, "learningMode": "Apprentice", "defaultReward": 0.5}
    with pytest.raises(HttpResponseError) as error:
        admin.update_service_configuration(bad)
    assert_code(error.value, 400, "BadRequest")
    assert error.value.response.headers["x-ms-error-code"] == (
        "InvalidLearningModeServiceConfiguration"
    )


def test_admin_policy(admin: PersonalizerAdministrationClient) -> None:
    default = admin.get_policy()
    assert "--cb_explore_adf" in default["arguments"]
    custom = {"name": "sdk", "arguments": "--cb_explore_adf --epsilon 0.1 -l 0.01 -q ::"}
    assert admin.update_policy(custom) == custom
    assert admin.get_policy() == custom
    with pytest.raises(HttpResponseError) as error:
        admin.update_policy({"name": "bad", "arguments": "--cb_explore_adf -d /etc/passwd"})
    assert_code(error.value, 400, "BadRequest")
    assert error.value.response.headers["x-ms-error-code"] == "InvalidPolicyConfiguration"
    assert admin.reset_policy() == default


def test_admin_model(admin: PersonalizerAdministrationClient) -> None:
    raw = b"".join(admin.export_model())
    assert len(raw) > 0
    signed = b"".join(admin.export_model(signed=True))
    assert "signature" in zipfile.ZipFile(io.BytesIO(signed)).namelist()
    assert admin.import_model(io.BytesIO(signed)) is None
    assert admin.reset_model() is None
    properties = admin.get_model_properties()
    assert properties["creationTime"] and properties["lastModifiedTime"]
    with pytest.raises(HttpResponseError) as error:
        admin.import_model(io.BytesIO(raw))
    assert_code(error.value, 400, "BadRequest")
    assert error.value.response.headers["x-ms-error-code"] == "InvalidModelImportFormat"


def wait_for(admin: PersonalizerAdministrationClient, evaluation_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    for _ in range(600):
        body = admin.get_evaluation(
            evaluation_id, start_time=now - timedelta(hours=2), end_time=now
        )
        if body["status"] != "Running":
            return dict(body)
        time.sleep(0.05)
    raise AssertionError("the evaluation did not finish")


def test_admin_evaluations(admin: PersonalizerAdministrationClient) -> None:
    now = datetime.now(UTC)
    definition = {
        "name": "sdk evaluation",
        "startTime": (now - timedelta(hours=2)).isoformat(),
        "endTime": now.isoformat(),
        "policies": [{"name": "fast", "arguments": "--cb_explore_adf -l 0.05 -q ::"}],
    }
    assert admin.create_evaluation("sdk-eval", definition) is None
    assert admin.create_evaluation("sdk-eval", definition) is None  # a retried PUT
    body = wait_for(admin, "sdk-eval")
    assert body["status"] == "Succeeded"
    values = {v["name"]: v for v in body["content"]["value"]}
    assert set(values) == {"Online", "Baseline", "Random", "fast"}
    low, high = values["Random"]["summary"]["confidenceInterval"]
    assert low <= values["Random"]["summary"]["expectedReward"] <= high
    assert values["Random"]["summary"]["snips"]["numberOfEvents"] == LOGGED
    listed = list(admin.list_evaluations(top=5))
    assert [e["id"] for e in listed] == ["sdk-eval"]
    assert admin.apply_from_evaluation({"evaluationId": "sdk-eval", "policyName": "fast"}) is None
    assert admin.get_policy()["name"] == "fast"
    assert admin.reset_policy()["name"] == "default"
    assert admin.delete_evaluation("sdk-eval") is None
    with pytest.raises(ResourceNotFoundError) as missing:
        admin.get_evaluation("sdk-eval", start_time=now, end_time=now + timedelta(hours=1))
    assert_code(missing.value, 404, "ResourceNotFound")
    assert missing.value.response.headers["x-ms-error-code"] == "EvaluationNotFound"
    with pytest.raises(HttpResponseError) as no_logs:
        admin.create_evaluation(
            "empty", {**definition, "startTime": "2001-01-01T00:00:00Z", "endTime": "2001-01-02"}
        )
    assert_code(no_logs.value, 400, "BadRequest")
    assert no_logs.value.response.headers["x-ms-error-code"] == "NoLogsExistInDateRange"


def test_admin_feature_importances(admin: PersonalizerAdministrationClient) -> None:
    now = datetime.now(UTC)
    definition = {
        "name": "sdk importance",
        "startTime": (now - timedelta(hours=2)).isoformat(),
        "endTime": now.isoformat(),
    }
    assert admin.create_feature_importance("sdk-fi", definition) is None
    for _ in range(600):
        body = admin.get_feature_importance("sdk-fi")
        if body["status"] != "Running":
            break
        time.sleep(0.05)
    assert body["status"] == "Succeeded"
    scores = body["featureScores"]
    features = {s["namespace"] for s in scores if s["kind"] == "feature"}
    assert features == {"device", "item", "user"}
    # The pairs of the three most important features, named by their namespaces joined by ^.
    for pair in (s for s in scores if s["kind"] == "interaction"):
        assert set(pair["namespace"].split("^")) <= features, pair
    assert max(s["score"] for s in body["featureScores"]) == 100.0
    assert [f["id"] for f in admin.list_feature_importances(top=10)] == ["sdk-fi"]
    assert admin.delete_feature_importance("sdk-fi") is None
    with pytest.raises(ResourceNotFoundError):
        admin.get_feature_importance("sdk-fi")


def test_admin_logs(own_server: Server) -> None:
    # Deleting the logs cannot be put back: the evaluation tests need the shared server's.
    with PersonalizerAdministrationClient(
        own_server.endpoint, AzureKeyCredential(ADMIN_KEY)
    ) as admin:
        properties = admin.get_log_properties()
        assert properties["dateRange"]["from"] < properties["dateRange"]["to"]
        assert admin.delete_logs() is None
        assert admin.get_log_properties()["dateRange"] == {"from": None, "to": None}


def test_admin_needs_admin_key(server: Server) -> None:
    with (
        PersonalizerAdministrationClient(server.endpoint, AzureKeyCredential("no-such-key")) as a,
        pytest.raises(ClientAuthenticationError) as denied,
    ):
        a.get_policy()
    assert_code(denied.value, 401, "Unauthorized")
    with (
        PersonalizerAdministrationClient(server.endpoint, AzureKeyCredential(CLIENT_KEY)) as a,
        pytest.raises(HttpResponseError) as forbidden,
    ):
        a.get_policy()
    assert_code(forbidden.value, 403, "Forbidden")
    assert forbidden.value.response.headers["x-ms-error-code"] == "InvalidApiAccess"


def _stored_rewards(server: Server, event_id: str) -> list[float]:
    """The rewards stored against exactly ``event_id`` (read from the server's file)."""
    with closing(sqlite3.connect(f"file:{server.db}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT value FROM rewards WHERE event_id = ?", (event_id,))
        return [value for (value,) in rows]


ODD_EVENT_IDS = ["a/b", "x%20y", "q%41", "x y", "é-中", "100%", "a+b?c#d&e=f"]


@pytest.mark.parametrize("event_id", ODD_EVENT_IDS)
def test_new_sdk_event_ids_round_trip(
    client: PersonalizerClient, server: Server, event_id: str
) -> None:
    event_id = "new-" + event_id
    response = client.rank(rank_dict(event_id, deferActivation=True))
    assert response["eventId"] == event_id
    assert client.activate(event_id) is None
    assert client.reward(event_id, {"value": 0.5}) is None
    assert _stored_rewards(server, event_id) == [0.5]


@pytest.mark.parametrize("event_id", ODD_EVENT_IDS)
def test_legacy_sdk_event_ids_round_trip(
    legacy: LegacyClient, server: Server, event_id: str
) -> None:
    event_id = "old-" + event_id
    response = legacy.rank(legacy_request(event_id, defer_activation=True))
    assert response.event_id == event_id
    assert legacy.events.activate(event_id) is None
    assert legacy.events.reward(event_id, 0.25) is None
    assert _stored_rewards(server, event_id) == [0.25]
