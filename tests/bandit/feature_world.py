"""A simulated world with ten context features of which two carry all the signal.

Four actions form a 2×2 grid (row, column). Each user has ``user.tier`` (gold or silver), which
favours a row, and ``user.visits`` (few or many), which favours a column; an action's reward
probability is 0.1, plus 0.4 in the favoured row, plus 0.4 in the favoured column. So the best
action needs both (0.9; one alone reaches 0.7 on average, neither 0.5), and the effects add up,
so the default ``-q ::`` model can learn them. Eight more features (``user.lang``,
``user.age``, ``device.os``, ``device.mobile``, ``time.hour``, ``time.weekday``, ``geo.region``,
``geo.city``) are drawn independently and carry nothing. Actions carry only their id
(``item.id``). Logs are drawn under a uniform policy.
"""

from __future__ import annotations

import numpy as np

from bandit.events import Action, JoinedEvent, JSONObject, RankRequest
from tests.conftest import decision, joined

ACTIONS = 4
TIERS = ("gold", "silver")
VISITS = ("few", "many")
SIGNAL = ("user.tier", "user.visits")
NOISE = {
    "user": {"lang": 4, "age": 5},
    "device": {"os": 3, "mobile": 2},
    "time": {"hour": 6, "weekday": 7},
    "geo": {"region": 4, "city": 8},
}
CONTEXT_FEATURES = (
    *SIGNAL,
    *(f"{ns}.{name}" for ns, inner in NOISE.items() for name in inner),
)


def mean(tier: int, visits: int, action: int) -> float:
    """The probability of reward 1 of ``action`` for a user."""
    return 0.1 + 0.4 * (action // 2 == tier) + 0.4 * (action % 2 == visits)


def context(rng: np.random.Generator) -> tuple[tuple[JSONObject, ...], tuple[int, int]]:
    """A user's context features, and their tier and visits."""
    tier, visits = int(rng.integers(2)), int(rng.integers(2))
    objects: dict[str, dict[str, str]] = {
        "user": {"tier": TIERS[tier], "visits": VISITS[visits]},
    }
    for ns, inner in NOISE.items():
        for name, values in inner.items():
            objects.setdefault(ns, {})[name] = f"{name}{int(rng.integers(values))}"
    return tuple({ns: inner} for ns, inner in objects.items()), (tier, visits)


def draw(n: int, *, seed: int, start: float = 1_700_000_000.0) -> list[JoinedEvent]:
    """``n`` joined events, one second apart, logged under a uniform policy."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        features, (tier, visits) = context(rng)
        chosen = int(rng.integers(ACTIONS))
        reward = float(rng.random() < mean(tier, visits, chosen))
        request = RankRequest(
            event_id=f"fw{seed}-{i}",
            context_features=features,
            actions=tuple(
                Action(id=f"a{a}", features=({"item": {"id": f"a{a}"}},)) for a in range(ACTIONS)
            ),
        )
        at = start + i
        logged = decision(
            request.event_id,
            request=request,
            at=at,
            wait=60.0,
            pmf=(1 / ACTIONS,) * ACTIONS,
            chosen=chosen,
        )
        events.append(joined(logged, reward, at=at + 62))
    return events
