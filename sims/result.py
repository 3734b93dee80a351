"""The outcome of one run (scenario × policy × seed), shared by the in-process and HTTP runners."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sims.environment import FloatArray


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RunResult:
    """Per-round record of one run.

    Every array has shape (rounds,), indexed by round.

    Attributes:
        scenario: scenario name.
        policy: policy label.
        seed: the run's seed (environment and loop).
        expected: expected reward of the action served (what regret is measured on).
        best: expected reward of the best non-excluded action (the oracle's).
        reward: the reward the served action realized (reported or not).
        propensity: the probability the served action was chosen with.
        explored: number of rounds served off the greedy action (None when unknown).
        reported: rewards sent to the loop.
        late: rewards that arrived after their window closed (None when unknown).
        defaulted: events learned with the default reward (None when unknown).
    """

    scenario: str
    policy: str
    seed: int
    expected: FloatArray
    best: FloatArray
    reward: FloatArray
    propensity: FloatArray
    explored: int | None = None
    reported: int = 0
    late: int | None = None
    defaulted: int | None = None

    @property
    def rounds(self) -> int:
        """Number of decisions."""
        return int(self.expected.shape[0])

    def mean_reward(self, start: int = 0) -> float:
        """Mean expected reward of the served actions from round ``start`` on."""
        return float(np.mean(self.expected[start:]))

    def second_half_mean(self) -> float:
        """Mean expected reward over the second half of the run."""
        return self.mean_reward(self.rounds // 2)

    def regret(self) -> FloatArray:
        """Cumulative regret against the oracle, shape (rounds,), non-decreasing."""
        return np.asarray(np.cumsum(self.best - self.expected), dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """Scalar results: one CSV row."""
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "seed": self.seed,
            "rounds": self.rounds,
            "mean_reward": self.mean_reward(),
            "second_half_reward": self.second_half_mean(),
            "mean_realized_reward": float(np.mean(self.reward)) if self.rounds else 0.0,
            "oracle_reward": float(np.mean(self.best)) if self.rounds else 0.0,
            "regret": float(self.regret()[-1]) if self.rounds else 0.0,
            "explored": self.explored,
            "reported": self.reported,
            "late": self.late,
            "defaulted": self.defaulted,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, arrays as lists; :meth:`from_dict` restores it."""
        out = self.summary()
        for key in ("expected", "best", "reward", "propensity"):
            out[key] = [round(float(v), 6) for v in getattr(self, key)]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_dict` (up to six decimals)."""
        arrays = {
            k: np.asarray(data[k], dtype=np.float64)
            for k in ("expected", "best", "reward", "propensity")
        }
        return cls(
            scenario=str(data["scenario"]),
            policy=str(data["policy"]),
            seed=int(data["seed"]),
            explored=data.get("explored"),
            reported=int(data.get("reported", 0)),
            late=data.get("late"),
            defaulted=data.get("defaulted"),
            **arrays,
        )
