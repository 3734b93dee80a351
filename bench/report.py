"""Results of a bench run, the targets of issue 5 judged on them, and the JSON and Markdown files.

Every figure sits beside its baseline from the same run: banditd's requests/s beside the minimal
aiohttp handler's on the same core and load generator, the learner's events/s beside the bare VW
parse + learn loop's, rank under a learner backlog beside rank without one on the same server.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import postgres_report
from bench.load import LoadResult
from bench.postgres_report import PostgresResult
from bench.records import NOISY, TARGET_CONNECTIONS, HttpRun, LearnerResult, best_run
from bench.vw_loop import VWLoopResult


@dataclass(frozen=True, slots=True, kw_only=True)
class BacklogRankResult:
    """Rank at 32 connections while the learner works through ``backlog`` events, then without.

    ``learned_during`` is what the learner got through during the loaded run, and
    ``backlog_left`` what it had still to do when that run ended (0 means the backlog ran out
    before the run did, and the comparison is flattering).
    """

    backlog: int
    with_backlog: HttpRun
    without_backlog: HttpRun
    learned_during: int
    backlog_left: int


def _percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryResult:
    """Resident size of the banditd process over a long run at about half of peak throughput.

    ``samples`` holds (seconds since the load started, VmRSS KiB). Flatness is judged after
    ``warmup_seconds``: every later sample within ±10 % of the first later one.
    """

    seconds: float
    target_rate: float
    load: LoadResult
    warmup_seconds: float
    samples: tuple[tuple[float, int], ...]
    learned: int
    cursor: int = 0
    """The learner's cursor when the load ended: joined events it had learned."""
    lag_events: int = 0
    """Events that had come due (their reward window closed) and were not learned yet."""
    lag_seconds: float = 0.0
    """Age of the oldest event due to be joined and not joined yet, then."""
    wait_seconds: float = 1.0
    """The run's ``rewardWaitTime``."""

    @property
    def learned_share(self) -> float | None:
        """Of the events that had come due by the end of the load, the share learned."""
        due = self.cursor + self.lag_events
        return self.cursor / due if due else None

    def _steady(self) -> list[int]:
        steady = [kib for t, kib in self.samples if t >= self.warmup_seconds]
        return steady or [kib for _, kib in self.samples]

    @property
    def first_kib(self) -> int:
        """The first sample after warm-up."""
        return self._steady()[0]

    @property
    def min_kib(self) -> int:
        """The smallest sample after warm-up."""
        return min(self._steady())

    @property
    def max_kib(self) -> int:
        """The largest sample after warm-up."""
        return max(self._steady())

    @property
    def last_kib(self) -> int:
        """The last sample."""
        return self._steady()[-1]

    @property
    def drift(self) -> float:
        """(last − first) / first after warm-up."""
        return (self.last_kib - self.first_kib) / self.first_kib

    @property
    def spread(self) -> float:
        """Largest deviation of any sample after warm-up from the first, relative to it."""
        first = self.first_kib
        return max(abs(kib - first) for kib in self._steady()) / first


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileSummary:
    """Where the server spent its samples during one run (py-spy).

    ``idle_share`` is the share of all samples in which a thread waited; the other shares are of
    the busy samples: by thread, by innermost function (self), by project function (inclusive).
    """

    run: str
    samples: int
    idle_share: float
    threads: tuple[tuple[str, float], ...]
    top_self: tuple[tuple[str, float], ...]
    top_inclusive: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """How and where the run happened."""

    started_at: str
    quick: bool
    duration: float
    repeat: int
    connections: tuple[int, ...]
    cores: int
    cpu_model: str
    load_generator: str
    server_core: int | None
    generator_core: int | None
    load_average_start: tuple[float, float, float]
    load_average_end: tuple[float, float, float]
    git_commit: str
    git_dirty: bool
    python: str
    synchronous: str = "FULL"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult:
    """Everything one run measured; a phase that failed or was skipped is None."""

    meta: Meta
    workload: dict[str, Any]
    http: tuple[HttpRun, ...] = ()
    vw: VWLoopResult | None = None
    learner: LearnerResult | None = None
    learner_runs: tuple[LearnerResult, ...] = ()
    """Every learner run (``learner`` is the fastest)."""
    backlog: BacklogRankResult | None = None
    memory: MemoryResult | None = None
    postgres: PostgresResult | None = None
    profiles: tuple[ProfileSummary, ...] = ()
    errors: tuple[str, ...] = field(default_factory=tuple)

    def run(self, server: str, endpoint: str, connections: int) -> HttpRun | None:
        """The best (most requests/s) run of ``server``'s ``endpoint`` at ``connections``."""
        return best_run(self.http, server, endpoint, connections)

    def cpu_ratio(self, endpoint: str, connections: int) -> float | None:
        """banditd's requests per CPU-second over the minimal handler's, or None.

        On a quiet machine both servers saturate their core at 8+ connections and this equals
        :meth:`ratio`; on a shared one it discounts the CPU other processes took from each run.
        """
        ours = self.run("banditd", endpoint, connections)
        ceiling = self.run("minimal", endpoint, connections)
        if ours is None or ceiling is None:
            return None
        mine, theirs = ours.per_cpu_second, ceiling.per_cpu_second
        return mine / theirs if mine is not None and theirs else None

    def ratio(self, endpoint: str, connections: int) -> float | None:
        """banditd's successful requests/s over the minimal handler's, or None."""
        ours = self.run("banditd", endpoint, connections)
        ceiling = self.run("minimal", endpoint, connections)
        if ours is None or ceiling is None or ceiling.load.ok_per_second <= 0:
            return None
        return ours.load.ok_per_second / ceiling.load.ok_per_second


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One target of issue 5: what was measured, what was asked, and whether it was met.

    ``passed`` is None when the run did not measure it.
    """

    name: str
    measured: str
    target: str
    passed: bool | None


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:{spec}}{suffix}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ratio:
    raw: float | None
    per_cpu: float | None
    noisy: bool

    @property
    def judged(self) -> float | None:
        return self.per_cpu if self.noisy and self.per_cpu is not None else self.raw

    def describe(self, spec: str = ".3f") -> str:
        text = _fmt(self.raw, spec, "×") + _per_cpu(self.per_cpu)
        return text + (" — noisy, judged per CPU-s" if self.noisy and self.per_cpu else "")


def _ratio_of(ours: HttpRun | None, base: HttpRun | None) -> _Ratio:
    if ours is None or base is None:
        return _Ratio(raw=None, per_cpu=None, noisy=False)
    raw = ours.load.ok_per_second / base.load.ok_per_second if base.load.ok_per_second else None
    mine, theirs = ours.per_cpu_second, base.per_cpu_second
    return _Ratio(
        raw=raw,
        per_cpu=mine / theirs if mine is not None and theirs else None,
        noisy=max(ours.foreign_cpu, base.foreign_cpu) > NOISY,
    )


def targets(result: BenchResult) -> list[Target]:
    """The targets of issue 5, judged on ``result``.

    Throughput ratios are judged as the issue states them (requests/s over requests/s) unless
    either run was noisy (other processes took more than :data:`NOISY` of the server's core):
    then per CPU-second, which estimates the ratio the two would have on a quiet core.
    """
    c = TARGET_CONNECTIONS
    out: list[Target] = []
    rank = _ratio_of(result.run("banditd", "rank", c), result.run("minimal", "rank", c))
    out.append(
        Target(
            name=f"rank req/s ≥ 0.6× minimal handler at {c} connections (durable logging)",
            measured=rank.describe(),
            target="≥ 0.60×",
            passed=None if rank.judged is None else rank.judged >= 0.6,
        )
    )
    ours = result.run("banditd", "rank", c)
    tail = ours.load.p99_ms / ours.load.p50_ms if ours and ours.load.p50_ms > 0 else None
    out.append(
        Target(
            name=f"rank p99 ≤ 3× p50 at {c} connections",
            measured=_fmt(tail, ".2f", "×"),
            target="≤ 3.00×",
            passed=None if tail is None else tail <= 3.0,
        )
    )
    reward = _ratio_of(result.run("banditd", "reward", c), result.run("minimal", "reward", c))
    out.append(
        Target(
            name=f"reward req/s ≥ 0.8× minimal handler at {c} connections",
            measured=reward.describe(),
            target="≥ 0.80×",
            passed=None if reward.judged is None else reward.judged >= 0.8,
        )
    )
    learner, vw = result.learner, result.vw
    learn = _Ratio(raw=None, per_cpu=None, noisy=False)
    if learner is not None and vw is not None:
        per_cpu = learner.per_cpu_second
        learn = _Ratio(
            raw=learner.per_second / vw.learn_per_second,
            per_cpu=per_cpu / vw.learn_per_cpu_second
            if per_cpu is not None and vw.learn_per_cpu_second
            else None,
            noisy=max(learner.foreign_cpu, vw.foreign_cpu) > NOISY,
        )
    out.append(
        Target(
            name="learner events/s ≥ 0.7× bare VW parse+learn",
            measured=learn.describe(),
            target="≥ 0.70×",
            passed=None if learn.judged is None else learn.judged >= 0.7,
        )
    )
    events = learner.per_second if learner else None
    noisy_events = learner is not None and learner.foreign_cpu > NOISY
    if learner is not None and noisy_events and learner.per_cpu_second is not None:
        events = learner.per_cpu_second
    out.append(
        Target(
            name="learner ≥ 2,000 joined events/s",
            measured=_fmt(learner.per_second if learner else None, ",.0f", "/s")
            + (
                f" ({learner.per_cpu_second:,.0f} per CPU-s — noisy, judged per CPU-s)"
                if noisy_events and learner and learner.per_cpu_second
                else ""
            ),
            target="≥ 2,000/s",
            passed=None if events is None else events >= 2000,
        )
    )
    backlog = result.backlog
    kept = _Ratio(raw=None, per_cpu=None, noisy=False)
    p99_ratio = None
    if backlog is not None:
        kept = _ratio_of(backlog.with_backlog, backlog.without_backlog)
        base = backlog.without_backlog.load
        if base.p99_ms > 0:
            p99_ratio = backlog.with_backlog.load.p99_ms / base.p99_ms
    drop = None if kept.judged is None else 1 - kept.judged
    raw_drop = None if kept.raw is None else 100 * (1 - kept.raw)
    per_cpu_drop = None if kept.per_cpu is None else 100 * (1 - kept.per_cpu)
    out.append(
        Target(
            name="rank req/s drop under learner backlog ≤ 15%",
            measured=_fmt(raw_drop, ".1f", "%")
            + ("" if per_cpu_drop is None else f" (per CPU-s {per_cpu_drop:.1f}%)")
            + (" — noisy, judged per CPU-s" if kept.noisy and kept.per_cpu else ""),
            target="≤ 15%",
            passed=None if drop is None else drop <= 0.15,
        )
    )
    out.append(
        Target(
            name="rank p99 under learner backlog ≤ 2× without",
            measured=_fmt(p99_ratio, ".2f", "×"),
            target="≤ 2.00×",
            passed=None if p99_ratio is None else p99_ratio <= 2.0,
        )
    )
    memory = result.memory
    minutes = f"{memory.seconds / 60:.1f}-minute" if memory else "5-minute"
    out.append(
        Target(
            name=f"resident size flat (±10%) over a {minutes} run at half of peak",
            measured=_fmt(None if memory is None else 100 * memory.spread, ".1f", "%"),
            target="≤ 10% (5-minute run)",
            passed=None if memory is None else memory.spread <= 0.10,
        )
    )
    share = None if memory is None else memory.learned_share
    out.append(
        Target(
            name=f"trainer learned the events that came due in the {minutes} run (issue 18)",
            measured=_fmt(None if share is None else 100 * share, ".2f", "%"),
            target="≥ 99%",
            passed=None if share is None else share >= 0.99,
        )
    )
    out.append(
        Target(
            name=f"learner lag at the end of the {minutes} run (issue 18)",
            measured=_fmt(None if memory is None else memory.lag_seconds, ".1f", " s"),
            target="< rewardWaitTime + 10 s"
            + ("" if memory is None else f" ({memory.wait_seconds + 10:g} s)"),
            passed=None if memory is None else memory.lag_seconds < memory.wait_seconds + 10,
        )
    )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """What a throughput target leaves banditd, in µs of server CPU per request or event.

    A ratio target ``r`` against a baseline that costs ``baseline_us`` allows banditd
    ``baseline_us / r``: it may add ``allowed_us - baseline_us``. ``added_us`` is what it added
    in this run. Two parts of what it adds are measured on their own: ``vw_us``, VW's own parse +
    predict in the bare loop (rank), and ``store_us``, the store transaction that writes the
    request's decision or reward, per item, as banditd's writer timed it during the run (without
    the fsync that makes it durable, which runs on a thread of its own). Both are floors: the
    request pays at least that much for them.
    """

    name: str
    ratio: float
    baseline_us: float
    banditd_us: float
    vw_us: float | None = None
    store_us: float | None = None

    @property
    def allowed_us(self) -> float:
        return self.baseline_us / self.ratio

    @property
    def may_add_us(self) -> float:
        return self.allowed_us - self.baseline_us

    @property
    def added_us(self) -> float:
        return self.banditd_us - self.baseline_us

    @property
    def measured_alone_us(self) -> float | None:
        """VW's and the store's parts together, or None when neither applies or was measured."""
        parts = [part for part in (self.vw_us, self.store_us) if part is not None]
        return sum(parts) if parts else None


def _cpu_us(run: HttpRun | None) -> float | None:
    split = run.cpu_us_per_request if run else None
    return None if split is None else split[0] + split[1]


def budgets(result: BenchResult) -> list[Budget]:
    """The CPU budgets of the three throughput targets, from the runs the targets are judged on.

    Per CPU-second, like :meth:`BenchResult.cpu_ratio`: at 32 connections both servers keep
    their core busy, so CPU per request is what throughput is the inverse of.
    """
    c = TARGET_CONNECTIONS
    vw = result.vw
    out: list[Budget] = []
    for endpoint, ratio in (("rank", 0.6), ("reward", 0.8)):
        base = _cpu_us(result.run("minimal", endpoint, c))
        run = result.run("banditd", endpoint, c)
        ours = _cpu_us(run)
        if base is None or ours is None or run is None:
            continue
        rank = endpoint == "rank"
        out.append(
            Budget(
                name=f"{endpoint} ≥ {ratio}× minimal handler at {c} connections",
                ratio=ratio,
                baseline_us=base,
                banditd_us=ours,
                vw_us=1e6 / vw.predict_per_cpu_second
                if rank and vw and vw.predict_per_cpu_second
                else None,
                store_us=run.commit_us_per_item,
            )
        )
    learner = result.learner
    per_cpu = learner.per_cpu_second if learner else None
    if vw is not None and vw.learn_per_cpu_second and per_cpu:
        out.append(
            Budget(
                name="learner ≥ 0.7× bare VW parse + learn",
                ratio=0.7,
                baseline_us=1e6 / vw.learn_per_cpu_second,
                banditd_us=1e6 / per_cpu,
            )
        )
    return out


def _budget_lines(result: BenchResult) -> list[str]:
    rows = budgets(result)
    if not rows:
        return []
    lines = [
        "",
        "What each throughput target leaves banditd, in µs of server CPU per request (per "
        "learned event for the learner), from the runs it is judged on: the baseline's cost "
        "divided by the ratio asked is what banditd may spend. Two parts of what banditd adds "
        "are measured on their own in the same run: VW's parse + predict (the bare loop) and the "
        "store transaction that writes the request's decision or reward, per item, as banditd's "
        "writer timed it on the event loop (the fsync, on its own thread, is not in it). Both "
        "are floors; what they leave is the budget for everything else banditd does for the "
        "request.",
        "",
        "| target | baseline | banditd may spend | may add | of it, VW parse + predict alone "
        "| store transaction per item | leaves for the rest | banditd spent | added "
        "| added beyond those |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in rows:
        alone = b.measured_alone_us
        rest = beyond = "—"
        if alone is not None:
            rest = f"{b.may_add_us - alone:.0f}"
            beyond = f"{b.added_us - alone:.0f}"
        lines.append(
            f"| {b.name} | {b.baseline_us:.0f} | {b.allowed_us:.0f} | {b.may_add_us:.0f} "
            f"| {_fmt(b.vw_us, '.0f')} | {_fmt(b.store_us, '.0f')} | {rest} "
            f"| {b.banditd_us:.0f} | {b.added_us:.0f} | {beyond} |"
        )
    return lines


def _per_cpu(ratio: float | None) -> str:
    return "" if ratio is None else f" (per CPU-s {ratio:.2f}×)"


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "**miss**", None: "not measured"}[passed]


def render_markdown(result: BenchResult) -> str:
    """A short Markdown report: HTTP table, learner, backlog, memory, targets."""
    meta = result.meta
    lines = [
        f"# banditd benchmark ({'quick' if meta.quick else 'full'} run, {meta.started_at})",
        "",
        f"- Machine: {meta.cores} cores ({meta.cpu_model}); servers pinned to core "
        f"{meta.server_core}, load generator to core {meta.generator_core}. Shared machine: "
        f"load average {meta.load_average_start[0]:.2f} at start, "
        f"{meta.load_average_end[0]:.2f} at end.",
        f"- Load generator: {meta.load_generator}.",
        f"- {meta.duration:g} s per load run, best of {meta.repeat} per server, endpoint and "
        "concurrency (the two servers' runs alternate); banditd with SQLite "
        f"`synchronous={meta.synchronous}` (durable group commit), learner running; "
        f"commit {meta.git_commit}{' + uncommitted changes' if meta.git_dirty else ''}.",
        *(f"- {note}" for note in meta.notes),
        "",
        "## HTTP: requests/s and latency (ms)",
        "",
        "| endpoint | conns | minimal req/s | banditd req/s | ratio | ratio per CPU-s "
        "| banditd p50 / p90 / p99 | minimal p50 / p90 / p99 | CPU used (minimal / banditd) "
        "| other load on server core (minimal / banditd) | errors |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for endpoint in ("rank", "reward"):
        for c in meta.connections:
            ours = result.run("banditd", endpoint, c)
            ceiling = result.run("minimal", endpoint, c)
            if ours is None and ceiling is None:
                continue
            lines.append(
                f"| {endpoint} | {c} | {_rps(ceiling)} | {_rps(ours)} "
                f"| {_fmt(result.ratio(endpoint, c), '.2f', '×')} "
                f"| {_fmt(result.cpu_ratio(endpoint, c), '.2f', '×')} | {_lat(ours)} "
                f"| {_lat(ceiling)} | {_cpu(ceiling)} / {_cpu(ours)} "
                f"| {_other(ceiling)} / {_other(ours)} | {_errors(ours)} |"
            )
    lines += _cpu_per_request(result)
    lines += ["", "## Learner and bare VW (events/s)", ""]
    lines += [
        "| figure | events/s | per CPU-s | µs/event | baseline | ratio | ratio per CPU-s "
        "| CPU used | other load on core |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    vw = result.vw
    if vw is not None:
        how = "VW's bindings, as banditd calls them" if vw.api == "bindings" else "public API"
        lines.append(
            f"| bare VW parse + predict ({how}) | {vw.predict_per_second:,.0f} "
            f"| {vw.predict_per_cpu_second:,.0f} | {vw.predict_us:.0f} | — | — | — | 100% "
            f"| {100 * vw.foreign_cpu:.0f}% |"
        )
        lines.append(
            f"| bare VW parse + learn ({how}) | {vw.learn_per_second:,.0f} "
            f"| {vw.learn_per_cpu_second:,.0f} | {vw.learn_us:.0f} | — | — | — | 100% "
            f"| {100 * vw.foreign_cpu:.0f}% |"
        )
        if vw.api == "bindings" and vw.public_learn_per_second:
            for mode, rate in (
                ("predict", vw.public_predict_per_second),
                ("learn", vw.public_learn_per_second),
            ):
                lines.append(
                    f"| reference: bare VW parse + {mode} through the public API | {rate:,.0f} "
                    f"| — | {1e6 / rate:.0f} | — | — | — | 100% | {100 * vw.foreign_cpu:.0f}% |"
                )
    learner = result.learner
    if learner is not None:
        ratio = learner.per_second / vw.learn_per_second if vw else None
        per_cpu = learner.per_cpu_second
        cpu_ratio = (
            per_cpu / vw.learn_per_cpu_second
            if vw and per_cpu is not None and vw.learn_per_cpu_second
            else None
        )
        per_event = 1e6 / learner.per_second if learner.per_second else None
        lines.append(
            f"| banditd learner (join + learn + checkpoint, backlog {learner.backlog:,}) "
            f"| {learner.per_second:,.0f} | {_fmt(per_cpu, ',.0f')} | {_fmt(per_event, '.0f')} "
            f"| bare parse + learn | {_fmt(ratio, '.2f', '×')} | {_fmt(cpu_ratio, '.2f', '×')} "
            f"| {100 * learner.server_cpu:.0f}% | {100 * learner.foreign_cpu:.0f}% |"
        )
    backlog = result.backlog
    if backlog is not None:
        base, loaded = backlog.without_backlog.load, backlog.with_backlog.load
        lines += [
            "",
            f"## Rank at {TARGET_CONNECTIONS} connections under a learner backlog",
            "",
            "| | req/s | per CPU-s | p50 | p90 | p99 | CPU used | other load on core "
            "| learner during run |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
            f"| without backlog | {base.ok_per_second:,.0f} "
            f"| {_fmt(backlog.without_backlog.per_cpu_second, ',.0f')} | {base.p50_ms:.2f} | "
            f"{base.p90_ms:.2f} | {base.p99_ms:.2f} | {_cpu(backlog.without_backlog)} "
            f"| {_other(backlog.without_backlog)} | keeping pace with new events |",
            f"| with backlog of {backlog.backlog:,} | {loaded.ok_per_second:,.0f} "
            f"| {_fmt(backlog.with_backlog.per_cpu_second, ',.0f')} | "
            f"{loaded.p50_ms:.2f} | {loaded.p90_ms:.2f} | {loaded.p99_ms:.2f} "
            f"| {_cpu(backlog.with_backlog)} | {_other(backlog.with_backlog)} | "
            f"learned {backlog.learned_during:,} "
            f"({backlog.learned_during / loaded.seconds if loaded.seconds else 0:,.0f}/s), "
            f"{backlog.backlog_left:,} left |",
        ]
    memory = result.memory
    if memory is not None:
        lines += [
            "",
            "## Memory (VmRSS of the banditd processes) and learning under load",
            "",
            "| run | target req/s | achieved req/s | first | min | max | last | drift | spread |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {memory.seconds:.0f} s rank + reward, learner on | {memory.target_rate:,.0f} "
            f"| {memory.load.ok_per_second:,.0f} | {_mib(memory.first_kib)} "
            f"| {_mib(memory.min_kib)} | {_mib(memory.max_kib)} | {_mib(memory.last_kib)} "
            f"| {100 * memory.drift:+.1f}% | {100 * memory.spread:.1f}% |",
            "",
            f"At the end of the load the trainer had learned {memory.cursor:,} joined events, "
            f"{memory.lag_events:,} due events were not learned yet "
            f"({_fmt(_percent(memory.learned_share), '.2f', '%')} learned), and the oldest "
            f"event due to be joined was {memory.lag_seconds:.1f} s old.",
        ]
    if result.postgres is not None:
        lines += postgres_report.render_lines(result.postgres, result.run, result.learner)
    lines += ["", "## Targets (issues 5 and 18)", "", "| target | measured | asked | result |"]
    lines.append("|---|---:|---:|---|")
    for target in targets(result):
        lines.append(
            f"| {target.name} | {target.measured} | {target.target} | {_verdict(target.passed)} |"
        )
    lines += _budget_lines(result)
    for profile in result.profiles:
        lines += ["", f"## Profile: {profile.run} ({profile.samples:,} py-spy samples)", ""]
        threads = ", ".join(f"{name} {100 * share:.0f}%" for name, share in profile.threads)
        lines.append(
            f"- busy samples by thread: {threads} (waiting: {100 * profile.idle_share:.0f}% "
            "of all samples)"
        )
        self_time = ", ".join(f"`{name}` {100 * share:.0f}%" for name, share in profile.top_self)
        inclusive = ", ".join(
            f"`{name}` {100 * share:.0f}%" for name, share in profile.top_inclusive
        )
        lines += [f"- self time: {self_time}", f"- inclusive: {inclusive}"]
    if result.errors:
        lines += ["", "## Phases that failed", ""]
        lines += [f"- {error}" for error in result.errors]
    return "\n".join(lines) + "\n"


def _rps(run: HttpRun | None) -> str:
    return "—" if run is None else f"{run.load.ok_per_second:,.0f}"


def _cpu_per_request(result: BenchResult) -> list[str]:
    """The server CPU each request took, user and kernel, for both servers and the difference:
    what banditd adds to an aiohttp request, and how much of it is system calls. Where the
    asyncio floor ran, its figure too: what the minimal handler's work costs without aiohttp."""
    rows = []
    floors = False
    for endpoint in ("rank", "reward"):
        for c in result.meta.connections:
            ours = result.run("banditd", endpoint, c)
            ceiling = result.run("minimal", endpoint, c)
            split = ours.cpu_us_per_request if ours else None
            base = ceiling.cpu_us_per_request if ceiling else None
            if split is None or base is None:
                continue
            floor_run = result.run("floor", endpoint, c)
            floor = floor_run.cpu_us_per_request if floor_run else None
            floors = floors or floor is not None
            rows.append(
                f"| {endpoint} | {c} | {base[0]:.0f} + {base[1]:.0f} "
                f"| {split[0]:.0f} + {split[1]:.0f} "
                f"| {split[0] - base[0]:+.0f} / {split[1] - base[1]:+.0f} "
                + (
                    "| — |"
                    if floor is None
                    else f"| {floor[0]:.0f} + {floor[1]:.0f} "
                    f"({sum(base) - sum(floor):.0f} µs in aiohttp) |"
                )
            )
    if not rows:
        return []
    return [
        "",
        "Server CPU per request in µs, user + kernel (from the runs above; the asyncio floor does "
        "the minimal handler's work on a bare asyncio protocol, so minimal − floor is what "
        "aiohttp's request machinery costs):"
        if floors
        else "Server CPU per request in µs, user + kernel (from the runs above):",
        "",
        "| endpoint | conns | minimal | banditd | banditd − minimal (user / kernel) "
        "| asyncio floor |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]


def _lat(run: HttpRun | None) -> str:
    if run is None:
        return "—"
    load = run.load
    return f"{load.p50_ms:.2f} / {load.p90_ms:.2f} / {load.p99_ms:.2f}"


def _cpu(run: HttpRun | None) -> str:
    return "—" if run is None else f"{100 * run.server_cpu:.0f}%"


def _other(run: HttpRun | None) -> str:
    return "—" if run is None else f"{100 * run.foreign_cpu:.0f}%"


def _errors(run: HttpRun | None) -> str:
    if run is None:
        return "—"
    load = run.load
    return str(load.non_2xx + load.socket_errors + load.timeouts)


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def to_json(result: BenchResult) -> dict[str, Any]:
    """The result as JSON-ready data, with derived figures (ratios, targets) spelled out."""
    data = asdict(result)
    for run, raw in zip(result.http, data["http"], strict=True):
        raw["ok_per_second"] = run.load.ok_per_second
        raw["per_cpu_second"] = run.per_cpu_second
        split = run.cpu_us_per_request
        raw["cpu_us_per_request"] = (
            {"user": split[0], "kernel": split[1]} if split is not None else None
        )
        mine = run.server == "banditd"
        raw["ratio_to_minimal"] = result.ratio(run.endpoint, run.connections) if mine else None
        raw["cpu_ratio_to_minimal"] = (
            result.cpu_ratio(run.endpoint, run.connections) if mine else None
        )
    if result.vw is not None:
        data["vw"]["predict_us"] = result.vw.predict_us
        data["vw"]["learn_us"] = result.vw.learn_us
    if result.learner is not None and result.vw is not None:
        data["learner"]["ratio_to_bare_learn"] = (
            result.learner.per_second / result.vw.learn_per_second
        )
    if result.memory is not None:
        memory = result.memory
        data["memory"].update(
            first_kib=memory.first_kib,
            min_kib=memory.min_kib,
            max_kib=memory.max_kib,
            last_kib=memory.last_kib,
            drift=memory.drift,
            spread=memory.spread,
            cursor=memory.cursor,
            lag_events=memory.lag_events,
            lag_seconds=memory.lag_seconds,
            learned_share=memory.learned_share,
        )
    if result.postgres is not None:
        postgres_report.to_json(result.postgres, data["postgres"])
    data["targets"] = [asdict(t) for t in targets(result)]
    data["budgets"] = [
        {
            **asdict(b),
            "allowed_us": b.allowed_us,
            "may_add_us": b.may_add_us,
            "added_us": b.added_us,
            "measured_alone_us": b.measured_alone_us,
        }
        for b in budgets(result)
    ]
    return data


def write(result: BenchResult, directory: Path) -> tuple[Path, Path]:
    """Write ``latest.json`` and ``latest.md`` into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "latest.json"
    md_path = directory / "latest.md"
    json_path.write_text(json.dumps(to_json(result), indent=2) + "\n")
    md_path.write_text(render_markdown(result))
    return json_path, md_path
