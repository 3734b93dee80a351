"""Benchmark (not a test): the in-process runner against a bare VW predict+learn loop.

Both handle the same interactions — ε-greedy on the linear world with 10 actions — in the same
process and run:

* runner: ``sims.runner.run`` (environment, caps, seeded sampling, memory store, join, learn,
  checkpoint, periodic publish), reported as simulated interactions per second;
* bare: ``vowpal_wabbit_next`` directly on the DSJSON lines of the same run: parse + predict on
  the context line, parse + learn on the labelled line.

The ratio runner/bare is the runner's cost per interaction in units of the bare loop's (target
≤ 2). It depends on how many interactions share one learner step and one publish (each
serialises the model), so it is reported for the sweep timing (a decision every 0.2 s, a step
every 5 s, a publish every 10 s) and a production-like one (100 decisions/s, a step every
second, a publish every 60 s).

    .venv/bin/python bench/sim_bench.py [--rounds 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

import vowpal_wabbit_next as vw

from bandit.dsjson import context_line
from policies.vw import _tokens, _with_epsilon
from sims.presets import PRESETS
from sims.runner import run, run_with_logs
from sims.scenarios import SCENARIOS, Scenario

TIMINGS: dict[str, dict[str, Any]] = {
    "sweep": {"interval": 0.2, "tick": 5.0, "model_export_frequency": 10.0},
    "production-like": {"interval": 0.01, "tick": 1.0, "model_export_frequency": 60.0},
}


def bare_loop(
    arguments: str, epsilon: float, pairs: list[tuple[str, str]], *, direct: bool
) -> float:
    """Seconds for parse+predict and parse+learn over ``pairs`` on a fresh workspace.

    ``direct`` calls the bindings under vowpal_wabbit_next's public wrappers (no per-example
    label checks), as ``policies.vw.VWPolicy`` does; otherwise the public API.
    """
    tokens = _with_epsilon(_tokens(arguments), epsilon)
    workspace = vw.Workspace([*tokens, "--quiet"])
    parser = vw.DSJsonFormatParser(workspace)
    core: Any = workspace._workspace
    parse: Any = vw._core._parse_line_dsjson
    start = time.perf_counter()
    if direct:
        for context, labelled in pairs:
            core.predict_multi_ex_one(parse(core, context))
            core.learn_multi_ex_one(parse(core, labelled))
    else:
        for context, labelled in pairs:
            workspace.predict_one(parser.parse_json(context))
            workspace.learn_one(parser.parse_json(labelled))
    return time.perf_counter() - start


def bench(scenario: Scenario, repeats: int) -> tuple[float, float, float]:
    """(runner, bare direct, bare public API) seconds per interaction, best of ``repeats``."""
    policy = PRESETS["egreedy"]
    _, lines = run_with_logs(scenario, policy, 0)
    # Rebuild the same requests' unlabelled lines, in the labelled lines' order.
    env = scenario.build(0)
    contexts = {str(t): context_line(env.round(t).request) for t in range(scenario.rounds)}
    pairs = [(contexts[json.loads(line)["EventId"].rsplit("-", 1)[1]], line) for line in lines]
    runner_best = direct_best = public_best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(scenario, policy, 0)
        runner_best = min(runner_best, (time.perf_counter() - start) / scenario.rounds)
        args = (policy.arguments, policy.exploration, pairs)
        direct_best = min(direct_best, bare_loop(*args, direct=True) / len(pairs))
        public_best = min(public_best, bare_loop(*args, direct=False) / len(pairs))
    return runner_best, direct_best, public_best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"ε-greedy ({PRESETS['egreedy'].arguments}), 10 actions, {args.rounds} rounds")
    for name, timing in TIMINGS.items():
        scenario = replace(SCENARIOS["linear"], rounds=args.rounds, **timing)
        runner, direct, public = bench(scenario, args.repeats)
        print(
            f"{name:>16}: runner {1 / runner:6.0f} interactions/s ({runner * 1e6:4.0f} µs) | "
            f"bare VW direct {1 / direct:6.0f}/s ({direct * 1e6:4.0f} µs), ratio "
            f"{runner / direct:.2f} | bare VW public API {1 / public:6.0f}/s "
            f"({public * 1e6:4.0f} µs), ratio {runner / public:.2f}"
        )


if __name__ == "__main__":
    main()
