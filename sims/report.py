"""Results of a sweep as files: JSON, CSV, a text table, and the aggregates the plots draw."""

from __future__ import annotations

import csv
import json
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sims.environment import FloatArray
from sims.result import RunResult

Z95 = 1.959964
"""Normal quantile of a two-sided 95% interval."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """One (scenario, policy) cell aggregated over seeds.

    ``*_ci`` are half-widths of 95% normal intervals across seeds (0 for one seed).
    """

    scenario: str
    policy: str
    seeds: int
    mean_reward: float
    mean_reward_ci: float
    second_half_reward: float
    second_half_ci: float
    oracle_reward: float
    regret: float


def groups(results: Sequence[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    """Results keyed by (scenario, policy), in first-seen order."""
    out: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        out.setdefault((r.scenario, r.policy), []).append(r)
    return out


def _mean_ci(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    if array.size < 2:
        return float(array.mean()), 0.0
    return float(array.mean()), float(Z95 * array.std(ddof=1) / math.sqrt(array.size))


def summarize(results: Sequence[RunResult]) -> list[Summary]:
    """Mean over seeds of each (scenario, policy)'s results."""
    out = []
    for (scenario, policy), runs in groups(results).items():
        mean, ci = _mean_ci([r.mean_reward() for r in runs])
        half, half_ci = _mean_ci([r.second_half_mean() for r in runs])
        out.append(
            Summary(
                scenario=scenario,
                policy=policy,
                seeds=len(runs),
                mean_reward=mean,
                mean_reward_ci=ci,
                second_half_reward=half,
                second_half_ci=half_ci,
                oracle_reward=float(np.mean([r.best.mean() for r in runs])),
                regret=float(np.mean([r.regret()[-1] for r in runs])),
            )
        )
    return out


