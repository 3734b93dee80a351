"""Instructions per request and per learned event, counted by callgrind: ratios that hold still.

On a shared machine the throughput ratios of ``make bench`` can move by a quarter between runs
(the core's speed changes under a neighbour's load between a baseline and its measured run).
Instruction counts do not: callgrind counts the instructions a process executes, whatever else
the machine does, so the same code gives the same count to within a few percent (batch sizes
still vary). What they leave out is time in the kernel (socket and file syscalls, fsync) and
cache and branch costs, so they complement the throughput figures rather than replace them.

What is counted, each against its baseline:

* HTTP: a server runs under callgrind; after a warm-up its counters are zeroed, ``--requests``
  ranks (then rewards) are sent over 32 keep-alive connections, and the counters are dumped:
  instructions per request, every thread of the server included (banditd's writer, sync,
  learner and watcher threads). banditd runs as ``make bench`` runs it (SQLite, durable group
  commit, learner on); the minimal handler of :mod:`bench.minimal_server` is the baseline.
* Learner: the learner in a process of its own over a seeded backlog (join and learn as the
  server's learner thread does; one checkpoint, see :func:`_learner_child`), against the bare VW
  parse + learn loop of
  :mod:`bench.vw_loop` over the same examples (through VW's bindings, as banditd calls VW; the
  public API's loop is counted too, for reference). Each runs twice, over ``--events`` and twice as
  many events; the difference of the two counts over ``--events`` is the cost per event without
  start-up (imports, workspace creation).

Needs valgrind (Debian's package). Run: ``python -m bench.instructions`` (about 5 minutes on two
cores); it writes ``instructions.json`` and ``instructions.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

CONNECTIONS = 32
WARM_UP = 200
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """Instructions per unit of each measured thing and of its baseline."""

    rank: float
    rank_minimal: float
    reward: float
    reward_minimal: float
    learner: float
    vw_learn: float
    vw_learn_public: float
    requests: int
    events: int

    def ratios(self) -> dict[str, float]:
        """Baseline instructions over banditd's: comparable to the throughput ratios."""
        return {
            "rank": self.rank_minimal / self.rank,
            "reward": self.reward_minimal / self.reward,
            "learner": self.vw_learn / self.learner,
            "learner_public": self.vw_learn_public / self.learner,
        }


def _callgrind(out: Path) -> list[str]:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    return [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]


def _total(dump: Path) -> int:
    """The instruction total of a callgrind dump (its ``summary:`` or ``totals:`` line)."""
    text = dump.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no totals in {dump}")
    return int(found.group(1))


# -- HTTP ------------------------------------------------------------------------------------


async def _send(url: str, kind: str, start: int, count: int, bodies: list[bytes]) -> None:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    numbers = iter(range(start, start + count))
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def connection() -> None:
            for n in numbers:
                if kind == "rank":
                    body = bodies[n % len(bodies)][:-1] + f',"eventId":"i-{n}"}}'.encode()
                    path, ok = "/v1/rank", 201
                else:
                    body, path, ok = b'{"value":1.0}', f"/v1/events/s-{n}/reward", 204
                async with session.post(url + path, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != ok:
                        raise RuntimeError(f"{path} answered {response.status}")

        await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))


def _server_counts(command: list[str], work: Path, requests: int) -> dict[str, float]:
    from bench.process import ServerProcess, free_port
    from bench.workload import Workload, rank_bodies

    bodies = [json.dumps(b, separators=(",", ":")).encode() for b in rank_bodies(Workload())]
    out = work / "callgrind.out"
    port = free_port()
    server = ServerProcess(
        name="callgrind server",
        command=[*_callgrind(out), *command, "--port", str(port)],
        port=port,
        core=None,
        log_path=work / "server.log",
    )
    try:
        server.wait_ready(timeout=600)
        asyncio.run(_send(server.url, "rank", 0, WARM_UP, bodies))
        asyncio.run(_send(server.url, "reward", requests, WARM_UP, bodies))
        counts: dict[str, float] = {}
        for kind, start in (("rank", WARM_UP), ("reward", 0)):
            control = ["callgrind_control", "-z", str(server.pid)]
            subprocess.run(control, check=True, capture_output=True, timeout=60)
            asyncio.run(_send(server.url, kind, start, requests, bodies))
            before = set(work.glob("callgrind.out*"))
            control = ["callgrind_control", "-d", str(server.pid)]
            subprocess.run(control, check=True, capture_output=True, timeout=60)
            dumps = sorted(set(work.glob("callgrind.out*")) - before, key=os.path.getmtime)
            counts[kind] = _total(dumps[-1]) / requests
        return counts
    finally:
        server.stop(timeout=120)


