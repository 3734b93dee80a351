"""The ``postgres`` phase's results: banditd on PostgreSQL beside SQLite and the minimal handler,
where the CPU went (the edges, the database), and what one database server would sustain.

CPU figures are shares of one core over a run, as in :class:`bench.records.HttpRun`; divided by
the run's successful requests/s they are CPU seconds per request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.records import TARGET_CONNECTIONS, HttpRun, LearnerResult

PROJECTED_CORES = (1, 2, 4, 8)
"""Database cores the projection is shown for."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresRun:
    """One load run against ``banditd serve --store postgresql://… --workers edges``.

    ``run`` is the run as the HTTP table has it (its ``server_cpu``: supervisor, trainer and
    edges; its ``foreign_cpu``: what processes outside the bench and the database took of the
    machine, in cores). ``edge_cpu`` is the edge processes' part of ``server_cpu`` and
    ``supervisor_trainer_cpu`` the rest's, both over the same span as the database's figures;
    ``backend_cpu`` what the database spent in the backends of the server's sessions,
    ``background_cpu`` in its own processes (WAL writer, checkpointer, autovacuum, …; they serve
    every client, and during a run mostly these), ``other_clients_cpu`` in other clients'
    backends (not counted as the bench's). ``sessions`` is how many backends were the server's.
    ``seeded`` is, for a reward run, the decisions it had to reward.
    """

    edges: int
    run: HttpRun
    edge_cpu: float
    edge_kernel_cpu: float
    supervisor_trainer_cpu: float
    backend_cpu: float
    backend_kernel_cpu: float
    background_cpu: float
    other_clients_cpu: float
    sessions: int
    seeded: int = 0

    @property
    def database_cpu(self) -> float:
        """Share of a core the database spent for the run: the backends and its own processes."""
        return self.backend_cpu + self.background_cpu

    def us_per_request(self, share: float) -> float | None:
        """``share`` (of one core, over the run) as µs per successful request."""
        rate = self.run.load.ok_per_second
        return 1e6 * share / rate if rate > 0 else None

    @property
    def database_share(self) -> float | None:
        """Of the CPU banditd and its database spent per request, the database's part."""
        total = self.run.server_cpu + self.database_cpu
        return self.database_cpu / total if total > 0 else None

    @property
    def per_cpu_second(self) -> float | None:
        """Requests per CPU-second of everything a request took: banditd's processes and the
        database's (None when they barely ran)."""
        total = self.run.server_cpu + self.database_cpu
        return self.run.load.ok_per_second / total if total >= 0.05 else None

    @property
    def per_edge_cpu_second(self) -> float | None:
        """Requests per CPU-second of the edge processes: what one edge on a core of its own
        would answer, if the database kept up (None when the edges barely ran)."""
        if self.edge_cpu < 0.05:
            return None
        return self.run.load.ok_per_second / self.edge_cpu


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresLearner:
    """The trainer working through a backlog of due events in PostgreSQL, and the database's
    CPU per event learned while it was measured (µs; None when the server is elsewhere)."""

    learner: LearnerResult
    backend_us: float | None
    background_us: float | None

    @property
    def database_us(self) -> float | None:
        if self.backend_us is None or self.background_us is None:
            return None
        return self.backend_us + self.background_us


