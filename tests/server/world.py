"""A small simulated world with known expected rewards, and logs drawn from it.

Three user kinds, three actions; ``MEANS[kind][action]`` is the probability of reward 1. Logs
are drawn under a uniform logging policy, so every action has propensity 1/3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.events import JoinedEvent, JSONObject, RankRequest
from tests.conftest import decision, joined

MEANS = np.array([[0.8, 0.2, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.9]])
KINDS = MEANS.shape[0]
ACTIONS = MEANS.shape[1]


def context(kind: int) -> tuple[JSONObject, ...]:
    """The context features of a user of ``kind`` (:func:`kind_of` reads it back)."""
    return ({"user": {"kind": f"k{kind}"}}, {"device": {"mobile": kind % 2}})


def kind_of(req: RankRequest) -> int:
    """The user kind a request was made for."""
    return int(str(req.context_features[0]["user"]["kind"])[1:])


@dataclass(frozen=True, slots=True)
class Logs:
    """Logged joined events and the user kind of each."""

    events: list[JoinedEvent]
    kinds: np.ndarray


def draw(n: int, *, seed: int, start: float = 1_700_000_000.0, step: float = 1.0) -> Logs:
    """``n`` joined events logged under a uniform policy, ``step`` seconds apart."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, KINDS, size=n)
    chosen = rng.integers(0, ACTIONS, size=n)
    rewards = (rng.random(n) < MEANS[kinds, chosen]).astype(float)
    events = []
    for i in range(n):
        at = start + i * step
        logged = decision(
            f"w{seed}-{i}",
            at=at,
            wait=60.0,
            k=ACTIONS,
            context=context(int(kinds[i])),
            pmf=(1 / 3, 1 / 3, 1 / 3),
            chosen=int(chosen[i]),
        )
        events.append(joined(logged, float(rewards[i]), at=at + 62))
    return Logs(events=events, kinds=kinds)
