"""Retries against a scripted aiohttp server on loopback: 503 and 429 are retried, honouring
``Retry-After``; one ``Idempotency-Key`` is sent on every try of a reward; other errors and
exhausted budgets end the call with the last answer's error."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from bandit.events import Action, RankRequest
from server.client import AsyncClient, Client, ClientError, RetryPolicy
from tests.server.client.conftest import NO_CONTENT, RANKED, Script, unavailable

Serve = Callable[[Script], str]
FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05, max_total=20.0)
REQUEST = RankRequest(event_id="", context_features=(), actions=(Action(id="a"), Action(id="b")))


def too_many(retry_after: str) -> tuple[int, bytes, dict[str, str]]:
    return (
        429,
        b'{"error":{"code":"TooManyRequests","message":"slow down."}}',
        {"Retry-After": retry_after},
    )


def test_sync_reward_retries_503_honouring_retry_after_with_one_idempotency_key(
    scripted: Serve,
) -> None:
    script = Script(answers=[unavailable("1"), too_many("0"), NO_CONTENT])
    with Client(scripted(script), retry=FAST, rng=random.Random(0)) as client:
        client.reward("ev/1", 0.5)
    assert [s.path for s in script.seen] == ["/v1/events/ev%2F1/reward"] * 3
    keys = {s.headers["Idempotency-Key"] for s in script.seen}
    assert len(keys) == 1 and len(keys.pop()) == 32
    # Retry-After: 1 is honoured (backoff alone would wait ≤ 0.01 s).
    assert script.seen[1].at - script.seen[0].at >= 0.95


def test_sync_caller_key_is_kept_and_rank_gets_one_event_id_for_all_tries(
    scripted: Serve,
) -> None:
    script = Script(answers=[unavailable("0"), NO_CONTENT])
    with Client(scripted(script), retry=FAST) as client:
        client.activate("e", idempotency_key="mine")
    assert [s.headers["Idempotency-Key"] for s in script.seen] == ["mine", "mine"]

    ranks = Script(answers=[unavailable("0"), unavailable("0"), RANKED])
    with Client(scripted(ranks), retry=FAST) as client:
        assert client.rank(REQUEST).reward_action_id == "a"
    bodies = [s.body for s in ranks.seen]
    assert len(bodies) == 3 and len(set(bodies)) == 1 and b'"eventId":""' not in bodies[0]


def test_sync_gives_up_after_its_attempts_with_the_last_error(scripted: Serve) -> None:
    script = Script(answers=[unavailable("0")])
    with Client(scripted(script), retry=FAST) as client, pytest.raises(ClientError) as failed:
        client.reward("e", 1.0)
    assert len(script.seen) == FAST.attempts
    assert (failed.value.status, failed.value.code) == (503, "ServiceUnavailable")
    assert failed.value.retry_after == 0.0


def test_a_retry_after_beyond_the_time_budget_ends_the_call_at_once(scripted: Serve) -> None:
    script = Script(answers=[unavailable("120")])
    with Client(scripted(script), retry=FAST) as client, pytest.raises(ClientError) as failed:
        client.reward("e", 1.0)
    assert len(script.seen) == 1 and failed.value.retry_after == 120.0


def test_other_errors_are_not_retried(scripted: Serve) -> None:
    body = (
        b'{"error":{"code":"BadRequest","message":"no.",'
        b'"innerError":{"code":"InvalidRewardRequest"}}}'
    )
    script = Script(answers=[(400, body, {"x-ms-error-code": "InvalidRewardRequest"})])
    with Client(scripted(script), retry=FAST) as client, pytest.raises(ClientError) as failed:
        client.reward("e", 1.0)
    assert len(script.seen) == 1
    assert (failed.value.code, failed.value.inner_code) == ("BadRequest", "InvalidRewardRequest")


def test_a_body_that_is_not_personalizers_is_quoted(scripted: Serve) -> None:
    script = Script(answers=[(502, b"<html>bad gateway</html>", {})])
    with Client(scripted(script), retry=FAST) as client, pytest.raises(ClientError) as failed:
        client.get_policy()
    assert (failed.value.status, failed.value.code) == (502, "HttpError")
    assert "bad gateway" in failed.value.message


async def test_async_retries_503_and_429_with_one_idempotency_key(scripted: Serve) -> None:
    script = Script(answers=[unavailable("1"), too_many("0"), NO_CONTENT])
    async with AsyncClient(scripted(script), retry=FAST, rng=random.Random(0)) as client:
        await client.reward("ev 1", 1.0)
    assert [s.path for s in script.seen] == ["/v1/events/ev%201/reward"] * 3
    assert len({s.headers["Idempotency-Key"] for s in script.seen}) == 1
    assert script.seen[1].at - script.seen[0].at >= 0.95

    ranks = Script(answers=[unavailable("0"), RANKED])
    async with AsyncClient(scripted(ranks), retry=FAST) as client:
        answer = await client.rank(REQUEST)
    assert answer.probabilities() == {"a": 0.9, "b": 0.1}
    assert len({s.body for s in ranks.seen}) == 1 and len(ranks.seen) == 2


async def test_async_gives_up_after_its_attempts(scripted: Serve) -> None:
    script = Script(answers=[too_many("0")])
    async with AsyncClient(scripted(script), retry=FAST) as client:
        with pytest.raises(ClientError) as failed:
            await client.activate("e")
    assert len(script.seen) == FAST.attempts and failed.value.status == 429


async def test_async_connection_failures_are_retried_only_when_safe() -> None:
    retry = RetryPolicy(attempts=3, backoff=0.01)
    async with AsyncClient("http://127.0.0.1:9", timeout=2.0, retry=retry) as client:
        with pytest.raises(ClientError) as failed:
            await client.activate_model(1)
    assert failed.value.status is None and failed.value.code == "ConnectionFailed"


def test_an_answer_that_is_not_banditds_is_a_client_error(scripted: Serve) -> None:
    script = Script(answers=[(201, b'{"ranked": []}', {"Content-Type": "application/json"})])
    with Client(scripted(script), retry=FAST) as client, pytest.raises(ClientError) as failed:
        client.rank(REQUEST)
    assert (failed.value.status, failed.value.code) == (201, "InvalidResponse")


def test_the_sync_client_keeps_its_connection_alive_across_calls_and_retries(
    scripted: Serve,
) -> None:
    script = Script(answers=[unavailable("0"), NO_CONTENT])
    with Client(scripted(script), retry=FAST) as client:
        for i in range(4):
            client.reward(f"e{i}", 1.0)
    assert len(script.seen) == 5
    assert len({s.peer for s in script.seen}) == 1 and script.seen[0].peer is not None
