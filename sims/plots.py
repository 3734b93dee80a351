"""PNG plots of a sweep: average reward over time with 95% bands across seeds, cumulative regret.

Matplotlib runs on the Agg backend (no display needed); one panel per scenario, one line per
policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from sims.report import groups, regret_curve, reward_curve
from sims.result import RunResult


def _panels(n: int) -> tuple[Any, list[Any]]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_rewards(results: Sequence[RunResult], path: Path, window: int = 100) -> Path:
    """Average expected reward per ``window`` rounds, mean across seeds with a 95% band."""
    return _plot(results, path, window, regret=False)


def plot_regret(results: Sequence[RunResult], path: Path) -> Path:
    """Cumulative regret against the oracle, mean across seeds with a 95% band."""
    return _plot(results, path, 1, regret=True)


def _plot(results: Sequence[RunResult], path: Path, window: int, *, regret: bool) -> Path:
    by_cell = groups(results)
    scenarios = list(dict.fromkeys(s for s, _ in by_cell))
    fig, axes = _panels(len(scenarios))
    for ax, scenario in zip(axes, scenarios, strict=True):
        for (s, policy), runs in by_cell.items():
            if s != scenario:
                continue
            x, mean, half = regret_curve(runs) if regret else reward_curve(runs, window)
            (line,) = ax.plot(x, mean, label=policy, linewidth=1.4)
            ax.fill_between(
                x, mean - half, mean + half, color=line.get_color(), alpha=0.2, linewidth=0
            )
        ax.set_title(scenario)
        ax.set_xlabel("round")
        ylabel = "cumulative regret" if regret else f"mean expected reward / {window} rounds"
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if axes:
        axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
