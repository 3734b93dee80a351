"""PNG plots of a sweep: average reward over time with 95% bands across seeds, cumulative regret.

Matplotlib runs on the Agg backend (no display needed); one panel per scenario, one line per
policy. Each policy has its own colour *and* line style and markers, so two policies that learn
the same (``default`` and ``egreedy`` with the same arguments) are both visible where their
lines coincide. The ``*_figure`` functions build the figures the ``plot_*`` functions save.
"""

from __future__ import annotations

import math
import textwrap
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


STYLES = (
    ("-", "o"),
    ((0, (5, 3)), "s"),
    ((0, (1, 2)), "^"),
    ((0, (6, 2, 1, 2)), "D"),
    ((0, (3, 2, 1, 2, 1, 2)), "v"),
    ((0, (8, 3)), "P"),
)
"""(line style, marker) per policy, in order; with colours, every pair of policies differs."""

_MARKS = 10
"""Markers per line (spread out and staggered between policies, so coinciding lines show)."""


def _style(index: int, points: int) -> dict[str, Any]:
    dash, marker = STYLES[index % len(STYLES)]
    step = max(1, points // _MARKS)
    return {
        "linestyle": dash,
        "marker": marker,
        "markersize": 4,
        "markevery": ((index * max(1, step // len(STYLES))) % step, step),
        "markerfacecolor": "none",
    }


def _wrapped(title: str, fig: Any, fontsize: float) -> str:
    """``title`` broken into lines that fit the figure's width (a character is ~0.6 em)."""
    width_pt = fig.get_figwidth() * 72.0 * 0.92
    return textwrap.fill(title, width=max(12, int(width_pt / (0.6 * fontsize))))


def plot_rewards(results: Sequence[RunResult], path: Path, window: int = 100) -> Path:
    """Average expected reward per ``window`` rounds, mean across seeds with a 95% band."""
    return _save(reward_figure(results, window), path)


def plot_regret(results: Sequence[RunResult], path: Path) -> Path:
    """Cumulative regret against the oracle, mean across seeds with a 95% band."""
    return _save(regret_figure(results), path)


def reward_figure(results: Sequence[RunResult], window: int = 100) -> Any:
    """The figure :func:`plot_rewards` saves."""
    return _figure(results, window, regret=False)


def regret_figure(results: Sequence[RunResult]) -> Any:
    """The figure :func:`plot_regret` saves."""
    return _figure(results, 1, regret=True)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _figure(results: Sequence[RunResult], window: int, *, regret: bool) -> Any:
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
            style = _style(policies.index(policy), len(x))
            ax.plot(x, mean, label=policy, linewidth=1.4, color=color, **style)
            ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.15, linewidth=0)
        ax.set_title(scenario)
        ax.set_xlabel("round")
        ylabel = "cumulative regret" if regret else f"mean expected reward / {window} rounds"
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if axes:
        axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_comparison(summaries: Sequence[Summary], path: Path) -> Path:
    """Heatmap of each policy's share of the oracle's gain over uniform, per scenario.

    A cell is ``(policy − uniform) / (oracle − uniform)`` of mean expected reward: 1 is the
    oracle, 0 is uniform random. Needs ``uniform`` and ``oracle`` among the policies.
    """
    return _save(comparison_figure(summaries), path)


def comparison_figure(summaries: Sequence[Summary]) -> Any:
    """The figure :func:`plot_comparison` saves; its title is wrapped to fit its width."""
    policies, scenarios, matrix = pivot(summaries)
    low, high = matrix[policies.index("uniform")], matrix[policies.index("oracle")]
    share = (matrix - low) / (high - low)
    rows = [i for i in range(len(policies)) if policies[i] not in ("uniform", "oracle")]
    rows.sort(key=lambda i: -float(share[i].mean()))
    data = share[rows]
    fig, ax = plt.subplots(
        figsize=(0.9 * len(scenarios) + 3.6, 0.38 * len(rows) + 2.2), layout="constrained"
    )
    image = ax.imshow(
        data, cmap="viridis", vmin=min(0.0, float(data.min())), vmax=1.0, aspect="auto"
    )
    ax.set_xticks(range(len(scenarios)), scenarios, rotation=30, ha="right")
    ax.set_yticks(
        range(len(rows)), [f"{policies[i]} ({share[i].mean():.2f})" for i in rows], fontsize=8
    )
    for (r, c), value in np.ndenumerate(data):
        ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white")
    title = "share of the oracle's gain over uniform (mean over seeds)"
    fig.suptitle(_wrapped(title, fig, 11), fontsize=11)
    fig.colorbar(image, ax=ax, fraction=0.03)
    return fig
