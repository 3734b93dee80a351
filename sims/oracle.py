"""The oracle: a :class:`bandit.policy.Policy` that knows the world's expected rewards.

It puts probability 1 on the best non-excluded action of each request, by looking the request's
event id up in the rounds the runner registered. Run with exploration 0 it attains the best
expected reward, so ``oracle − policy`` is the policy's regret.
"""

from __future__ import annotations

import numpy as np

from bandit.events import JoinedEvent, RankRequest
from sims.environment import Round


class OraclePolicy:
    """Greedy on the true expected rewards of the rounds registered in ``rounds``.

    Args:
        rounds: event id → round, kept by the runner for every request it is about to send.
    """

    arguments = "oracle"

    def __init__(self, rounds: dict[str, Round]) -> None:
        self._rounds = rounds

    def predict_one(self, request: RankRequest) -> list[float]:
        found = self._rounds.get(request.event_id)
        if found is None:
            raise KeyError(f"the oracle was not told about event {request.event_id!r}")
        pmf = np.zeros(len(request.actions))
        pmf[found.best_index()] = 1.0
        return [float(p) for p in pmf]

    def learn_one(self, event: JoinedEvent) -> None:
        del event

    def to_bytes(self) -> bytes:
        return b""