@dataclass(frozen=True, slots=True, kw_only=True)
class Projection:
    """What one database server would sustain, from one measured run (1 edge).

    ``database_us`` is the database's CPU per request (backends + its own processes),
    ``edge_rate`` what one edge answers per CPU-second of its own.
    """

    endpoint: str
    connections: int
    database_us: float
    edge_rate: float | None

    def max_rate(self, cores: int) -> float:
        """Requests/s at which ``cores`` database cores would be busy throughout."""
        return cores * 1e6 / self.database_us

    def edges_for(self, cores: int) -> float | None:
        """Edges, each on a core of its own at ``edge_rate``, that reach :meth:`max_rate`."""
        return self.max_rate(cores) / self.edge_rate if self.edge_rate else None


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresResult:
    """The ``postgres`` phase: runs at 1 and 2 edges beside the minimal handler's runs of the
    same phase, the learner, and how the server and processes were set up."""

    server: str
    """Host, port and database (never a password)."""
    settings: tuple[tuple[str, str], ...]
    local: bool
    """Whether the server ran on this machine (only then is its CPU measured)."""
    placement: str
    runs: tuple[PostgresRun, ...] = ()
    minimal: tuple[HttpRun, ...] = ()
    learner: PostgresLearner | None = None

    def run(self, endpoint: str, connections: int, edges: int) -> PostgresRun | None:
        """The best (most requests/s) run with ``edges`` edges."""
        matching = [
            r
            for r in self.runs
            if (r.run.endpoint, r.run.connections, r.edges) == (endpoint, connections, edges)
        ]
        return max(matching, key=lambda r: r.run.load.ok_per_second, default=None)

    def minimal_run(self, endpoint: str, connections: int) -> HttpRun | None:
        matching = [
            r for r in self.minimal if (r.endpoint, r.connections) == (endpoint, connections)
        ]
        return max(matching, key=lambda r: r.load.ok_per_second, default=None)

    @property
    def connections(self) -> tuple[int, ...]:
        return tuple(sorted({r.run.connections for r in self.runs}))

    @property
    def edge_counts(self) -> tuple[int, ...]:
        return tuple(sorted({r.edges for r in self.runs}))

    def projection(self, endpoint: str) -> Projection | None:
        """From the 1-edge run at the target concurrency; None without a database figure."""
        run = self.run(endpoint, TARGET_CONNECTIONS, 1)
        if run is None or not self.local:
            return None
        database_us = run.us_per_request(run.database_cpu)
        if not database_us:
            return None
        return Projection(
            endpoint=endpoint,
            connections=TARGET_CONNECTIONS,
            database_us=database_us,
            edge_rate=run.per_edge_cpu_second,
        )


SqliteRuns = Callable[[str, str, int], HttpRun | None]
"""``BenchResult.run``: the best run of a server's endpoint at a concurrency."""


def _ratio(ours: HttpRun | None, base: HttpRun | None) -> float | None:
    if ours is None or base is None or base.load.ok_per_second <= 0:
        return None
    return ours.load.ok_per_second / base.load.ok_per_second


def _per_cpu_ratio(ours: PostgresRun | None, base: HttpRun | None) -> float | None:
    if ours is None or base is None:
        return None
    mine, theirs = ours.per_cpu_second, base.per_cpu_second
    return mine / theirs if mine is not None and theirs else None


def _x(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.2f}×"


def _n(value: float | None, spec: str = ",.0f") -> str:
    return "—" if value is None else f"{value:{spec}}"


def _rps(run: HttpRun | None) -> str:
    return "—" if run is None else f"{run.load.ok_per_second:,.0f}"


def _lat(run: HttpRun | None) -> str:
    return "—" if run is None else f"{run.load.p50_ms:.2f} / {run.load.p99_ms:.2f}"


def _errors(runs: Iterable[HttpRun | None]) -> str:
    found = [r.load.non_2xx + r.load.socket_errors + r.load.timeouts for r in runs if r]
    return " / ".join(str(n) for n in found) or "—"