def http_counts(work: Path, requests: int) -> tuple[dict[str, float], dict[str, float]]:
    """Instructions per rank and per reward: banditd's and the minimal handler's."""
    from bench.backlog import seed
    from bench.workload import Workload

    db = work / "banditd" / "banditd.db"
    db.parent.mkdir(parents=True)
    (work / "minimal").mkdir()
    seed(
        str(db),
        shape="open",
        events=requests + WARM_UP,
        prefix="s-",
        workload=Workload(),
        now=time.time(),
    )
    script = Path(sys.executable).with_name("banditd")
    # The edge alone runs under callgrind: it is what answers rank and reward; its trainer (not
    # counted) runs beside it as in a supervised banditd serve.
    banditd = [str(script), "serve", "--role", "edge", "--db", str(db)]
    minimal = [sys.executable, "-m", "bench.minimal_server"]
    with (work / "trainer.log").open("wb") as trainer_log:
        trainer = subprocess.Popen(
            [str(script), "train", "--db", str(db)],
            stdin=subprocess.DEVNULL,
            stdout=trainer_log,
            stderr=subprocess.STDOUT,
        )
        try:
            with ThreadPoolExecutor(2) as pool:  # two cores: both servers at once
                ours = pool.submit(_server_counts, banditd, db.parent, requests)
                theirs = pool.submit(_server_counts, minimal, work / "minimal", requests)
                return ours.result(), theirs.result()
        finally:
            trainer.terminate()
            try:
                trainer.wait(timeout=60)
            except subprocess.TimeoutExpired:
                trainer.kill()
                trainer.wait(timeout=10)


# -- learner ---------------------------------------------------------------------------------


def _learner_child(db: str, events: int) -> None:
    """Learn a seeded backlog of ``events`` to the end, as the server's learner thread does,
    checkpointing once at the end.

    The server checkpoints once a second, about every 15,000 events; under callgrind, 50 times
    slower, a one-second interval would checkpoint 50 times as often per event. One checkpoint
    per run cancels out of the difference between the two runs.
    """
    from bandit.loop import Learner
    from policies import DEFAULT_ARGUMENTS, make_factory
    from server.entry.cli import tune_gc
    from stores.sqlite.store import SQLiteStore

    store = SQLiteStore(db, synchronous="FULL", background_checkpoint=1.0)
    try:
        config = store.load_config()
        assert config is not None
        factory = make_factory(DEFAULT_ARGUMENTS, epsilon=config.exploration_percentage)
        learner = Learner(store, factory, now=time.time(), checkpoint_interval=math.inf)
        tune_gc()  # as `banditd serve` does once started
        learned = 0
        for _ in range(10 * events):  # bounded: each step learns up to 128
            step = learner.step(config, time.time(), 128)
            learned += step.learned
            if step.joined == 0 and step.learned == 0:
                break
        if learned != events:
            raise RuntimeError(f"learned {learned} of {events} events")
        learner.checkpoint(time.time())
    finally:
        store.close()


def _vw_child(events: int, public: bool) -> None:
    """``events`` parse + learn steps of :mod:`bench.vw_loop`'s bare loop over its 2,048 lines
    (built first, so their cost is the same for any ``events`` and cancels out), through the
    bindings banditd calls or, with ``public``, through the public API."""
    import vowpal_wabbit_next as vw

    from bench.vw_loop import ARGUMENTS
    from bench.workload import Workload, label_for, learn_line, rank_bodies
    from policies.vw import bindings

    workload = Workload()
    bodies = rank_bodies(workload)
    lines = [
        learn_line(bodies[n % len(bodies)], label_for(n, share=workload.reward_share))
        for n in range(2048)
    ]
    workspace = vw.Workspace(ARGUMENTS.split())
    found = None if public else bindings(workspace)
    if found is not None:
        core, parse = found
        encoded = [line.encode() for line in lines]
        for n in range(events):
            core.learn_multi_ex_one(parse(core, encoded[n % len(encoded)]))
        return
    parser = vw.DSJsonFormatParser(workspace)
    for n in range(events):
        workspace.learn_one(parser.parse_json(lines[n % len(lines)]))


