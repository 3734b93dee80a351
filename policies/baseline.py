"""Fixed policies: uniform random, and the baseline (first non-excluded action)."""

from __future__ import annotations

from bandit.events import JoinedEvent, RankRequest


class UniformPolicy:
    """Equal probability for every non-excluded action; learns nothing."""

    arguments = "uniform"

    def predict_one(self, request: RankRequest) -> list[float]:
        mask = request.excluded_mask()
        allowed = len(mask) - sum(mask)
        return [0.0 if ex else 1.0 / allowed for ex in mask]

    def learn_one(self, event: JoinedEvent) -> None:
        del event

    def to_bytes(self) -> bytes:
        return b""


class BaselinePolicy:
    """Probability 1 on the first non-excluded action; learns nothing."""

    arguments = "baseline"

    def predict_one(self, request: RankRequest) -> list[float]:
        pmf = [0.0] * len(request.actions)
        pmf[request.baseline_index()] = 1.0
        return pmf

    def learn_one(self, event: JoinedEvent) -> None:
        del event

    def to_bytes(self) -> bytes:
        return b""
