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
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from sims.report import Summary, groups, pivot, regret_curve, reward_curve
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
    policies = list(dict.fromkeys(p for _, p in by_cell))
    palette = plt.get_cmap("tab10" if len(policies) <= 10 else "tab20")
    colors = {p: palette(i % palette.N) for i, p in enumerate(policies)}
    fig, axes = _panels(len(scenarios))
    for ax, scenario in zip(axes, scenarios, strict=True):
        for (s, policy), runs in by_cell.items():
            if s != scenario:
                continue
            x, mean, half = regret_curve(runs) if regret else reward_curve(runs, window)
            color = colors[policy]
            ax.plot(x, mean, label=policy, linewidth=1.4, color=color)
            ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.15, linewidth=0)
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


def plot_comparison(summaries: Sequence[Summary], path: Path) -> Path:
    """Heatmap of each policy's share of the oracle's gain over uniform, per scenario.

    A cell is ``(policy − uniform) / (oracle − uniform)`` of mean expected reward: 1 is the
    oracle, 0 is uniform random. Needs ``uniform`` and ``oracle`` among the policies.
    """
    policies, scenarios, matrix = pivot(summaries)
    low, high = matrix[policies.index("uniform")], matrix[policies.index("oracle")]
    share = (matrix - low) / (high - low)
    rows = [i for i in range(len(policies)) if policies[i] not in ("uniform", "oracle")]
    rows.sort(key=lambda i: -float(share[i].mean()))
    data = share[rows]
    fig, ax = plt.subplots(figsize=(0.9 * len(scenarios) + 3.6, 0.38 * len(rows) + 1.8))
    image = ax.imshow(
        data, cmap="viridis", vmin=min(0.0, float(data.min())), vmax=1.0, aspect="auto"
    )
    ax.set_xticks(range(len(scenarios)), scenarios, rotation=30, ha="right")
    ax.set_yticks(
        range(len(rows)), [f"{policies[i]} ({share[i].mean():.2f})" for i in rows], fontsize=8
    )
    for (r, c), value in np.ndenumerate(data):
        ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_title("share of the oracle's gain over uniform (mean over seeds)")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