def render_lines(
    pg: PostgresResult, sqlite: SqliteRuns, sqlite_learner: LearnerResult | None
) -> list[str]:
    """The Markdown section: throughput, CPU per request, the learner, the projection."""
    settings = ", ".join(f"`{k}={v}`" for k, v in pg.settings if k != "server_version")
    version = dict(pg.settings).get("server_version", "?")
    lines = [
        "",
        "## PostgreSQL store",
        "",
        f"- Server: PostgreSQL {version} at {pg.server} "
        f"({'this machine' if pg.local else 'another machine: its CPU is not measured'}); "
        f"{settings}. Every 201/204 follows a durable commit, as on SQLite.",
        f"- {pg.placement}",
        "- The minimal handler's runs here are this phase's own, each just before the "
        "PostgreSQL runs it is compared with; the SQLite figures are the `http` phase's.",
        "",
        "*Per CPU-s* ratios divide each side's requests/s by the CPU it took (for PostgreSQL: "
        "banditd's processes and the database's together), the better estimate on a shared "
        "machine, where other processes take a different share of the cores in each run.",
        "",
        "| endpoint | conns | minimal req/s | SQLite req/s | PG 1 edge | PG 2 edges "
        "| PG 1 edge / minimal | PG 2 edges / minimal | PG 1 edge / SQLite | PG 2 / PG 1 edges "
        "| per CPU-s: PG 1 edge / minimal | per CPU-s: PG 1 edge / SQLite "
        "| p50 / p99 ms (1 edge; 2 edges) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for endpoint in ("rank", "reward"):
        for c in pg.connections:
            one, two = pg.run(endpoint, c, 1), pg.run(endpoint, c, 2)
            run1, run2 = (one.run if one else None), (two.run if two else None)
            minimal = pg.minimal_run(endpoint, c)
            lite = sqlite("banditd", endpoint, c)
            lines.append(
                f"| {endpoint} | {c} | {_rps(minimal)} | {_rps(lite)} | {_rps(run1)} "
                f"| {_rps(run2)} | {_x(_ratio(run1, minimal))} | {_x(_ratio(run2, minimal))} "
                f"| {_x(_ratio(run1, lite))} | {_x(_ratio(run2, run1))} "
                f"| {_x(_per_cpu_ratio(one, minimal))} | {_x(_per_cpu_ratio(one, lite))} "
                f"| {_lat(run1)}; {_lat(run2)} | {_errors((run1, run2))} |"
            )
    lines += _cpu_lines(pg)
    lines += _learner_lines(pg, sqlite_learner)
    lines += _projection_lines(pg)
    return lines


def _cpu_lines(pg: PostgresResult) -> list[str]:
    rows = []
    for endpoint in ("rank", "reward"):
        for c in pg.connections:
            for edges in pg.edge_counts:
                r = pg.run(endpoint, c, edges)
                if r is None:
                    continue
                us = r.us_per_request
                edge, edge_k = us(r.edge_cpu), us(r.edge_kernel_cpu)
                rest = us(r.supervisor_trainer_cpu)
                back, back_k = us(r.backend_cpu), us(r.backend_kernel_cpu)
                share = r.database_share
                database = _n(us(r.database_cpu)) if pg.local else "not measured"
                items, per_item = r.run.items_per_commit, r.run.commit_us_per_item
                took = items * per_item / 1000 if items and per_item else None
                lines = (
                    f"| {endpoint} | {c} | {edges} | {_n(edge)} ({_n(edge_k)} kernel) "
                    f"| {_n(rest)} | {_n(back)} ({_n(back_k)} kernel) | {_n(us(r.background_cpu))} "
                    f"| {database} | {_n(None if share is None else 100 * share, '.0f')}% "
                    f"| {r.sessions} | {_n(items, '.1f')} | {_n(took, '.1f')} "
                    f"| {100 * r.run.server_cpu:.0f}% + {100 * r.database_cpu:.0f}% "
                    f"| {100 * r.run.foreign_cpu:.0f}% ({100 * r.other_clients_cpu:.0f}%) |"
                )
                rows.append(lines)
    if not rows:
        return []
    return [
        "",
        "Where the time goes, CPU µs per successful request: the edge process(es); the "
        "supervisor and the trainer; the database's backends of banditd's sessions "
        "(matched by their client ports) and its own processes (WAL writer, checkpointer, …). "
        "*database share* is the database's part of banditd's and the database's CPU "
        "together. *Items / transaction* and *transaction ms* are the edge's group-commit "
        "writer's, from its `/metrics` (one edge only): an edge commits one transaction at a "
        "time, so at c connections about c / 2 requests wait in each, and its rate is about "
        "items / transaction time. *CPU used* is banditd's processes + the database, in cores; "
        "*other load* the rest of the machine's busy time (other processes, cores; in brackets "
        "other clients of the same database server).",
        "",
        "| endpoint | conns | edges | edges µs | supervisor + trainer µs | DB backends µs "
        "| DB own processes µs | database µs | database share | DB sessions "
        "| items / transaction | transaction ms | CPU used | other load (other DB clients) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]


def _learner_lines(pg: PostgresResult, sqlite_learner: LearnerResult | None) -> list[str]:
    found = pg.learner
    if found is None:
        return []
    learner = found.learner
    ratio = (
        learner.per_second / sqlite_learner.per_second
        if sqlite_learner and sqlite_learner.per_second
        else None
    )
    per_event = 1e6 / learner.per_second if learner.per_second else None
    return [
        "",
        "| learner | events/s | µs/event | SQLite learner events/s | PG / SQLite | CPU used "
        "(banditd's processes) | database µs/event (backends + own processes) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| join + learn + checkpoint, backlog {learner.backlog:,} | {learner.per_second:,.0f} "
        f"| {_n(per_event)} | {_n(sqlite_learner.per_second if sqlite_learner else None)} "
        f"| {_x(ratio)} | {100 * learner.server_cpu:.0f}% "
        f"| {_n(found.database_us)} ({_n(found.backend_us)} + {_n(found.background_us)}) |",
    ]


def _projection_lines(pg: PostgresResult) -> list[str]:
    found = [p for p in (pg.projection("rank"), pg.projection("reward")) if p is not None]
    if not found:
        return []
    lines = [
        "",
        f"### Projection: one PostgreSQL server for N edges (from the 1-edge runs at "
        f"{TARGET_CONNECTIONS} connections)",
        "",
    ]
    for p in found:
        rate = _n(p.edge_rate)
        lines.append(
            f"- {p.endpoint}: the database spent {p.database_us:.0f} µs of CPU per request, so "
            f"k database cores are busy throughout at k × 1 / {p.database_us:.0f} µs = "
            f"k × {p.max_rate(1):,.0f} req/s; an edge answers {rate} req/s per CPU-second of "
            "its own (on a core of its own, if the database keeps up), so k cores keep up with "
            f"k × {p.max_rate(1):,.0f} / {rate} = k × {_n(p.edges_for(1), '.1f')} edges."
        )
    lines += [
        "",
        "| database cores | "
        + " | ".join(f"{p.endpoint} max req/s | edges for it" for p in found)
        + " |",
        "|---:|" + "---:|---:|" * len(found),
    ]
    for cores in PROJECTED_CORES:
        cells = " | ".join(
            f"{p.max_rate(cores):,.0f} | {_n(p.edges_for(cores), '.1f')}" for p in found
        )
        lines.append(f"| {cores} | {cells} |")
    lines += [
        "",
        "What it leaves out: CPU alone, as if the database scaled with its cores (its WAL is one "
        "stream, flushed by one WAL writer, and hot rows such as the counters' shards are "
        "shared); the disk: this server fsyncs its WAL on the machine's one disk, and a "
        "dedicated one with a write cache changes what a commit waits for, not what it costs "
        "in CPU; the network: here every round trip is over loopback (tens of µs), on a LAN each "
        "adds a few hundred µs of latency per transaction, which edges hide with concurrency "
        "but which lengthens every request; and batch sizes: an edge's group commit puts more "
        "requests in a transaction the busier it is, so at other rates the database's cost per "
        "request differs from this run's.",
    ]
    return lines


def to_json(pg: PostgresResult, data: dict[str, Any]) -> None:
    """Add the derived figures of ``pg`` to its ``asdict`` form ``data``."""
    for run, raw in zip(pg.runs, data["runs"], strict=True):
        us = run.us_per_request
        raw["ok_per_second"] = run.run.load.ok_per_second
        raw["us_per_request"] = {
            "edges": us(run.edge_cpu),
            "supervisor_and_trainer": us(run.supervisor_trainer_cpu),
            "database_backends": us(run.backend_cpu),
            "database_own_processes": us(run.background_cpu),
            "database": us(run.database_cpu),
        }
        raw["database_share"] = run.database_share
        raw["per_edge_cpu_second"] = run.per_edge_cpu_second
        minimal = pg.minimal_run(run.run.endpoint, run.run.connections)
        raw["ratio_to_minimal"] = _ratio(run.run, minimal)
        raw["per_cpu_second"] = run.per_cpu_second
        raw["cpu_ratio_to_minimal"] = _per_cpu_ratio(run, minimal)
    data["projections"] = [
        {
            "endpoint": p.endpoint,
            "database_us": p.database_us,
            "edge_rate": p.edge_rate,
            "by_cores": {
                str(k): {"max_rate": p.max_rate(k), "edges": p.edges_for(k)}
                for k in PROJECTED_CORES
            },
        }
        for p in (pg.projection("rank"), pg.projection("reward"))
        if p is not None
    ]
