"""The asyncio client against a live banditd: the Personalizer surface, errors, the admin
operations and a streamed export."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator

import pytest

from bandit.events import PolicySettings
from server.client import AsyncClient, ClientError
from tests.server.client.conftest import ADMIN_KEY, CLIENT_KEY, SHORT, Live, rank_request


async def test_async_rank_reward_activate(live: Live) -> None:
    async with AsyncClient(live.url, key=CLIENT_KEY) as client:
        answers = await asyncio.gather(
            *(client.rank(rank_request(f"aio-rt-{i}", user=i % 3)) for i in range(8))
        )
        assert [a.event_id for a in answers] == [f"aio-rt-{i}" for i in range(8)]
        for answer in answers:
            assert answer.ranking[0].id == answer.reward_action_id
            assert math.isclose(sum(answer.probabilities().values()), 1.0, abs_tol=1e-6)
        await asyncio.gather(*(client.reward(a.event_id, 0.5) for a in answers))
        made = await client.rank(rank_request("", defer=True))
        assert len(made.event_id) == 32
        await client.activate(made.event_id)
        assert await client.rank(rank_request(made.event_id, defer=True)) == made


async def test_async_errors_carry_the_body(live: Live) -> None:
    async with AsyncClient(live.url, key=CLIENT_KEY) as client:
        with pytest.raises(ClientError) as missing:
            await client.activate("aio-never-ranked")
        assert (missing.value.status, missing.value.code) == (404, "ResourceNotFound")
        await client.rank(rank_request("aio-err-1"))
        with pytest.raises(ClientError) as out_of_range:
            await client.reward("aio-err-1", 5.0)
        assert (out_of_range.value.status, out_of_range.value.code) == (400, "BadRequest")
        assert out_of_range.value.inner_code and out_of_range.value.message
        with pytest.raises(ClientError) as forbidden:
            await client.loop_status()
        assert (forbidden.value.status, forbidden.value.code) == (403, "Forbidden")


async def test_async_admin_operations(live: Live) -> None:
    async with AsyncClient(live.url, key=ADMIN_KEY) as admin:
        assert await admin.get_configuration() == SHORT
        policy = await admin.get_policy()
        assert isinstance(policy, PolicySettings)
        assert (await admin.health()).ok
        status = await admin.loop_status()
        assert status.model_version >= 1 and status.raw["modelVersion"] == status.model_version
        models = await admin.list_models()
        assert models.serving_version >= 1
        assert (await admin.model_properties()).last_modified_time is not None
        await admin.logs_properties()


async def test_async_export_streams_lines(live: Live) -> None:
    async with AsyncClient(live.url, key=CLIENT_KEY) as client:
        for i in range(5):
            await client.rank(rank_request(f"aio-export-{i}"))
            await client.reward(f"aio-export-{i}", 1.0)
    async with AsyncClient(live.url, key=ADMIN_KEY) as admin:
        found: set[str] = set()
        for _ in range(150):  # the window is 1 s; 30 s at most
            lines = admin.export_logs()
            assert isinstance(lines, AsyncIterator)
            found = {json.loads(line)["EventId"] async for line in lines} & {
                f"aio-export-{i}" for i in range(5)
            }
            if len(found) == 5:
                break
            await asyncio.sleep(0.2)
        assert len(found) == 5
