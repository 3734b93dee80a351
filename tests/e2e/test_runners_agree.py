"""The in-process runner and the HTTP runner agree: same scenario, same seeds, same loop code.

The simulator is only worth its results if the virtual-clock loop behaves like the served one.
Both runners play the linear world with a 1 s reward window and 1 s model publication; the
HTTP runner paces rounds in real time against a live ``banditd serve``. Their mean expected
rewards must be statistically indistinguishable — the 99.9% interval of the difference covers 0:
at 95% an exact match would still fail one CI run in twenty — and both must have learned
(above uniform's ≈ 0.50 by a stated margin), so agreement is not two failures agreeing.
"""

from __future__ import annotations

import dataclasses
import math

import aiohttp
import numpy as np

from sims.http_runner import run_http_async
from sims.presets import RECOMMENDED
from sims.result import RunResult
from sims.runner import run
from sims.scenarios import SCENARIOS
from tests.e2e.conftest import BanditServer, seed_store

SCENARIO = dataclasses.replace(
    SCENARIOS["linear"],
    name="linear-fast",
    rounds=1500,
    interval=0.01,  # 100 decisions a second on the HTTP side, which it must keep up with
    tick=0.05,  # the in-process loop steps as often as the server's learner wakes
    reward_wait_time=1.0,
    model_export_frequency=1.0,
)
SEEDS = (0, 1, 2)
Z = 3.29  # two-sided 99.9%
UNIFORM = 0.50  # the linear world's mean reward under uniform random play
LEARNED_MARGIN = 0.03
SKIP = 500
BLOCK = 250


async def test_in_process_and_http_runners_agree(banditd: BanditServer) -> None:
    # The HTTP runner ranks one request at a time; without per-commit fsync it keeps its pace,
    # so both runners see the same number of rounds per virtual second.
    banditd.configure(synchronous="NORMAL")  # type: ignore[arg-type]
    seed_store(banditd.db, 7)  # the server's draws are reproducible too
    banditd.start()
    async with aiohttp.ClientSession() as http:
        await banditd.wait_healthy(http)
    over_http = []
    for seed in SEEDS:
        result = await run_http_async(
            SCENARIO,
            banditd.url,
            seed=seed,
            time_scale=1.0,
            max_seconds=60.0,
            run_id=f"agree{seed}-",
            configure=True,
        )
        # Every round was played (the time limit only bounds a hung run). How fast is not checked:
        # a run that fell behind its schedule learned more per round, which the comparison of
        # rewards below is there to catch.
        assert len(result.expected) == SCENARIO.rounds, "the HTTP run hit its time limit"
        over_http.append(result)
    in_process = [run(SCENARIO, RECOMMENDED, seed) for seed in SEEDS]

    # Compare rounds after the first model publications, where learning shows. Rounds within a
    # run are correlated (they share the learner's path), so the unit is a block of BLOCK rounds:
    # a Welch interval over block means is honest where one over rounds would be too narrow.
    def block_means(results: list[RunResult]) -> np.ndarray:
        blocks = [
            r.expected[start : start + BLOCK].mean()
            for r in results
            for start in range(SKIP, SCENARIO.rounds - BLOCK + 1, BLOCK)
        ]
        return np.asarray(blocks)

    a, b = block_means(in_process), block_means(over_http)
    difference = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    low, high = difference - Z * se, difference + Z * se
    summary = {"in_process": a.mean(), "http": b.mean(), "ci": (low, high), "blocks": a.size}
    assert low <= 0.0 <= high, summary
    # Agreement must not be two failures agreeing: both learned beyond uniform (≈ 0.50).
    assert a.mean() > UNIFORM + LEARNED_MARGIN and b.mean() > UNIFORM + LEARNED_MARGIN, summary
