"""The bare VW loop: DSJSON parse + predict and parse + learn with ``vowpal_wabbit_next`` directly.

The examples are the workload's bodies as the DSJSON lines the server builds (unlabelled for
predict, labelled for learn, with the fields banditd's learner gives VW), prepared before the
clock starts: what is timed is VW's own parser and learner, the most a banditd learner (which also
reads the store, builds the lines and checkpoints) or rank path could approach. Runs in its own
process pinned to the server's core.

VW is called the way banditd calls it (:class:`policies.vw.VWPolicy`): through the bindings under
the public API when this ``vowpal_wabbit_next`` has them. The public API (``DSJsonFormatParser``,
``Workspace.learn_one``) wraps each parsed example in a Python object and checks its label, which
costs about as much again as parsing and learning an example of this workload (callgrind:
497k instructions an event against 279k); a baseline paying that would flatter the learner. Its
rates are measured too and reported beside, for reference (``public_*``).

Run: ``python -m bench.vw_loop --seconds 3`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import vowpal_wabbit_next as vw

from bench.workload import Workload, context_line, label_for, learn_line, rank_bodies
from policies import DEFAULT_ARGUMENTS
from policies.vw import bindings

ARGUMENTS = DEFAULT_ARGUMENTS + " --quiet"
"""banditd's default policy arguments plus ``--quiet``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VWLoopResult:
    """Events/s of the bare loops over ``examples`` distinct examples.

    ``*_per_cpu_second`` count events per CPU-second the loop itself used (equal to the plain
    rates on a quiet core); ``foreign_cpu`` is the share of the core taken by processes other
    than the loop meanwhile (set by the bench, which sees the whole core). ``api`` is how the
    baseline rates called VW: ``bindings`` (as banditd does) or ``public`` (this
    ``vowpal_wabbit_next`` has no bindings banditd could use either); ``public_*`` are the same
    loops through the public API.
    """

    arguments: str
    examples: int
    predict_per_second: float
    learn_per_second: float
    predict_per_cpu_second: float = 0.0
    learn_per_cpu_second: float = 0.0
    foreign_cpu: float = 0.0
    api: str = "bindings"
    public_predict_per_second: float = 0.0
    public_learn_per_second: float = 0.0

    @property
    def predict_us(self) -> float:
        """Microseconds per parse + predict."""
        return 1e6 / self.predict_per_second

    @property
    def learn_us(self) -> float:
        """Microseconds per parse + learn."""
        return 1e6 / self.learn_per_second


def _timed_passes(step: Any, lines: list[Any], seconds: float) -> tuple[float, float]:
    """Events per second and per CPU-second of ``step(line)`` over whole passes of ``lines``
    for at least ``seconds``."""
    done = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    deadline = started + seconds
    for _ in range(10_000):  # bounded; a pass is thousands of lines
        for line in lines:
            step(line)
        done += len(lines)
        if time.perf_counter() >= deadline:
            break
    cpu = max(time.process_time() - cpu_started, 1e-9)
    return done / (time.perf_counter() - started), done / cpu


def measure(
    *, workload: Workload, examples: int = 2048, seconds: float = 3.0, arguments: str = ARGUMENTS
) -> VWLoopResult:
    """Learn then predict over ``examples`` lines, each mode for at least ``seconds``, through
    the bindings (when there are any) and through the public API."""
    bodies = rank_bodies(workload)
    learn_lines = [
        learn_line(bodies[n % len(bodies)], label_for(n, share=workload.reward_share))
        for n in range(examples)
    ]
    predict_lines = [context_line(bodies[n % len(bodies)]) for n in range(examples)]
    workspace = vw.Workspace(arguments.split())
    parser = vw.DSJsonFormatParser(workspace)

    def learn(line: str) -> None:
        workspace.learn_one(parser.parse_json(line))

    def predict(line: str) -> None:
        workspace.predict_one(parser.parse_json(line))

    learn(learn_lines[0])  # warm up allocations before timing
    public_learn, public_learn_cpu = _timed_passes(learn, learn_lines, seconds)
    public_predict, public_predict_cpu = _timed_passes(predict, predict_lines, seconds)
    found = bindings(workspace)
    if found is None:
        learn_rate, learn_cpu_rate = public_learn, public_learn_cpu
        predict_rate, predict_cpu_rate = public_predict, public_predict_cpu
    else:
        core, parse = found

        def learn_bound(line: bytes) -> None:
            core.learn_multi_ex_one(parse(core, line))

        def predict_bound(line: bytes) -> None:
            core.predict_multi_ex_one(parse(core, line))

        # banditd hands the bindings the encoder's bytes
        learn_rate, learn_cpu_rate = _timed_passes(
            learn_bound, [line.encode() for line in learn_lines], seconds
        )
        predict_rate, predict_cpu_rate = _timed_passes(
            predict_bound, [line.encode() for line in predict_lines], seconds
        )
    return VWLoopResult(
        arguments=arguments,
        examples=examples,
        predict_per_second=predict_rate,
        learn_per_second=learn_rate,
        predict_per_cpu_second=predict_cpu_rate,
        learn_per_cpu_second=learn_cpu_rate,
        api="public" if found is None else "bindings",
        public_predict_per_second=public_predict,
        public_learn_per_second=public_learn,
    )


def main(argv: list[str] | None = None) -> int:
    """Measure and print the result as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m bench.vw_loop")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=Workload().seed)
    args = parser.parse_args(argv)
    result = measure(
        workload=Workload(seed=args.seed), examples=args.examples, seconds=args.seconds
    )
    print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
