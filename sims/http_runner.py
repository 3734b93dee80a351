"""The HTTP runner: drives a live banditd over real rank, reward and activate calls.

The scenario's world is the same as the in-process runner's (rounds are pure functions of the
seed), so the two runners' :class:`sims.result.RunResult` can be compared directly. Virtual
seconds become real seconds times ``time_scale``: decisions are paced every
``interval·time_scale`` and each reward is sent ``delay·time_scale`` after its decision (dropped
ones never). The server's own timing (reward wait, export frequency) is its configuration:
:func:`scaled_config` gives the configuration that matches a scenario at a time scale, and
``configure=True`` PUTs it before the run.

Loops are bounded in count (``scenario.rounds``) and time (``max_seconds``), and only loopback
addresses are accepted.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bandit.config import ServiceConfiguration
from bandit.events import RankRequest
from server.client import AsyncClient, RetryPolicy
from server.client.core import KEY_HEADER, rank_body
from sims.presets import DEFAULT_EXPLORATION
from sims.result import RunResult
from sims.runner import event_prefix
from sims.scenarios import Scenario

__all__ = [
    "KEY_HEADER",
    "check_loopback",
    "request_body",
    "run_http",
    "run_http_async",
    "scaled_config",
]


def check_loopback(base_url: str) -> None:
    """Raise ValueError unless ``base_url`` is an http(s) URL on a loopback address."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{base_url!r} is not an http(s) URL")
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the HTTP runner only targets loopback addresses, not {host!r}")


def request_body(request: RankRequest) -> dict[str, Any]:
    """The Personalizer rank body of a request (what the client sends)."""
    return rank_body(request)


def scaled_config(
    scenario: Scenario, exploration: float = DEFAULT_EXPLORATION, time_scale: float = 1.0
) -> ServiceConfiguration:
    """The server configuration that runs ``scenario`` at ``time_scale`` real s per virtual s.

    Raises:
        InvalidServiceConfiguration: the scaled wait or export frequency is below the minimum.
    """
    config = scenario.config(exploration)
    return config.replace(
        reward_wait_time=config.reward_wait_time * time_scale,
        model_export_frequency=config.model_export_frequency * time_scale,
    )


def run_http(
    scenario: Scenario,
    base_url: str,
    *,
    seed: int,
    policy: str = "server",
    key: str | None = None,
    time_scale: float = 1.0,
    max_seconds: float = 300.0,
    run_id: str = "",
    configure: bool = False,
    exploration: float = DEFAULT_EXPLORATION,
) -> RunResult:
    """Run ``scenario`` for one seed against the banditd at ``base_url`` (e.g. ``http://127.0.0.1:8080``).

    Args:
        scenario: the world and its timing; the server must already run the policy under test.
        base_url: the server's root; requests go to ``{base_url}/v1/...``. Loopback only.
        seed: seeds the world (the server's sampling seed is its own).
        policy: label of the policy the server runs, for the result.
        key: sent as ``Ocp-Apim-Subscription-Key`` when given.
        time_scale: real seconds per virtual second (pacing and reward delays).
        max_seconds: wall-clock bound of the whole run; rounds not started by then are skipped.
        run_id: prefixed to event ids, so repeated runs against one server do not collide.
        configure: PUT :func:`scaled_config` to ``/v1/configurations/service`` first.
        exploration: the ε used when ``configure`` is true.
    """
    return asyncio.run(
        run_http_async(
            scenario,
            base_url,
            seed=seed,
            policy=policy,
            key=key,
            time_scale=time_scale,
            max_seconds=max_seconds,
            run_id=run_id,
            configure=configure,
            exploration=exploration,
        )
    )


async def run_http_async(
    scenario: Scenario,
    base_url: str,
    *,
    seed: int,
    policy: str = "server",
    key: str | None = None,
    time_scale: float = 1.0,
    max_seconds: float = 300.0,
    run_id: str = "",
    configure: bool = False,
    exploration: float = DEFAULT_EXPLORATION,
    stop: asyncio.Event | None = None,
) -> RunResult:
    """:func:`run_http` for callers already inside an event loop; once ``stop`` is set no new
    decision is sent (the rewards of those sent still are)."""
    check_loopback(base_url)
    if time_scale < 0 or max_seconds <= 0:
        raise ValueError("time_scale must be ≥ 0 and max_seconds > 0")
    env = scenario.build(seed)
    prefix = run_id + event_prefix(scenario, seed)
    n = scenario.rounds
    expected, best, realized, propensity = (np.zeros(n) for _ in range(4))
    explored = 0
    clock = asyncio.get_running_loop()
    start = clock.time()
    deadline = start + max_seconds
    # Retries (503 and 429 answers) stay well inside the run's own time bound.
    retry = RetryPolicy(max_total=min(10.0, max_seconds / 4))
    tasks: set[asyncio.Task[bool]] = set()
    done = 0
    async with AsyncClient(
        base_url, key=key, timeout=min(30.0, max_seconds), retry=retry
    ) as client:
        if configure:
            await client.put_configuration(scaled_config(scenario, exploration, time_scale))
        for t in range(n):
            due = start + t * scenario.interval * time_scale
            if due >= deadline or (stop is not None and stop.is_set()):
                break
            await asyncio.sleep(max(0.0, due - clock.time()))
            rnd = env.round(t)
            request = replace(rnd.request, event_id=prefix + str(t))
            answer = await client.rank(request)
            ids = [a.id for a in request.actions]
            pmf = answer.probabilities()
            chosen = ids.index(answer.reward_action_id)
            greedy = max(range(len(ids)), key=lambda i: (pmf.get(ids[i], 0.0), -i))
            explored += chosen != greedy
            expected[t] = rnd.expected[chosen]
            best[t] = rnd.best_expected()
            realized[t] = rnd.realized[chosen]
            propensity[t] = pmf.get(ids[chosen], 0.0)
            done = t + 1
            if request.defer_activation and rnd.activate_after is not None:
                wait = rnd.activate_after * time_scale
                _spawn(tasks, _later(client, wait, request.event_id, None))
            if not rnd.dropped:
                wait = rnd.delay * time_scale
                value = float(rnd.realized[chosen])
                _spawn(tasks, _later(client, wait, request.event_id, value))
        if tasks:
            finished, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - clock.time()))
            for task in pending:
                task.cancel()
            reported = sum(1 for task in finished if task.result())
        else:
            reported = 0
    return RunResult(
        scenario=scenario.name,
        policy=policy,
        seed=seed,
        expected=expected[:done],
        best=best[:done],
        reward=realized[:done],
        propensity=propensity[:done],
        explored=explored,
        reported=reported,
    )


def _spawn(tasks: set[asyncio.Task[bool]], coroutine: Any) -> None:
    task: asyncio.Task[bool] = asyncio.ensure_future(coroutine)
    tasks.add(task)


async def _later(client: AsyncClient, wait: float, event_id: str, value: float | None) -> bool:
    """Reward ``event_id`` with ``value`` (activate it when None) after ``wait`` seconds; true
    for a counted reward."""
    await asyncio.sleep(wait)
    if value is None:
        await client.activate(event_id)
        return False
    await client.reward(event_id, value)
    return True
