"""The blocking client against a live banditd: every operation, its typed answer, and the
error bodies it turns into :class:`ClientError`."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from types import GeneratorType

import pytest

from bandit.config import LearningMode
from bandit.events import PolicySettings
from server.client import Client, ClientError, RetryPolicy
from tests.server.client.conftest import ADMIN_KEY, CLIENT_KEY, SHORT, Live, rank_request

JOIN_TIMEOUT = 30.0
"""Seconds events may take to be joined and learned (the window is 1 s)."""


def wait_for(client: Client, what: str, check: object, timeout: float = JOIN_TIMEOUT) -> None:
    """Poll the loop status until ``check(status)`` holds (bounded in time)."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check(client.loop_status()):
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}: {client.loop_status().raw}")


def test_rank_reward_activate_round_trip(live: Live) -> None:
    with Client(live.url, key=CLIENT_KEY) as client:
        answer = client.rank(rank_request("sync-rt-1", user=1))
        assert answer.event_id == "sync-rt-1"
        assert answer.ranking[0].id == answer.reward_action_id
        assert sorted(a.id for a in answer.ranking) == ["article-0", "article-1", "article-2"]
        assert math.isclose(sum(answer.probabilities().values()), 1.0, abs_tol=1e-6)
        client.reward("sync-rt-1", 1.0)
        deferred = client.rank(rank_request("sync-rt-2", defer=True))
        client.activate(deferred.event_id)
        client.activate(deferred.event_id)  # idempotent


def test_rank_without_event_id_gets_one_and_a_repeat_returns_the_stored_decision(
    live: Live,
) -> None:
    with Client(live.url, key=CLIENT_KEY) as client:
        first = client.rank(rank_request(""))
        assert len(first.event_id) == 32 and int(first.event_id, 16) >= 0
        again = client.rank(rank_request(first.event_id))
        assert again == first


def test_error_bodies_become_client_errors(live: Live) -> None:
    with Client(live.url, key=CLIENT_KEY) as client:
        with pytest.raises(ClientError) as missing:
            client.reward("sync-never-ranked", 1.0)
        assert missing.value.status == 404
        assert missing.value.code == "ResourceNotFound"
        assert missing.value.inner_code == "ResourceNotFound"
        assert missing.value.message and missing.value.method == "POST"
        assert missing.value.path == "/v1/events/sync-never-ranked/reward"

        with pytest.raises(ClientError) as empty:
            client.rank(replace(rank_request("sync-err-1"), actions=()))
        assert (empty.value.status, empty.value.code) == (400, "BadRequest")
        assert empty.value.inner_code == "InvalidRankRequest"
        assert empty.value.target == "actions"

        client.rank(rank_request("sync-err-2"))
        with pytest.raises(ClientError) as conflict:
            client.rank(rank_request("sync-err-2", user=2))
        assert (conflict.value.status, conflict.value.code) == (409, "Conflict")
        assert conflict.value.inner_code == "EventIdConflict"

        with pytest.raises(ClientError) as forbidden:
            client.get_configuration()
        assert (forbidden.value.status, forbidden.value.inner_code) == (403, "InvalidApiAccess")

    with Client(live.url) as anonymous, pytest.raises(ClientError) as denied:
        anonymous.rank(rank_request("sync-err-3"))
    assert (denied.value.status, denied.value.code) == (401, "Unauthorized")


def test_an_unanswered_call_is_a_client_error_without_status() -> None:
    retry = RetryPolicy(attempts=2, backoff=0.01)
    with (
        Client("http://127.0.0.1:9", timeout=2.0, retry=retry) as client,
        pytest.raises(ClientError) as failed,
    ):
        client.health()
    assert failed.value.status is None and failed.value.code == "ConnectionFailed"


def test_configuration_and_policy_round_trip(live: Live) -> None:
    with Client(live.url, key=ADMIN_KEY) as admin:
        assert admin.get_configuration() == SHORT
        changed = admin.put_configuration(SHORT.replace(log_retention_days=30))
        assert changed.log_retention_days == 30
        assert admin.get_configuration() == changed
        assert admin.put_configuration(SHORT) == SHORT

        default = admin.get_policy()
        assert isinstance(default, PolicySettings) and "--cb_explore_adf" in default.arguments
        custom = PolicySettings(name="custom", arguments=default.arguments + " --power_t 0")
        assert admin.put_policy(custom).arguments == custom.arguments
        assert admin.get_policy().arguments == custom.arguments
        assert admin.delete_policy() == default

        with pytest.raises(ClientError) as bad:
            admin.put_policy(PolicySettings(name="x", arguments="--no_such_flag"))
        assert (bad.value.status, bad.value.inner_code) == (400, "InvalidPolicyConfiguration")

        watch = admin.get_loop_configuration()
        assert isinstance(watch["window"], int) and "guardrailEnabled" in watch
        changed_watch = admin.put_loop_configuration({"window": watch["window"] + 100})
        assert changed_watch["window"] == watch["window"] + 100
        assert admin.get_loop_configuration() == changed_watch


def test_status_models_export_and_logs(live: Live) -> None:
    with Client(live.url, key=CLIENT_KEY) as client, Client(live.url, key=ADMIN_KEY) as admin:
        before = admin.loop_status()
        ids = [f"sync-export-{i}" for i in range(12)]
        for i, event_id in enumerate(ids):
            answer = client.rank(rank_request(event_id, user=i % 3))
            client.reward(event_id, 1.0 if answer.reward_action_id.endswith(str(i % 3)) else 0.0)
        wait_for(
            admin,
            "the events to be joined and learned",
            lambda s: (
                s.counts.joined >= before.counts.joined + 12
                and s.learner.learned_count >= before.learner.learned_count + 12
            ),
        )
        status = admin.loop_status(history=True)
        assert status.learning_mode == LearningMode.ONLINE.value
        assert status.counts.decisions >= 12 and status.counts.rewards >= 12
        assert "history" in status.raw and "history" not in admin.loop_status().raw

        lines = admin.export_logs()
        assert isinstance(lines, GeneratorType)  # streamed, not read whole
        exported = [json.loads(line) for line in lines]
        assert set(ids) <= {e["EventId"] for e in exported}
        assert all("_label_cost" in e and e["c"]["_multi"] for e in exported)

        health = admin.health()
        assert health.ok and health.reason is None and health.model_version >= 1

        wait_for(admin, "a published model", lambda s: s.model_version > before.model_version)
        models = admin.list_models()
        assert models.serving_version in {m.version for m in models.models}
        oldest = min(models.models, key=lambda m: m.version)
        rolled = admin.activate_model(oldest.version)
        assert rolled.restored_from == oldest.version and rolled.version > models.serving_version

        archive = admin.get_model(signed=True)
        assert admin.get_model() and archive
        admin.put_model(archive)
        properties = admin.model_properties()
        assert properties.last_modified_time is not None

        logs = admin.logs_properties()
        assert logs.start is not None and logs.end is not None and logs.start <= logs.end
        admin.delete_logs()

        with pytest.raises(ClientError) as missing:
            admin.activate_model(10**9)
        assert (missing.value.status, missing.value.code) == (404, "ResourceNotFound")

        admin.delete_model()
