"""The sweep's pictures and table read right (issue 20): the comparison's title fits inside its
figure, two policies with the same results are both visible, and the table says what ``±`` is."""

from __future__ import annotations

import numpy as np
import pytest

from sims.plots import comparison_figure, regret_figure, reward_figure
from sims.report import Z95, summarize, text_table
from sims.result import RunResult

ROUNDS = 400


def run(policy: str, seed: int, level: float, scenario: str = "linear") -> RunResult:
    rng = np.random.default_rng(seed)
    expected = np.clip(level + 0.05 * rng.standard_normal(ROUNDS), 0.0, 1.0)
    return RunResult(
        scenario=scenario,
        policy=policy,
        seed=seed,
        expected=expected,
        best=np.full(ROUNDS, 0.9),
        reward=expected,
        propensity=np.full(ROUNDS, 0.5),
    )


def sweep() -> list[RunResult]:
    levels = {"uniform": 0.3, "oracle": 0.9, "egreedy": 0.7, "default": 0.7, "squarecb@10": 0.6}
    return [run(p, seed, level) for p, level in levels.items() for seed in range(3)]


def test_comparison_title_lies_inside_its_figure() -> None:
    """One scenario makes the narrowest figure: the title used to run past both edges."""
    fig = comparison_figure(summarize(sweep()))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [t for t in (fig._suptitle, *(ax.title for ax in fig.axes)) if t and t.get_text()]
    assert any("share of the oracle" in t.get_text() for t in titles), titles
    frame = fig.bbox
    for t in titles:
        box = t.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, (t.get_text(), box, frame)
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1, (t.get_text(), box, frame)
    for label in fig.axes[0].get_yticklabels():
        assert label.get_window_extent(renderer).x0 >= frame.x0, label.get_text()


def colour_pixels(fig: object, rgb: tuple[float, float, float]) -> int:
    """Pixels of the rendered figure within a small distance of ``rgb``."""
    fig.canvas.draw()  # type: ignore[attr-defined]
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float) / 255.0  # type: ignore[attr-defined]
    return int((np.abs(image - np.asarray(rgb)).max(axis=-1) < 0.03).sum())


@pytest.mark.parametrize("build", [reward_figure, regret_figure], ids=["reward", "regret"])
def test_policies_with_the_same_results_are_both_visible(build: object) -> None:
    """``default`` and ``egreedy`` with the same arguments learn the same: identical curves. The
    one drawn second used to cover the first entirely."""
    same = [run("egreedy", 1, 0.7), run("default", 1, 0.7)]
    fig = build(same)  # type: ignore[operator]
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    egreedy, default = lines["egreedy"], lines["default"]
    assert np.array_equal(egreedy.get_ydata(), default.get_ydata())
    assert (egreedy.get_linestyle(), egreedy.get_marker()) != (
        default.get_linestyle(),
        default.get_marker(),
    )
    ax.get_legend().remove()  # count only what the lines themselves show
    for line in (egreedy, default):
        rgb = tuple(float(c) for c in line.get_color()[:3])
        assert colour_pixels(fig, rgb) > 30, f"{line.get_label()} is hidden"  # type: ignore[arg-type]


def test_table_says_what_plus_minus_is_and_it_is_that() -> None:
    results = sweep()
    table = text_table(summarize(results))
    assert "±" in table
    assert "± is the half-width of a 95% normal interval" in table.replace("\n", " ")
    means = [r.mean_reward() for r in results if r.policy == "egreedy"]
    half = Z95 * np.std(means, ddof=1) / np.sqrt(len(means))
    row = next(line for line in table.splitlines() if "egreedy" in line)
    assert f"{np.mean(means):.3f} ± {half:.3f}" in row