def reward_curve(
    runs: Sequence[RunResult], window: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Average expected reward per block of ``window`` rounds, across seeds.

    Returns:
        (block end round, mean across seeds, 95% half-width across seeds), each shape (blocks,).
    """
    n = min(r.rounds for r in runs)
    blocks = max(1, n // window)
    per_run = np.stack(
        [r.expected[: blocks * window].reshape(blocks, -1).mean(axis=1) for r in runs]
    )
    mean = per_run.mean(axis=0)
    if len(runs) > 1:
        half = Z95 * per_run.std(axis=0, ddof=1) / math.sqrt(len(runs))
    else:
        half = np.zeros_like(mean)
    x = (np.arange(blocks, dtype=np.float64) + 1.0) * (n / blocks)
    return x, mean, np.asarray(half, dtype=np.float64)


def regret_curve(runs: Sequence[RunResult]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative regret per round: (round, mean across seeds, 95% half-width)."""
    n = min(r.rounds for r in runs)
    per_run = np.stack([r.regret()[:n] for r in runs])
    mean = per_run.mean(axis=0)
    half = (
        Z95 * per_run.std(axis=0, ddof=1) / math.sqrt(len(runs))
        if len(runs) > 1
        else np.zeros_like(mean)
    )
    return np.arange(1, n + 1, dtype=np.float64), mean, np.asarray(half, dtype=np.float64)


TABLE_NOTE = (
    "mean reward: expected reward of the served actions per round, over the whole run and over "
    "its 2nd half, mean over seeds; ± is the half-width of a 95% normal interval for that mean "
    "across seeds (1.96 × standard deviation / √seeds; 0 with one seed). oracle: the best "
    "action's expected reward per round; regret: cumulative regret against the oracle at the "
    "last round, mean over seeds."
)
"""What the columns of :func:`text_table` mean, printed under it."""


def text_table(summaries: Sequence[Summary]) -> str:
    """A fixed-width table: one row per (scenario, policy), and a note saying what the columns
    and the ``±`` mean (:data:`TABLE_NOTE`)."""
    header = (
        f"{'scenario':<14}{'policy':<26}{'seeds':>6}{'mean reward':>18}"
        f"{'2nd half':>18}{'oracle':>9}{'regret':>10}"
    )
    lines = [header, "-" * len(header)]
    for s in summaries:
        lines.append(
            f"{s.scenario:<14}{s.policy[:25]:<26}{s.seeds:>6}"
            f"{s.mean_reward:>10.3f} ± {s.mean_reward_ci:.3f}"
            f"{s.second_half_reward:>10.3f} ± {s.second_half_ci:.3f}"
            f"{s.oracle_reward:>9.3f}{s.regret:>10.1f}"
        )
    lines += ["-" * len(header), *textwrap.wrap(TABLE_NOTE, width=len(header))]
    return "\n".join(lines)


def pivot(summaries: Sequence[Summary]) -> tuple[list[str], list[str], FloatArray]:
    """Mean reward as a (policies, scenarios) matrix, NaN where a cell was not run.

    Returns:
        (policy names, scenario names, matrix of shape (len(policies), len(scenarios))).
    """
    policies = list(dict.fromkeys(s.policy for s in summaries))
    scenarios = list(dict.fromkeys(s.scenario for s in summaries))
    matrix = np.full((len(policies), len(scenarios)), np.nan)
    for s in summaries:
        matrix[policies.index(s.policy), scenarios.index(s.scenario)] = s.mean_reward
    return policies, scenarios, matrix


def markdown_table(summaries: Sequence[Summary]) -> str:
    """Mean reward per policy (rows) and scenario (columns), with the mean over scenarios.

    Policies are sorted by that mean, best first; each scenario's best learning policy (not the
    oracle) is in bold.
    """
    policies, scenarios, matrix = pivot(summaries)
    means = np.nanmean(matrix, axis=1)
    order = sorted(range(len(policies)), key=lambda i: -means[i])
    learners = [i for i in range(len(policies)) if policies[i] != "oracle"]
    best = {
        j: max(learners, key=lambda i: matrix[i, j]) if learners else -1
        for j in range(len(scenarios))
    }
    lines = [
        "| policy | " + " | ".join(scenarios) + " | mean |",
        "|---|" + "---:|" * (len(scenarios) + 1),
    ]
    for i in order:
        cells = [
            f"**{matrix[i, j]:.3f}**" if best[j] == i else f"{matrix[i, j]:.3f}"
            for j in range(len(scenarios))
        ]
        lines.append(f"| {policies[i]} | " + " | ".join(cells) + f" | {means[i]:.3f} |")
    return "\n".join(lines)


def summary_dicts(summaries: Sequence[Summary]) -> list[dict[str, Any]]:
    """Summaries as JSON-ready dicts."""
    return [{f: getattr(s, f) for f in Summary.__dataclass_fields__} for s in summaries]


def write_results(results: Sequence[RunResult], out: Path) -> dict[str, Path]:
    """Write ``results.json`` (every run, per-round arrays included, and the summary),
    ``results.csv`` (one row per run) and ``table.txt``; returns the paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarize(results)
    paths = {
        "json": out / "results.json",
        "csv": out / "results.csv",
        "table": out / "table.txt",
        "markdown": out / "comparison.md",
    }
    payload = {"summary": summary_dicts(summaries), "runs": [r.to_dict() for r in results]}
    paths["json"].write_text(json.dumps(payload), encoding="utf-8")
    rows = [r.summary() for r in results]
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["scenario"])
        writer.writeheader()
        writer.writerows(rows)
    paths["table"].write_text(text_table(summaries) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown_table(summaries) + "\n", encoding="utf-8")
    return paths


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """Difference in mean expected reward between two sets of runs (``a − b``).

    The interval is a normal (Welch) interval over per-run means when both sides have at least
    two runs, else over per-round expected rewards (which treats rounds as independent).
    """

    difference: float
    ci_low: float
    ci_high: float
    runs_a: int
    runs_b: int

    @property
    def indistinguishable(self) -> bool:
        """Whether the interval contains 0."""
        return self.ci_low <= 0.0 <= self.ci_high


def compare(a: Sequence[RunResult], b: Sequence[RunResult], z: float = Z95) -> Comparison:
    """Compare the mean expected reward of runs ``a`` and ``b`` (e.g. in-process vs HTTP)."""
    if len(a) >= 2 and len(b) >= 2:
        xa = np.asarray([r.mean_reward() for r in a])
        xb = np.asarray([r.mean_reward() for r in b])
    else:
        xa = np.concatenate([r.expected for r in a])
        xb = np.concatenate([r.expected for r in b])
    difference = float(xa.mean() - xb.mean())
    se = math.sqrt(xa.var(ddof=1) / xa.size + xb.var(ddof=1) / xb.size)
    return Comparison(
        difference=difference,
        ci_low=difference - z * se,
        ci_high=difference + z * se,
        runs_a=len(a),
        runs_b=len(b),
    )