def _counted(command: list[str], out: Path) -> int:
    subprocess.run([*_callgrind(out), *command], check=True, capture_output=True, timeout=1800)
    return _total(out)


def learner_counts(work: Path, events: int) -> tuple[float, float, float]:
    """Instructions per learned event: the learner's, and the bare VW loop's through the bindings
    banditd calls (the baseline) and through VW's public API (for reference)."""
    from bench.backlog import seed
    from bench.workload import Workload

    def learner(n: int) -> int:
        db = work / f"learner-{n}.db"
        seed(str(db), shape="due", events=n, prefix="b-", workload=Workload(), now=time.time())
        child = [sys.executable, "-m", "bench.instructions", "--learner-child", str(db), str(n)]
        return _counted(child, work / f"learner-{n}.out")

    def bare(n: int) -> int:
        child = [sys.executable, "-m", "bench.instructions", "--vw-child", str(n)]
        return _counted(child, work / f"vw-{n}.out")

    def public(n: int) -> int:
        child = [sys.executable, "-m", "bench.instructions", "--vw-child", str(n), "--public"]
        return _counted(child, work / f"vw-public-{n}.out")

    kinds = (("learner", learner), ("vw", bare), ("vw_public", public))
    with ThreadPoolExecutor(2) as pool:
        runs = {(name, n): pool.submit(fn, n) for name, fn in kinds for n in (events, 2 * events)}
        total = {key: future.result() for key, future in runs.items()}
    per_event = {
        name: (total[(name, 2 * events)] - total[(name, events)]) / events for name, _ in kinds
    }
    return per_event["learner"], per_event["vw"], per_event["vw_public"]


# -- report ----------------------------------------------------------------------------------


def report(counts: Counts) -> str:
    """The Markdown table of instruction counts and ratios."""
    ratios = counts.ratios()
    rows = [
        ("rank (per request)", counts.rank, "minimal handler", counts.rank_minimal, "rank"),
        ("reward (per request)", counts.reward, "minimal handler", counts.reward_minimal, "reward"),
        (
            "learner (per event)",
            counts.learner,
            "bare VW parse + learn (VW's bindings, as banditd calls them)",
            counts.vw_learn,
            "learner",
        ),
        (
            "learner (per event)",
            counts.learner,
            "reference: the same bare loop through VW's public API",
            counts.vw_learn_public,
            "learner_public",
        ),
    ]
    lines = [
        "| figure | banditd instructions | baseline | baseline instructions | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for name, ours, baseline, theirs, key in rows:
        lines.append(f"| {name} | {ours:,.0f} | {baseline} | {theirs:,.0f} | {ratios[key]:.2f}× |")
    lines.append("")
    lines.append(
        f"callgrind; {counts.requests:,} requests of each kind at {CONNECTIONS} connections after "
        f"{WARM_UP} of warm-up; learner per event from backlogs of {counts.events:,} and "
        f"{2 * counts.events:,}; the bare loops over their 2,048 lines. Ratio: baseline "
        "instructions / banditd's. The public API wraps each parsed example in an object and "
        "checks its label; banditd calls the bindings under it."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Count, print the table and write ``instructions.{json,md}``."""
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--learner-child", nargs=2, metavar=("DB", "EVENTS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--vw-child", type=int, metavar="EVENTS", help=argparse.SUPPRESS)
    parser.add_argument("--public", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.learner_child:
        _learner_child(args.learner_child[0], int(args.learner_child[1]))
        return 0
    if args.vw_child:
        _vw_child(args.vw_child, args.public)
        return 0
    with tempfile.TemporaryDirectory(prefix="banditd-instructions-") as tmp:
        work = Path(tmp)
        ours, theirs = http_counts(work / "http", args.requests)
        learner, vw_learn, vw_learn_public = learner_counts(work, args.events)
    counts = Counts(
        rank=ours["rank"],
        rank_minimal=theirs["rank"],
        reward=ours["reward"],
        reward_minimal=theirs["reward"],
        learner=learner,
        vw_learn=vw_learn,
        vw_learn_public=vw_learn_public,
        requests=args.requests,
        events=args.events,
    )
    table = report(counts)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    data = {**asdict(counts), "ratios": counts.ratios()}
    (args.out / "instructions.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / "instructions.md").write_text("# banditd instruction counts\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
