"""Sweeps: every policy on every scenario for every seed, in parallel across cores."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from sims.presets import PolicySpec
from sims.result import RunResult
from sims.runner import run
from sims.scenarios import Scenario


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One run of a sweep."""

    scenario: Scenario
    policy: PolicySpec
    seed: int


def run_job(job: Job) -> RunResult:
    """Run one job (a top-level function, so worker processes can unpickle it)."""
    return run(job.scenario, job.policy, job.seed)


def plan(
    scenarios: Sequence[Scenario], policies: Sequence[PolicySpec], seeds: Sequence[int]
) -> list[Job]:
    """Every (scenario, policy, seed), in that nesting order."""
    return [
        Job(scenario=s, policy=p, seed=seed) for s in scenarios for p in policies for seed in seeds
    ]


def sweep(jobs: Sequence[Job], *, workers: int = 2, progress: bool = True) -> list[RunResult]:
    """Run ``jobs`` on ``workers`` processes (inline when 1); results in job order.

    Workers are spawned rather than forked, so they start clean of the parent's threads and VW
    state. Runs are seeded, so the results do not depend on ``workers`` or completion order.
    """
    bar = _progress(len(jobs), progress)
    results: list[RunResult | None] = [None] * len(jobs)
    try:
        if workers <= 1:
            for i, job in enumerate(jobs):
                results[i] = run_job(job)
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
    finally:
        bar.close()
    return [r for r in results if r is not None]


class _Silent:
    def update(self, n: int) -> None:
        del n

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> _Silent:
    if not enabled:
        return _Silent()
    from tqdm import tqdm

    bar: _Silent = tqdm(total=total, unit="run", desc="simulate", dynamic_ncols=True)
    return bar
