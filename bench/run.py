"""``python -m bench.run``: the whole benchmark, one command, results in ``bench/results``.

Phases, in order (each bounded in time; a failed phase is reported and the rest still run):

1. bare VW loop (parse + predict, parse + learn) in a process on the server core;
2. the minimal aiohttp handler: rank and reward at each concurrency (and, at 32 connections, the
   same work on a bare asyncio protocol, for reference);
3. banditd (SQLite on disk, ``synchronous=FULL``, learner running): the same runs; rewards go
   to decisions seeded before the server started, each rewarded once;
4. the learner alone working through a seeded backlog of due events;
5. rank at 32 connections while the learner works through a backlog, then without one;
6. resident memory over a long run at half of banditd's peak rank throughput;
7. banditd on PostgreSQL (schemas of the bench's own) with 1 and 2 edges, rank and reward at 32
   (and 128) connections beside the minimal handler, the database's CPU per request, and the
   learner through a backlog there (skipped, with a note, where no server answers).

Servers run pinned to ``--server-core``, the load generator and this process to
``--load-core`` (PostgreSQL's processes are not the bench's to pin). See ``docs/bench.md`` for
how to read the output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import profile as pyspy
from bench import report
from bench.backlog import DUE_CONFIG
from bench.load import LoadGenerator, LoadResult, LoadSpec
from bench.loadgen import PythonGenerator
from bench.postgres_report import PostgresResult
from bench.process import (
    ChildResult,
    ServerProcess,
    core_busy_seconds,
    free_port,
    http_json,
    load_average,
    pin,
    run_child,
    usable_cores,
)
from bench.progress import log
from bench.records import TARGET_CONNECTIONS, HttpRun, LearnerResult, backlog_rate
from bench.report import (
    BacklogRankResult,
    BenchResult,
    MemoryResult,
    Meta,
    ProfileSummary,
)
from bench.vw_loop import VWLoopResult
from bench.workload import (
    ACTION_FEATURES,
    CONTEXT_FEATURES,
    N_ACTIONS,
    Workload,
    body_tail,
    rank_bodies,
)
from bench.wrk import WrkGenerator, find_or_install

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
PHASES = ("vw", "http", "learner", "backlog", "memory", "postgres")
PG_URL = os.environ.get("BANDITD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
"""The PostgreSQL server and database of the ``postgres`` phase (``--pg-url``)."""
BACKLOG_CONNECTIONS = TARGET_CONNECTIONS
POOL_SLACK = 1.25
"""Reward ids seeded per run, as a multiple of what the minimal handler answered in that run:
banditd cannot reward faster than the ceiling, so no id is rewarded twice."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What to run and how long; see :func:`parse_options` for the flags."""

    duration: float
    connections: tuple[int, ...]
    memory_seconds: float
    learner_seconds: float
    vw_seconds: float
    repeat: int
    quick: bool
    loadgen: str
    install: bool
    server_core: int | None
    load_core: int | None
    profile: bool
    out: Path
    keep: bool
    phases: frozenset[str]
    pg_url: str = PG_URL
    pg_connections: tuple[int, ...] = (TARGET_CONNECTIONS,)


