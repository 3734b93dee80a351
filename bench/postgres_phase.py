"""The ``postgres`` phase: banditd on a PostgreSQL store, 1 and 2 edges, and the learner.

In schemas of its own (created and migrated at the start, dropped at the end, whatever
happens): the minimal handler's rank and reward runs first, then decisions for every reward run
seeded through the store (as the ``http`` phase seeds SQLite), then ``banditd serve --store …``
with one edge and with two (``--workers 2``), each warmed up and measured as the ``http`` phase
measures banditd, with the database's CPU over each run (:mod:`bench.postgres`). Last, a fresh
schema with a backlog of due events, and a supervised server's trainer working through it,
sampled as in the ``learner`` phase (its seeded events have the same 1 s reward window).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from bench.load import LoadSpec
from bench.postgres import (
    DatabaseCpu,
    DatabaseWatch,
    bench_schemas,
    is_local,
    redact,
    schema_url,
    server_settings,
)
from bench.postgres_report import PostgresLearner, PostgresResult, PostgresRun
from bench.process import (
    ChildResult,
    ServerProcess,
    core_busy_seconds,
    cpu_snapshot,
    cpu_spent,
    free_port,
    process_tree,
)
from bench.progress import log
from bench.records import TARGET_CONNECTIONS as TARGET
from bench.records import HttpRun, LearnerResult, backlog_rate

EDGE_COUNTS = (1, 2)
POOL_SLACK = 1.25
"""Reward ids seeded per run, as a multiple of what the minimal handler answered at that
concurrency: banditd cannot reward faster, so no id is rewarded twice."""
LEARNED_POLL = 0.1
QUICK_BACKLOG = 20_000
"""The largest learner backlog of a ``--quick`` run (seeding it takes a few seconds)."""


class Harness(Protocol):
    """What the phase needs of the bench run (:class:`bench.run.Bench`)."""

    def start(self, name: str, command: list[str], port: int) -> ServerProcess: ...

    def load(
        self,
        server: ServerProcess,
        spec: LoadSpec,
        endpoint: str,
        note: str = "",
        repeat: int = 0,
        writer: bool | None = None,
    ) -> HttpRun: ...

    def warm_up(self, server: ServerProcess) -> None: ...

    def rank_spec(self, server: ServerProcess, connections: int, prefix: str) -> LoadSpec: ...

    def reward_spec(self, server: ServerProcess, c: int, ids: Path, count: int) -> LoadSpec: ...

    def write_ids(self, name: str, prefix: str, count: int) -> Path: ...

    def child(self, args: list[str], timeout: float) -> ChildResult: ...

    def learned(self, server: ServerProcess) -> int: ...

    def profile_run(self, server: ServerProcess, spec: LoadSpec, name: str) -> None: ...


def banditd_command(store: str, port: int, workers: int) -> list[str]:
    """``banditd serve`` on ``store`` with ``workers`` edges (and a trainer) on ``port``."""
    serve = ["serve", "--store", store, "--port", str(port), "--workers", str(workers)]
    script = Path(sys.executable).with_name("banditd")
    if script.exists():
        return [str(script), *serve]
    return [sys.executable, "-m", "server.entry.cli", *serve]


class PostgresPhase:
    """One ``postgres`` phase against the server at ``url``.

    Args:
        harness: the bench run (starts servers, runs and accounts load).
        url: the server and database (the phase adds its own schemas).
        connections: concurrencies of the rank and reward runs.
        repeat: runs per endpoint, concurrency and edge count (the best counts).
        duration: seconds per load run.
        learner_seconds: the longest learner measurement.
        learner_rate: a guess of the learner's events/s, to size its backlog.
        quick: keep the learner's backlog small.
        profile: py-spy the edge in extra, unmeasured rank and reward runs with 1 edge.
        placement: how the processes were placed on cores, for the report.
    """

    def __init__(
        self,
        harness: Harness,
        url: str,
        *,
        connections: tuple[int, ...],
        repeat: int,
        duration: float,
        learner_seconds: float,
        learner_rate: float,
        quick: bool,
        profile: bool,
        placement: str,
    ) -> None:
        self.harness = harness
        self.url = url
        self.connections = connections
        self.repeat = repeat
        self.duration = duration
        self.learner_seconds = learner_seconds
        self.learner_rate = learner_rate
        self.quick = quick
        self.profile = profile
        self.placement = placement
        self.notes: list[str] = []
        self.runs: list[PostgresRun] = []
        self.minimal: list[HttpRun] = []

    def run(self) -> PostgresResult:
        settings = server_settings(self.url)
        watch = DatabaseWatch(self.url)
        learner = None
        try:
            with bench_schemas(self.url, ("serve", "learn")) as schemas:
                self._serving(schema_url(self.url, schemas["serve"]), watch)
                learner = self._learner(schema_url(self.url, schemas["learn"]), watch)
        finally:
            watch.close()
        return PostgresResult(
            server=redact(self.url),
            settings=tuple(settings.items()),
            local=is_local(self.url),
            placement=self.placement,
            runs=tuple(self.runs),
            minimal=tuple(self.minimal),
            learner=learner,
        )

    # -- rank and reward -------------------------------------------------------------------

    def _serving(self, store: str, watch: DatabaseWatch) -> None:
        h = self.harness
        scratch = h.write_ids("pg-minimal-ids.txt", "x-", 100_000)
        port = free_port()
        minimal = h.start(
            "minimal", [sys.executable, "-m", "bench.minimal_server", "--port", str(port)], port
        )
        ceilings: dict[int, float] = {}
        try:
            h.warm_up(minimal)
            for c in self.connections:
                for rep in range(self.repeat):
                    spec = h.rank_spec(minimal, c, f"pgm{c}-{rep}-")
                    self.minimal.append(h.load(minimal, spec, "rank", repeat=rep))
                    spec = h.reward_spec(minimal, c, scratch, 100_000)
                    ceiling = h.load(minimal, spec, "reward", repeat=rep)
                    self.minimal.append(ceiling)
                    rate = ceiling.load.requests / max(ceiling.load.seconds, 1e-3)
                    ceilings[c] = max(ceilings.get(c, 0.0), rate)
        finally:
            minimal.stop()
        # One pool of ids for every reward run, each run its own slice of it.
        duration = self.duration
        slices: dict[tuple[int, int, int], tuple[int, int]] = {}
        total = 0
        for edges in EDGE_COUNTS:
            for c in self.connections:
                for rep in range(self.repeat):
                    count = int(POOL_SLACK * ceilings[c] * duration) + 500
                    slices[edges, c, rep] = (total, count)
                    total += count
        fastest = ceilings.get(TARGET, max(ceilings.values()))
        profiled = (total, int(POOL_SLACK * fastest * duration) + 500)
        if self.profile:
            total += profiled[1]
        self._seed(store, "open", total, "pg-")
        ids = h.write_ids("pg-ids.txt", "pg-", total)
        for edges in EDGE_COUNTS:
            port = free_port()
            server = h.start(f"banditd-pg-{edges}", banditd_command(store, port, edges), port)
            try:
                h.warm_up(server)
                for c in self.connections:
                    for rep in range(self.repeat):
                        spec = h.rank_spec(server, c, f"pg{edges}r{c}-{rep}-")
                        self._measure(server, watch, spec, "rank", edges, rep)
                for c in self.connections:
                    for rep in range(self.repeat):
                        offset, count = slices[edges, c, rep]
                        spec = replace(h.reward_spec(server, c, ids, count), ids_offset=offset)
                        run = self._measure(server, watch, spec, "reward", edges, rep, count)
                        if run.run.load.requests > count:
                            self.notes.append(
                                f"PostgreSQL reward c={c}, {edges} edge(s): the run outlasted "
                                f"its {count:,} seeded ids and rewarded some events twice."
                            )
                if self.profile and edges == 1:
                    self._profile(server, ids, profiled)
            finally:
                server.stop()

    def _profile(self, server: ServerProcess, ids: Path, pool: tuple[int, int]) -> None:
        h = self.harness
        h.profile_run(server, h.rank_spec(server, TARGET, "pgprof-"), "banditd PostgreSQL rank")
        spec = replace(h.reward_spec(server, TARGET, ids, pool[1]), ids_offset=pool[0])
        h.profile_run(server, spec, "banditd PostgreSQL reward")

    def _measure(
        self,
        server: ServerProcess,
        watch: DatabaseWatch,
        spec: LoadSpec,
        endpoint: str,
        edges: int,
        rep: int,
        seeded: int = 0,
    ) -> PostgresRun:
        """One load run, with the edges' and the database's CPU over it."""
        edge_pids = server.edge_pids()
        tree = process_tree(server.pid)
        tree_before = cpu_snapshot(tree)
        db_before = watch.snapshot(tree)
        busy_before = sum(core_busy_seconds().values())
        started = time.monotonic()
        run = self.harness.load(
            server,
            spec,
            endpoint,
            note=f"PostgreSQL, {edges} edge(s)",
            repeat=rep,
            writer=edges == 1,
        )
        wall = time.monotonic() - started
        busy = sum(core_busy_seconds().values()) - busy_before
        db_after = watch.snapshot(process_tree(server.pid))
        tree_after = cpu_snapshot(tree)
        edges_after = {pid: t for pid, t in tree_after.items() if pid in edge_pids}
        rest_after = {pid: t for pid, t in tree_after.items() if pid not in edges_after}
        edge_cpu, edge_kernel = cpu_spent(tree_before, edges_after)
        rest = cpu_spent(tree_before, rest_after)[0]
        used = watch.used(db_before, db_after)
        ours = (run.server_cpu + run.generator_cpu) * wall + used.backends + used.background
        foreign = max(0.0, busy - ours) / wall
        result = PostgresRun(
            edges=edges,
            run=replace(run, foreign_cpu=foreign),
            edge_cpu=edge_cpu / wall,
            edge_kernel_cpu=edge_kernel / wall,
            supervisor_trainer_cpu=rest / wall,
            backend_cpu=used.backends / wall,
            backend_kernel_cpu=used.backends_kernel / wall,
            background_cpu=used.background / wall,
            other_clients_cpu=used.others / wall,
            sessions=used.sessions,
            seeded=seeded,
        )
        db_us = result.us_per_request(result.database_cpu)
        log(
            f"PostgreSQL {endpoint} c={spec.connections}, {edges} edge(s): "
            f"database {100 * result.database_cpu:.0f}% of a core "
            f"({'—' if db_us is None else f'{db_us:.0f}'} µs/request, {used.sessions} sessions)",
        )
        self.runs.append(result)
        return result

    def _seed(self, store: str, shape: str, events: int, prefix: str) -> None:
        started = time.monotonic()
        self.harness.child(
            [
                "bench.backlog",
                "--db",
                store,
                "--shape",
                shape,
                "--events",
                str(events),
                "--prefix",
                prefix,
            ],
            timeout=900,
        )
        log(
            f"seeded {events:,} {shape} events in PostgreSQL in {time.monotonic() - started:.1f} s",
        )

    # -- the learner -----------------------------------------------------------------------

    def _learner(self, store: str, watch: DatabaseWatch) -> PostgresLearner:
        h = self.harness
        top = QUICK_BACKLOG if self.quick else 100_000
        backlog = int(min(top, max(5_000, 0.5 * self.learner_rate * self.learner_seconds)))
        self._seed(store, "due", backlog, "b-")
        port = free_port()
        server = h.start("banditd-pg-learner", banditd_command(store, port, 1), port)
        series: list[tuple[float, int]] = []
        try:
            ready = time.monotonic()
            pids = process_tree(server.pid)
            cpu_before = server.cpu_seconds()
            db_before: DatabaseCpu = watch.snapshot(pids)
            deadline = ready + self.learner_seconds + 10
            while time.monotonic() < deadline:
                count = h.learned(server)
                series.append((time.monotonic() - ready, count))
                if count >= backlog:
                    break
                time.sleep(LEARNED_POLL)
            cpu = server.cpu_seconds() - cpu_before
            used = watch.used(db_before, watch.snapshot(process_tree(server.pid)))
            wall = time.monotonic() - ready
        finally:
            server.stop()
        rate, seconds = backlog_rate(series, backlog)
        learned = series[-1][1] if series else 0
        # The database's CPU was measured from the first sample on: per event learned since.
        during = learned - series[0][1] if series else 0
        per = 1e6 / during if during > 0 and is_local(self.url) else None
        log(
            f"PostgreSQL learner: {rate:,.0f} events/s over a backlog of {backlog:,}",
        )
        return PostgresLearner(
            learner=LearnerResult(
                backlog=backlog,
                learned=learned,
                seconds=seconds,
                per_second=rate,
                server_cpu=cpu / wall if wall > 0 else 0.0,
                series=tuple((round(t, 3), n) for t, n in series),
            ),
            backend_us=used.backends * per if per is not None else None,
            background_us=used.background * per if per is not None else None,
        )
