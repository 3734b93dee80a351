"""Sweeps: every policy on every scenario for every seed, in parallel across cores."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A run of a sweep that raised: its job and the exception's message."""

    job: Job
    message: str

    def line(self) -> str:
        """The failure in one line: scenario, policy, seed and the first line of the message."""
        first = (self.message.strip().splitlines() or [""])[0]
        job = self.job
        return (
            f"run failed: scenario {job.scenario.name}, policy {job.policy.name}, "
            f"seed {job.seed}: {first[:300]}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What a sweep gave: the results of the runs that finished, in job order, and the runs
    that failed."""

    results: list[RunResult]
    failures: list[Failure]


class SweepFailed(Exception):
    """A run of :func:`sweep` raised; the message is :meth:`Failure.line`."""


def sweep(jobs: Sequence[Job], *, workers: int = 2, progress: bool = True) -> list[RunResult]:
    """Run ``jobs`` on ``workers`` processes (inline when 1); results in job order.

    Workers are spawned rather than forked, so they start clean of the parent's threads and VW
    state. Runs are seeded, so the results do not depend on ``workers`` or completion order.

    Raises:
        SweepFailed: a run raised (the first in job order); :func:`run_jobs` goes on instead.
    """
    outcome = run_jobs(jobs, workers=workers, progress=progress)
    if outcome.failures:
        raise SweepFailed(outcome.failures[0].line())
    return outcome.results


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int = 2,
    progress: bool = True,
    runner: Callable[[Job], RunResult] | None = None,
) -> Outcome:
    """Run every job, as :func:`sweep` does, and keep going past runs that raise.

    Args:
        jobs: the runs.
        workers: processes for the in-process runner (inline when 1).
        progress: show a progress bar.
        runner: runs one job inline instead (e.g. against a live server; ``workers`` is
            ignored then, since one server runs one policy at a time).
    """
    bar = _progress(len(jobs), progress)
    results: list[RunResult | None] = [None] * len(jobs)
    failures: dict[int, Failure] = {}
    try:
        if runner is not None or workers <= 1:
            for i, job in enumerate(jobs):
                try:
                    results[i] = (runner or run_job)(job)
                except Exception as exc:
                    failures[i] = Failure(job=job, message=str(exc) or type(exc).__name__)
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        results[i] = future.result()
                    except Exception as exc:
                        # The worker's traceback rides along as the cause; the message is
                        # what the user needs.
                        failures[i] = Failure(job=jobs[i], message=str(exc) or type(exc).__name__)
                    bar.update(1)
    finally:
        bar.close()
    return Outcome(
        results=[r for r in results if r is not None],
        failures=[failures[i] for i in sorted(failures)],
    )


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