def parse_options(argv: list[str] | None = None) -> Options:
    """Flags → :class:`Options`; ``--quick`` shortens every phase (durations it sets win)."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (~4 min in all)")
    parser.add_argument("--duration", type=float, help="seconds per load run (default 8; quick 3)")
    parser.add_argument(
        "--connections", default="1,8,32,128", help="comma-separated concurrency levels"
    )
    parser.add_argument(
        "--memory-seconds", type=float, help="memory run length (default 300; quick 30)"
    )
    parser.add_argument(
        "--learner-seconds", type=float, help="longest learner measurement (default 20; quick 8)"
    )
    parser.add_argument("--vw-seconds", type=float, help="seconds per bare VW loop (default 3)")
    parser.add_argument(
        "--repeat",
        type=int,
        help="runs per server, endpoint and concurrency; the best counts (default 2; quick 1)",
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install wrk; fall back instead"
    )
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the server in extra, unmeasured runs"
    )
    parser.add_argument(
        "--pg-url",
        default=PG_URL,
        help="PostgreSQL server and database of the postgres phase (it makes and drops schemas "
        "of its own); default $BANDITD_BENCH_PG or the local server's database test",
    )
    parser.add_argument(
        "--pg-connections", help="concurrencies of the postgres phase (default 32,128; quick 32)"
    )
    parser.add_argument("--only", help=f"comma-separated phases to run, of {','.join(PHASES)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    phases = frozenset(p.strip() for p in args.only.split(",")) if args.only else frozenset(PHASES)
    unknown = phases - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    pinned = not args.no_pin and usable_cores() >= 2
    return Options(
        duration=args.duration or (3.0 if quick else 8.0),
        connections=_levels(args.connections),
        memory_seconds=args.memory_seconds or (30.0 if quick else 300.0),
        learner_seconds=args.learner_seconds or (8.0 if quick else 20.0),
        vw_seconds=args.vw_seconds or (2.0 if quick else 3.0),
        repeat=max(1, args.repeat or (1 if quick else 2)),
        quick=quick,
        loadgen=args.loadgen,
        install=not args.no_install,
        server_core=args.server_core if pinned else None,
        load_core=args.load_core if pinned else None,
        profile=bool(args.profile),
        out=args.out,
        keep=bool(args.keep),
        phases=phases,
        pg_url=args.pg_url,
        pg_connections=_levels(args.pg_connections or ("32" if quick else "32,128")),
    )


def _levels(text: str) -> tuple[int, ...]:
    """Comma-separated concurrencies.

    >>> _levels("32, 128,")
    (32, 128)
    """
    return tuple(int(c) for c in text.split(",") if c.strip())


def choose_generator(options: Options, work: Path) -> LoadGenerator:
    """wrk when present or installable (unless ``--loadgen python``), else the Python one."""
    if options.loadgen != "python":
        found = find_or_install(allow_install=options.install)
        if found is not None:
            return WrkGenerator(found[0], found[1], core=options.load_core, work_dir=work)
        if options.loadgen == "wrk":
            raise SystemExit("wrk is not installed and could not be installed")
        reason = "wrk not installed and not installable here"
    else:
        reason = "chosen with --loadgen python"
    return PythonGenerator(core=options.load_core, reason=reason)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


LEARNED_POLL = 0.1
"""Seconds between samples of ``learnedCount`` in the learner phase."""


WRITER_METRICS = {
    "banditd_writer_batch_size_sum": "items",
    "banditd_writer_batch_size_count": "commits",
    "banditd_writer_commit_duration_seconds_sum": "seconds",
}


@dataclass(frozen=True, slots=True)
class WriterTotals:
    """What banditd's group-commit writer has done so far: items committed, transactions, and
    the seconds those transactions took on the event loop (the fsyncs, on their own thread, are
    not in them)."""

    items: float = 0.0
    commits: float = 0.0
    seconds: float = 0.0


def writer_totals(server: ServerProcess) -> WriterTotals:
    """The writer's totals from banditd's ``/metrics``."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in WRITER_METRICS:
            found[WRITER_METRICS[name]] = float(value)
    return WriterTotals(**found)


def _banditd_command(db: Path, port: int) -> list[str]:
    script = Path(sys.executable).with_name("banditd")
    serve = ["serve", "--db", str(db), "--port", str(port)]
    if script.exists():
        return [str(script), *serve]
    return [sys.executable, "-m", "server.entry.cli", *serve]


