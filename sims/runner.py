"""The in-process runner: drives the real :class:`bandit.loop.Loop` on a virtual clock.

Each round at ``now = START + t·interval``: rewards and activations due by ``now`` are delivered
at their own times, ``loop.step`` runs when a tick is due (join with the wait window and default
reward, learn, periodic publish), then the round's request is ranked by the loop (caps and
seeded sampling) against a :class:`bandit.memory.MemoryStore`. Rewards are reported at decision
time + delay; dropped ones never are. After the last round the clock runs on until every window
has closed and been learned.
"""

from __future__ import annotations

import heapq
from dataclasses import replace

import numpy as np

from bandit.dsjson import joined_line
from bandit.join import JOIN_GRACE
from bandit.loop import Loop
from bandit.memory import MemoryStore
from sims.environment import Round
from sims.presets import PolicySpec, policy_factory
from sims.result import RunResult
from sims.scenarios import Scenario

START = 1_700_000_000.0
"""Virtual time of round 0, in seconds since the epoch."""

_REWARD = 0
_ACTIVATE = 1


def event_prefix(scenario: Scenario, seed: int) -> str:
    """Event ids of a run are ``{prefix}{t}``."""
    return f"{scenario.name}-{seed}-"


def run(scenario: Scenario, policy: PolicySpec, seed: int) -> RunResult:
    """Run ``policy`` on ``scenario`` for one seed; the same inputs give the same result.

    The seed seeds the environment (contexts, rewards, delays) and the loop's sampling.
    """
    return run_loop(scenario, policy, seed)[0]


def run_with_logs(scenario: Scenario, policy: PolicySpec, seed: int) -> tuple[RunResult, list[str]]:
    """:func:`run`, plus the loop's joined events as labelled DSJSON lines in join order."""
    result, loop = run_loop(scenario, policy, seed)
    store = loop.store
    return result, [joined_line(e) for e in store.joined_after(0, store.last_seq())]


def run_loop(scenario: Scenario, policy: PolicySpec, seed: int) -> tuple[RunResult, Loop]:
    """:func:`run`, also returning the loop (its store holds every decision and joined event)."""
    env = scenario.build(seed)
    rounds: dict[str, Round] = {}
    loop = Loop(
        store=MemoryStore(),
        factory=policy_factory(policy, rounds),
        config=scenario.config(policy.exploration),
        seed=seed,
        now=START,
        # Nothing crashes in a simulation: checkpoint as often as models are published.
        checkpoint_interval=scenario.model_export_frequency,
    )
    prefix = event_prefix(scenario, seed)
    n = scenario.rounds
    expected = np.zeros(n)
    best = np.zeros(n)
    realized = np.zeros(n)
    propensity = np.zeros(n)
    # (time, order, kind, event id, value): delivered in time order, ties in issue order.
    queue: list[tuple[float, int, int, str, float]] = []
    reported = 0
    next_tick = START

    def deliver(until: float) -> int:
        sent = 0
        while queue and queue[0][0] <= until:
            at, _, kind, event_id, value = heapq.heappop(queue)
            if kind == _ACTIVATE:
                loop.activate(event_id, at)
            else:
                loop.reward(event_id, value, at)
                sent += 1
        return sent

    for t in range(n):
        now = START + t * scenario.interval
        reported += deliver(now)
        if now >= next_tick:
            loop.step(now)
            next_tick = now + scenario.tick
        rnd = env.round(t)
        event_id = prefix + str(t)
        request = replace(rnd.request, event_id=event_id)
        rounds[event_id] = rnd
        decision = loop.rank(request, now)
        del rounds[event_id]
        chosen = decision.chosen_index
        expected[t] = rnd.expected[chosen]
        best[t] = rnd.best_expected()
        realized[t] = rnd.realized[chosen]
        propensity[t] = decision.propensity
        if request.defer_activation and rnd.activate_after is not None:
            heapq.heappush(queue, (now + rnd.activate_after, 2 * t, _ACTIVATE, event_id, 0.0))
        if not rnd.dropped:
            value = float(rnd.realized[chosen])
            heapq.heappush(queue, (now + rnd.delay, 2 * t + 1, _REWARD, event_id, value))
    end = START + n * scenario.interval + scenario.reward_wait_time + JOIN_GRACE
    reported += deliver(end)
    loop.step(end + scenario.tick)
    counts = loop.store.counts(end + scenario.tick)
    result = RunResult(
        scenario=scenario.name,
        policy=policy.name,
        seed=seed,
        expected=expected,
        best=best,
        reward=realized,
        propensity=propensity,
        explored=counts.explored,
        reported=reported,
        late=counts.late_rewards,
        defaulted=counts.defaulted,
    )
    return result, loop