class Bench:
    """One run: options, the load generator, the temporary directory, and what was measured."""

    def __init__(self, options: Options, work: Path) -> None:
        self.options = options
        self.work = work
        self.generator = choose_generator(options, work)
        self.workload = Workload()
        self.tails = work / "tails.txt"
        self.tails.write_text("\n".join(body_tail(b) for b in rank_bodies(self.workload)) + "\n")
        self.http: list[HttpRun] = []
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.profiles: list[ProfileSummary] = []
        self.vw: VWLoopResult | None = None
        self.learner: LearnerResult | None = None
        self.learner_runs: list[LearnerResult] = []
        self.backlog: BacklogRankResult | None = None
        self.memory: MemoryResult | None = None
        self.postgres: PostgresResult | None = None

    # -- helpers ---------------------------------------------------------------------------

    def phase(self, name: str, body: Callable[[], None]) -> None:
        """Run one phase; record a failure instead of stopping the bench."""
        if name not in self.options.phases:
            return
        log(f"phase {name}")
        try:
            body()
        except Exception as exc:
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            log(f"phase {name} failed: {exc}")

    def start(self, name: str, command: list[str], port: int) -> ServerProcess:
        server = ServerProcess(
            name=name,
            command=command,
            port=port,
            core=self.options.server_core,
            log_path=self.work / f"{name}.log",
            cwd=ROOT,
        )
        try:
            server.wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def child(self, args: list[str], timeout: float) -> ChildResult:
        """``python -m …`` in a process pinned to the server core (nothing else runs there)."""
        command = pin([sys.executable, "-m", *args], self.options.server_core)
        done = run_child(command, timeout=timeout, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def load(
        self,
        server: ServerProcess,
        spec: LoadSpec,
        endpoint: str,
        note: str = "",
        repeat: int = 0,
        writer: bool | None = None,
    ) -> HttpRun:
        """Run ``spec`` against ``server`` and account each process's CPU over the run (and,
        with ``writer`` — by default for the server named banditd — what its group-commit
        writer did meanwhile, from ``/metrics``: a single edge's, so only for one edge)."""
        core = self.options.server_core
        if writer is None:
            writer = server.name == "banditd"
        writer_before = writer_totals(server) if writer else None
        user_before, kernel_before = server.cpu_times()
        busy_before = core_busy_seconds()
        started = time.monotonic()
        result = self.generator.run(spec)
        wall = time.monotonic() - started
        user_after, kernel_after = server.cpu_times()
        kernel = kernel_after - kernel_before
        server_cpu = user_after - user_before + kernel
        busy = core_busy_seconds()
        core_busy = busy[core] - busy_before[core] if core is not None else server_cpu
        items_per_commit = commit_us_per_item = None
        if writer_before is not None:
            totals = writer_totals(server)
            items = totals.items - writer_before.items
            commits = totals.commits - writer_before.commits
            if commits > 0 and items > 0:
                items_per_commit = items / commits
                commit_us_per_item = 1e6 * (totals.seconds - writer_before.seconds) / items
        run = HttpRun(
            server=server.name,
            endpoint=endpoint,
            connections=spec.connections,
            load=result,
            server_cpu=server_cpu / wall,
            server_kernel_cpu=kernel / wall,
            generator_cpu=result.generator_cpu / wall,
            foreign_cpu=max(0.0, core_busy - server_cpu) / wall,
            note=note,
            repeat=repeat,
            items_per_commit=items_per_commit,
            commit_us_per_item=commit_us_per_item,
        )
        log(
            f"{server.name} {endpoint} c={spec.connections}: {result.ok_per_second:,.0f} req/s, "
            f"p50 {result.p50_ms:.2f} p99 {result.p99_ms:.2f} ms, "
            f"errors {result.non_2xx + result.socket_errors + result.timeouts}, "
            f"server CPU {100 * run.server_cpu:.0f}%, generator CPU {100 * run.generator_cpu:.0f}%"
            f", other load on server core {100 * run.foreign_cpu:.0f}%"
        )
        return run

    def rank_spec(self, server: ServerProcess, connections: int, prefix: str) -> LoadSpec:
        return LoadSpec(
            kind="rank",
            url=server.url,
            connections=connections,
            duration=self.options.duration,
            tails_path=str(self.tails),
            id_prefix=prefix,
        )

    def warm_up(self, server: ServerProcess) -> None:
        spec = LoadSpec(
            kind="rank",
            url=server.url,
            connections=8,
            duration=1.0,
            tails_path=str(self.tails),
            id_prefix="warm-",
        )
        self.generator.run(spec)

    def write_ids(self, name: str, prefix: str, count: int) -> Path:
        path = self.work / name
        path.write_text("".join(f"{prefix}{n}\n" for n in range(count)))
        return path

    def healthz(self, server: ServerProcess) -> dict[str, Any]:
        data: dict[str, Any] = http_json("GET", server.url + "/healthz", timeout=5)
        return data

    def learned(self, server: ServerProcess) -> int:
        return int(self.healthz(server)["learner"]["learnedCount"])

    def seed(self, db: Path, shape: str, events: int, prefix: str) -> None:
        started = time.monotonic()
        self.child(
            [
                "bench.backlog",
                "--db",
                str(db),
                "--shape",
                shape,
                "--events",
                str(events),
                "--prefix",
                prefix,
            ],
            timeout=900,
        )
        log(f"seeded {events:,} {shape} events in {time.monotonic() - started:.1f} s")

    def profile_run(self, server: ServerProcess, spec: LoadSpec, name: str) -> None:
        """Run ``spec`` unmeasured while py-spy samples the server; keep the summary.

        A profile that cannot be taken (no py-spy, no ptrace permission) is noted, not fatal.
        """
        out = self.options.out / f"profile-{name.replace(' ', '-')}.txt"
        self.options.out.mkdir(parents=True, exist_ok=True)
        thread = threading.Thread(target=self.generator.run, args=(spec,), daemon=True)
        thread.start()
        time.sleep(0.5)
        try:
            raw = pyspy.record(
                server.serving_pid(), spec.duration - 1.0, out, core=self.options.load_core
            )
            self.profiles.append(pyspy.summarize(raw, name))
            log(f"profile {name}: {out}")
        except RuntimeError as exc:
            self.notes.append(f"profile {name} not taken: {exc}")
        finally:
            thread.join(spec.duration + 60)

    # -- phases ----------------------------------------------------------------------------

    def run_vw(self) -> None:
        """The bare VW loop on the server core; run twice per bench, the faster run counts."""
        core = self.options.server_core
        busy_before = core_busy_seconds()
        done = self.child(
            ["bench.vw_loop", "--seconds", str(self.options.vw_seconds)],
            timeout=120 + 4 * self.options.vw_seconds,
        )
        busy = core_busy_seconds()
        foreign = 0.0
        if core is not None and done.wall_seconds > 0:
            foreign = max(0.0, busy[core] - busy_before[core] - done.cpu_seconds)
            foreign /= done.wall_seconds
        data = json.loads(done.stdout.strip().splitlines()[-1])
        vw = replace(VWLoopResult(**data), foreign_cpu=foreign)
        log(
            f"bare VW: parse+predict {vw.predict_per_second:,.0f}/s ({vw.predict_us:.0f} µs), "
            f"parse+learn {vw.learn_per_second:,.0f}/s ({vw.learn_us:.0f} µs) through the "
            f"{vw.api}; public API: predict {vw.public_predict_per_second:,.0f}/s, learn "
            f"{vw.public_learn_per_second:,.0f}/s; other load on the core {100 * foreign:.0f}%"
        )
        if self.vw is None or vw.learn_per_second > self.vw.learn_per_second:
            self.vw = vw

    def run_http(self) -> None:
        """The servers up at once on the same core; each run of one is followed by the same run
        of the other, so both see the same background load (the asyncio floor's runs follow at
        the target concurrency)."""
        scratch_ids = self.write_ids("minimal-ids.txt", "x-", 100_000)
        db = self.work / "main" / "banditd.db"
        db.parent.mkdir()
        self.seed(db, "open", 0, "s-")  # the service configuration: an hour-long reward window
        port = free_port()
        minimal = self.start(
            "minimal", [sys.executable, "-m", "bench.minimal_server", "--port", str(port)], port
        )
        try:
            port = free_port()
            floor = self.start(
                "floor", [sys.executable, "-m", "bench.floor_server", "--port", str(port)], port
            )
            try:
                self.run_http_with(minimal, floor, db, scratch_ids)
            finally:
                floor.stop()
        finally:
            minimal.stop()

    def run_http_with(
        self, minimal: ServerProcess, floor: ServerProcess, db: Path, scratch_ids: Path
    ) -> None:
        """The runs of :meth:`run_http`, on a banditd started here over ``db``."""
        options = self.options
        port = free_port()
        server = self.start("banditd", _banditd_command(db, port), port)
        try:
            for target in (minimal, server, floor):
                self.warm_up(target)
            for c in options.connections:
                # The asyncio floor only where the targets are stated: it is a reference for
                # the CPU table, not a baseline any ratio is taken to.
                targets = (minimal, server, floor) if c == TARGET_CONNECTIONS else (minimal, server)
                for rep in range(options.repeat):
                    for target in targets:
                        spec = self.rank_spec(target, c, f"r{c}-{rep}-")
                        self.http.append(self.load(target, spec, "rank", repeat=rep))
            for c in options.connections:
                for rep in range(options.repeat):
                    self.reward_pair(minimal, server, db, scratch_ids, c, rep)
                    if c == TARGET_CONNECTIONS:
                        spec = self.reward_spec(floor, c, scratch_ids, 100_000)
                        self.http.append(self.load(floor, spec, "reward", repeat=rep))
            if options.profile:
                self.profile_http(server, db)
        finally:
            server.stop()

    def reward_spec(self, server: ServerProcess, c: int, ids: Path, count: int) -> LoadSpec:
        return LoadSpec(
            kind="reward",
            url=server.url,
            connections=c,
            duration=self.options.duration,
            ids_path=str(ids),
            ids_offset=0,
            ids_count=count,
        )

    def reward_pair(
        self,
        minimal: ServerProcess,
        server: ServerProcess,
        db: Path,
        scratch_ids: Path,
        c: int,
        rep: int,
    ) -> None:
        """The minimal handler's reward run, then banditd's over freshly seeded decisions.

        banditd cannot answer faster than the ceiling, so seeding what the minimal handler
        answered (plus slack) gives every banditd reward its own, not yet rewarded, event.
        """
        spec = self.reward_spec(minimal, c, scratch_ids, 100_000)
        ceiling = self.load(minimal, spec, "reward", repeat=rep)
        self.http.append(ceiling)
        count = (
            int(
                POOL_SLACK
                * ceiling.load.requests
                * self.options.duration
                / max(ceiling.load.seconds, 1e-3)
            )
            + 500
        )
        prefix = f"s{c}-{rep}-"
        self.seed(db, "open", count, prefix)
        ids = self.write_ids(f"ids-{c}-{rep}.txt", prefix, count)
        run = self.load(server, self.reward_spec(server, c, ids, count), "reward", repeat=rep)
        if run.load.requests > count:
            self.notes.append(
                f"reward c={c}: the run outlasted its {count:,} seeded ids and rewarded some "
                "events twice."
            )
        self.http.append(run)

    def profile_http(self, server: ServerProcess, db: Path) -> None:
        """Extra, unmeasured rank and reward runs at 32 connections under py-spy."""
        self.profile_run(server, self.rank_spec(server, 32, "prof-"), "banditd rank c=32")
        count = 12_000 * int(self.options.duration)
        self.seed(db, "open", count, "prof-s-")
        ids = self.write_ids("ids-profile.txt", "prof-s-", count)
        self.profile_run(server, self.reward_spec(server, 32, ids, count), "banditd reward c=32")

    def run_postgres(self) -> None:
        """banditd on PostgreSQL (:mod:`bench.postgres_phase`); skipped with a note where
        psycopg is not installed or no server answers at ``--pg-url``."""
        if importlib.util.find_spec("psycopg") is None:
            self.notes.append(
                "postgres phase skipped: psycopg is not installed "
                "(pip install 'banditd[postgres]')."
            )
            log("phase postgres skipped: psycopg is not installed")
            return
        from bench import postgres, postgres_phase  # psycopg is an optional extra

        problem = postgres.unavailable(self.options.pg_url)
        if problem is not None:
            self.notes.append(f"postgres phase skipped: {problem}.")
            log(f"phase postgres skipped: {problem}")
            return
        phase = postgres_phase.PostgresPhase(
            self,
            self.options.pg_url,
            connections=self.options.pg_connections,
            repeat=self.options.repeat,
            duration=self.options.duration,
            learner_seconds=self.options.learner_seconds,
            learner_rate=self.learner_rate_guess(),
            quick=self.options.quick,
            profile=self.options.profile,
            placement=self.pg_placement(),
        )
        try:
            self.postgres = phase.run()
        finally:
            self.notes += phase.notes

    def pg_placement(self) -> str:
        server, load = self.options.server_core, self.options.load_core
        unpinned = (
            "PostgreSQL's own processes (its backends, WAL writer, checkpointer) are not "
            "pinned: the scheduler ran them on whichever core was free"
        )
        if server is None:
            return f"Processes were not pinned; {unpinned}."
        return (
            f"banditd's processes (supervisor, trainer and every edge) were pinned to core "
            f"{server}, as in the http phase, so with 2 edges both share that one core: the "
            "2-edge figure says what a second edge gains while the first waits on the "
            f"database, not what a second core would give. The load generator ran on core "
            f"{load}. {unpinned}, beside banditd or beside the load generator; their CPU is "
            "counted apart from the cores' (below)."
        )

    def learner_rate_guess(self) -> float:
        if self.learner is not None and self.learner.per_second > 0:
            return self.learner.per_second
        return 0.3 * self.vw.learn_per_second if self.vw else 3000.0

    def run_learner(self) -> None:
        """``--repeat`` runs, each on a fresh backlog; the faster counts, as for the bare loop
        it is compared with (on a shared machine one run can be a quarter slower than the next)."""
        for attempt in range(self.options.repeat):
            learner = self.learner_once(attempt)
            self.learner_runs.append(learner)
            if self.learner is None or learner.per_second > self.learner.per_second:
                self.learner = learner

    def learner_once(self, attempt: int) -> LearnerResult:
        options = self.options
        bare = self.vw.learn_per_second if self.vw else 10_000.0
        backlog = int(min(100_000, max(10_000, 0.5 * bare * options.learner_seconds)))
        db = self.work / f"learner-{attempt}" / "banditd.db"
        db.parent.mkdir()
        self.seed(db, "due", backlog, "b-")
        port = free_port()
        server = self.start("banditd-learner", _banditd_command(db, port), port)
        series: list[tuple[float, int]] = []
        try:
            ready = time.monotonic()
            cpu_before = server.cpu_seconds()
            busy_before = core_busy_seconds()
            profiler: threading.Thread | None = None
            if options.profile and attempt == 0:
                out = options.out / "profile-learner.txt"
                options.out.mkdir(parents=True, exist_ok=True)

                def sample() -> None:
                    try:
                        raw = pyspy.record(
                            server.pid, options.learner_seconds / 2, out, core=options.load_core
                        )
                    except RuntimeError as exc:
                        self.notes.append(f"learner profile not taken: {exc}")
                        return
                    self.profiles.append(pyspy.summarize(raw, "banditd learner backlog"))

                profiler = threading.Thread(target=sample, daemon=True)
                profiler.start()
            deadline = ready + options.learner_seconds + 10
            while time.monotonic() < deadline:
                count = self.learned(server)
                series.append((time.monotonic() - ready, count))
                if count >= backlog:
                    break
                time.sleep(LEARNED_POLL)
            cpu = server.cpu_seconds() - cpu_before
            wall = time.monotonic() - ready
            core = options.server_core
            core_busy = core_busy_seconds()[core] - busy_before[core] if core is not None else cpu
            if profiler is not None:
                profiler.join(options.learner_seconds + 60)
        finally:
            server.stop()
        rate, seconds = backlog_rate(series, backlog)
        log(f"learner: {rate:,.0f} events/s over a backlog of {backlog:,}")
        return LearnerResult(
            backlog=backlog,
            learned=series[-1][1],
            seconds=seconds,
            per_second=rate,
            server_cpu=cpu / wall if wall > 0 else 0.0,
            foreign_cpu=max(0.0, core_busy - cpu) / wall if wall > 0 else 0.0,
            series=tuple((round(t, 3), n) for t, n in series),
        )

    def run_backlog(self) -> None:
        options = self.options
        rate = self.learner_rate_guess()
        backlog = int(min(200_000, max(5_000, rate * (options.duration + 4) * 1.3)))
        db = self.work / "backlog" / "banditd.db"
        db.parent.mkdir()
        self.seed(db, "due", backlog, "b-")
        port = free_port()
        server = self.start("banditd-backlog", _banditd_command(db, port), port)
        try:
            # Warm, as every other measured run (the run without backlog follows this one on
            # the same server): a cold start's first second is not the learner's doing.
            self.warm_up(server)
            before = self.learned(server)
            loaded = self.load(
                server,
                self.rank_spec(server, BACKLOG_CONNECTIONS, "bl-"),
                "rank",
                note="learner backlog",
            )
            after = self.learned(server)
            # Drain the backlog and the loaded run's own events (1 s window + join grace).
            target = backlog + loaded.load.requests - loaded.load.non_2xx
            deadline = time.monotonic() + 30 + 3 * target / max(rate, 500.0)
            while time.monotonic() < deadline and self.learned(server) < target:
                time.sleep(0.5)
            time.sleep(1.0)
            base = self.load(
                server,
                self.rank_spec(server, BACKLOG_CONNECTIONS, "nb-"),
                "rank",
                note="learner keeping pace",
            )
        finally:
            server.stop()
        self.backlog = BacklogRankResult(
            backlog=backlog,
            with_backlog=loaded,
            without_backlog=base,
            learned_during=after - before,
            backlog_left=max(0, backlog - after),
        )
        if after >= backlog:
            self.notes.append(
                "rank under backlog: the learner finished the backlog before the loaded run "
                "ended, so the drop is understated."
            )

    def run_memory(self) -> None:
        options = self.options
        peaks = [
            r.load.ok_per_second
            for r in self.http
            if r.server == "banditd" and r.endpoint == "rank"
        ]
        peak = max(peaks) if peaks else 1000.0
        target_rate = 0.5 * peak
        db = self.work / "memory" / "banditd.db"
        db.parent.mkdir()
        port = free_port()
        server = self.start("banditd-memory", _banditd_command(db, port), port)
        samples: list[tuple[float, int]] = []
        outcome: list[LoadResult] = []
        try:
            http_json("PUT", server.url + "/v1/configurations/service", DUE_CONFIG)
            spec = LoadSpec(
                kind="mixed",
                url=server.url,
                connections=16,
                duration=options.memory_seconds,
                tails_path=str(self.tails),
                id_prefix="mem-",
                rate=target_rate,
                lag=512,
                share_percent=round(100 * self.workload.reward_share),
            )
            thread = threading.Thread(
                target=lambda: outcome.append(self.generator.run(spec)), daemon=True
            )
            started = time.monotonic()
            thread.start()
            deadline = started + options.memory_seconds + 90
            while thread.is_alive() and time.monotonic() < deadline:
                samples.append((round(time.monotonic() - started, 2), server.rss_kib()))
                thread.join(1.0)
            learned = self.learned(server)
            status = http_json("GET", server.url + "/v1/loop/status?history=false")
            lag = status["learner"]
        finally:
            server.stop()
        if not outcome:
            raise RuntimeError("the memory run's load generator did not finish")
        self.memory = MemoryResult(
            seconds=options.memory_seconds,
            target_rate=target_rate,
            load=outcome[0],
            warmup_seconds=max(5.0, 0.1 * options.memory_seconds),
            samples=tuple(samples),
            learned=learned,
            cursor=int(lag["cursor"]),
            lag_events=int(lag["lagEvents"]),
            lag_seconds=float(lag["lagSeconds"]),
            wait_seconds=1.0,  # DUE_CONFIG's rewardWaitTime
        )
        log(
            f"memory: {outcome[0].ok_per_second:,.0f} req/s (target {target_rate:,.0f}), "
            f"RSS {self.memory.min_kib / 1024:.1f}–{self.memory.max_kib / 1024:.1f} MiB, "
            f"spread {100 * self.memory.spread:.1f}%"
        )

    def result(self, meta: Meta) -> BenchResult:
        return BenchResult(
            meta=meta,
            workload={
                **asdict(self.workload),
                "actions": N_ACTIONS,
                "context_features": CONTEXT_FEATURES,
                "features_per_action": ACTION_FEATURES,
            },
            http=tuple(self.http),
            vw=self.vw,
            learner=self.learner,
            learner_runs=tuple(self.learner_runs),
            backlog=self.backlog,
            memory=self.memory,
            postgres=self.postgres,
            profiles=tuple(self.profiles),
            errors=tuple(self.errors),
        )


def main(argv: list[str] | None = None) -> int:
    """Run the bench, write ``latest.json`` and ``latest.md``, print the table."""
    options = parse_options(argv)
    if options.load_core is not None:
        # This process polls and samples; keep it off the server's core too.
        os.sched_setaffinity(0, {options.load_core})
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="banditd-bench-"))
    try:
        bench = Bench(options, work)
        log(f"load generator: {bench.generator.description}; work dir {work}")
        bench.phase("vw", bench.run_vw)
        bench.phase("http", bench.run_http)
        bench.phase("learner", bench.run_learner)
        bench.phase("vw", bench.run_vw)  # again, next to the learner: the faster run counts
        bench.phase("backlog", bench.run_backlog)
        bench.phase("memory", bench.run_memory)
        # Last: the database server flushes and vacuums for minutes after a million seeded
        # rows, which took CPU from the SQLite memory run's trainer when it came before it.
        bench.phase("postgres", bench.run_postgres)
    finally:
        if options.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    notes = list(bench.notes)
    if options.quick:
        notes.append(
            f"Quick run: the memory run lasted {options.memory_seconds:g} s, not the 5 minutes "
            "the memory target is stated for."
        )
    if options.server_core is None:
        notes.append("Processes were not pinned (fewer than 2 usable cores, or --no-pin).")
    else:
        notes.append(
            "Other engineers share this machine: 'other load on server core' in latest.json "
            "(foreign_cpu) is the CPU that processes outside this bench took on the server core "
            "during each run."
        )
    meta = Meta(
        started_at=started_at,
        quick=options.quick,
        duration=options.duration,
        repeat=options.repeat,
        connections=options.connections,
        cores=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        load_generator=bench.generator.description,
        server_core=options.server_core,
        generator_core=options.load_core,
        load_average_start=load_start,
        load_average_end=load_average(),
        git_commit=_git("rev-parse", "--short", "HEAD") or "unknown",
        git_dirty=bool(_git("status", "--porcelain", "--untracked-files=no")),
        python=platform.python_version(),
        notes=tuple(notes),
    )
    result = bench.result(meta)
    json_path, md_path = report.write(result, options.out)
    print(md_path.read_text())
    log(f"wrote {json_path} and {md_path}")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
