"""The bench's own pieces, without timing anything: workload, request streams, report writer."""

from __future__ import annotations

import doctest
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import vowpal_wabbit_next as vw

import bench.load
import bench.postgres
import bench.process
import bench.profile
import bench.records
import bench.run
import bench.workload
from bandit.dsjson import context_line as server_context_line
from bandit.dsjson import learn_object
from bandit.events import Decision, JoinedEvent, RankRequest
from bench import vw_loop
from bench.load import LoadResult, LoadSpec
from bench.loadgen import _Requests
from bench.postgres_report import PostgresLearner, PostgresResult, PostgresRun
from bench.records import HttpRun, LearnerResult
from bench.report import (
    BacklogRankResult,
    BenchResult,
    MemoryResult,
    Meta,
    ProfileSummary,
    budgets,
    render_markdown,
    targets,
    write,
)
from bench.vw_loop import ARGUMENTS, VWLoopResult
from bench.workload import (
    ACTION_FEATURES,
    CONTEXT_FEATURES,
    N_ACTIONS,
    Workload,
    body_tail,
    context_line,
    count_action_features,
    count_context_features,
    encode_body,
    is_rewarded,
    joined_line,
    label_for,
    learn_line,
    rank_bodies,
)
from policies.vw import _encode as _vw_encode
from server.api.schemas import parse_rank


def _server_parse(raw: bytes) -> RankRequest:
    """banditd's own decoding and validation of a rank body.

    Accepts both forms ``server.api.schemas.parse_rank`` has had (decoded JSON → request, and raw
    bytes → (request, client chose the id)): the hot-path work reshapes it.
    """
    try:
        parsed: Any = cast(Any, parse_rank)(raw, max_actions=50)
    except TypeError:
        parsed = cast(Any, parse_rank)(json.loads(raw), max_actions=50)
    request: RankRequest = parsed[0] if isinstance(parsed, tuple) else parsed
    return request


DOCTESTED = [
    bench.workload,
    bench.load,
    bench.profile,
    bench.process,
    bench.records,
    bench.postgres,
    bench.run,
]


@pytest.mark.parametrize("module", DOCTESTED, ids=str)
def test_doctests(module: object) -> None:
    failures, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried > 0
    assert failures == 0


def test_the_learner_rate_leaves_out_the_idle_tail_after_the_backlog() -> None:
    # 1,000 events/s steadily; the backlog of 3,500 ran out at 3.6 s, seen at the 4.0 s poll.
    series = [(0.0, 0), (1.0, 100), (2.0, 1100), (3.0, 2100), (4.0, 3500)]
    rate, seconds = bench.records.backlog_rate(series, 3500)
    assert rate == pytest.approx(1000.0) and seconds == pytest.approx(2.0)
    # Too few samples inside the backlog: the slope from the start to the end.
    assert bench.records.backlog_rate([(0.5, 0), (2.0, 3500)], 3500) == (1750.0, 2.0)


def test_rank_bodies_have_the_issue_shape() -> None:
    bodies = rank_bodies(Workload(n_bodies=32))
    assert len(bodies) == 32
    for body in bodies:
        assert len(body["actions"]) == N_ACTIONS == 10
        assert count_context_features(body) == CONTEXT_FEATURES == 20
        assert all(count_action_features(a) == ACTION_FEATURES == 3 for a in body["actions"])
        assert len({a["id"] for a in body["actions"]}) == N_ACTIONS


def test_rank_bodies_are_deterministic_and_varied() -> None:
    first = [encode_body(b) for b in rank_bodies(Workload(seed=3, n_bodies=16))]
    again = [encode_body(b) for b in rank_bodies(Workload(seed=3, n_bodies=16))]
    other = [encode_body(b) for b in rank_bodies(Workload(seed=4, n_bodies=16))]
    assert first == again
    assert first != other
    assert len(set(first)) == 16


def test_rank_bodies_pass_the_server_validation() -> None:
    for i, body in enumerate(rank_bodies(Workload(n_bodies=8))):
        request = _server_parse(encode_body(body, f"ev-{i}"))
        assert request.event_id == f"ev-{i}"
        assert [a.id for a in request.actions] == [a["id"] for a in body["actions"]]


def test_body_tail_with_an_event_id_is_the_encoded_body() -> None:
    body = rank_bodies(Workload(n_bodies=1))[0]
    sent = '{"eventId":"e7",' + body_tail(body)
    assert json.loads(sent) == json.loads(encode_body(body, "e7"))


def test_dsjson_lines_match_what_the_server_gives_vw() -> None:
    for i, body in enumerate(rank_bodies(Workload(n_bodies=4))):
        request = _server_parse(encode_body(body, f"ev-{i}"))
        assert json.loads(context_line(body)) == json.loads(server_context_line(request))


def test_joined_lines_parse_and_learn_in_vw() -> None:
    workspace = vw.Workspace(ARGUMENTS.split())
    parser = vw.DSJsonFormatParser(workspace)
    body = rank_bodies(Workload(n_bodies=1))[0]
    for n in range(20):
        label = label_for(n)
        assert math.isclose(sum(label.pmf), 1.0, abs_tol=1e-9)
        line = joined_line(body, label, event_id=f"e{n}", timestamp=1.7e9 + n)
        obj = json.loads(line)
        assert obj["_label_cost"] == -label.reward
        assert obj["_label_probability"] == label.pmf[label.chosen_index]
        workspace.learn_one(parser.parse_json(line))
    pmf = cast(
        list[tuple[int, float]], workspace.predict_one(parser.parse_json(context_line(body)))
    )
    assert len(pmf) == N_ACTIONS


def test_learn_lines_are_what_the_learner_gives_vw() -> None:
    for i, body in enumerate(rank_bodies(Workload(n_bodies=4))):
        request = _server_parse(encode_body(body, f"ev-{i}"))
        label = label_for(i)
        decision = Decision(
            event_id=request.event_id,
            timestamp=1.7e9,
            request=request,
            pmf=label.pmf,
            chosen_index=label.chosen_index,
            model_version=1,
        )
        event = JoinedEvent(
            decision=decision,
            reward=label.reward,
            reward_count=0 if label.defaulted else 1,
            defaulted=label.defaulted,
            joined_at=1.7e9 + 5,
        )
        assert json.loads(learn_line(body, label)) == json.loads(_vw_encode(learn_object(event)))


def test_the_bare_loop_calls_vw_as_banditd_does() -> None:
    """The baseline goes through the bindings VWPolicy uses, and they learn what the public API
    learns."""
    body = rank_bodies(Workload(n_bodies=1))[0]
    lines = [learn_line(body, label_for(n)) for n in range(20)]
    bound, public = vw.Workspace(ARGUMENTS.split()), vw.Workspace(ARGUMENTS.split())
    found = vw_loop.bindings(bound)
    assert found is not None  # the installed vowpal_wabbit_next has them, as VWPolicy expects
    core, parse = found
    parser = vw.DSJsonFormatParser(public)
    for line in lines:
        core.learn_multi_ex_one(parse(core, line.encode()))
        public.learn_one(parser.parse_json(line))
    assert bytes(bound.serialize()) == bytes(public.serialize())


def test_reward_share_is_half_of_events() -> None:
    assert sum(is_rewarded(n) for n in range(10_000)) == 5_000
    assert sum(is_rewarded(n, 0.2) for n in range(10_000)) == 2_000


def _requests(tmp_path: Path, **fields: Any) -> list[bytes]:
    tails = tmp_path / "tails.txt"
    tails.write_text("\n".join(body_tail(b) for b in rank_bodies(Workload(n_bodies=3))) + "\n")
    spec = LoadSpec(
        url="http://127.0.0.1:1", connections=1, duration=1, tails_path=str(tails), **fields
    )
    stream = _Requests(spec, "127.0.0.1:1")
    return [stream.next() for _ in range(12)]


def test_python_generator_ranks_fresh_event_ids(tmp_path: Path) -> None:
    sent = _requests(tmp_path, kind="rank", id_prefix="r8-")
    bodies = [json.loads(r.split(b"\r\n\r\n", 1)[1]) for r in sent]
    assert all(r.startswith(b"POST /v1/rank HTTP/1.1\r\n") for r in sent)
    assert [b["eventId"] for b in bodies] == [f"r8-{i}" for i in range(12)]
    assert all(len(b["actions"]) == N_ACTIONS for b in bodies)


def test_python_generator_mixed_rewards_ranked_events_after_the_lag(tmp_path: Path) -> None:
    sent = _requests(tmp_path, kind="mixed", id_prefix="m-", lag=4, share_percent=50)
    paths = [r.split(b" ", 2)[1].decode() for r in sent]
    rewards = [p for p in paths if p.endswith("/reward")]
    assert rewards and rewards[0] == "/v1/events/m-0/reward"
    first_reward = paths.index(rewards[0])
    assert first_reward > 4
    assert paths[:first_reward] == ["/v1/rank"] * first_reward


def _load(rps: float, p50: float = 1.0, p99: float = 2.0, seconds: float = 10.0) -> LoadResult:
    return LoadResult(
        requests=int(rps * seconds),
        seconds=seconds,
        non_2xx=0,
        socket_errors=0,
        timeouts=0,
        p50_ms=p50,
        p90_ms=(p50 + p99) / 2,
        p99_ms=p99,
        mean_ms=p50,
        max_ms=p99 * 2,
        generator_cpu=1.0,
    )


def _run(server: str, endpoint: str, c: int, rps: float, cpu: float = 0.95, **kw: float) -> HttpRun:
    return HttpRun(
        server=server,
        endpoint=endpoint,
        connections=c,
        load=_load(rps, **kw),
        server_cpu=cpu,
        server_kernel_cpu=cpu / 4,
        generator_cpu=0.1,
        foreign_cpu=0.02,
    )


def _synthetic() -> BenchResult:
    meta = Meta(
        started_at="2026-01-01 00:00 UTC",
        quick=False,
        duration=8.0,
        repeat=2,
        connections=(1, 32),
        cores=2,
        cpu_model="Test CPU",
        load_generator="wrk test (found on PATH), 1 thread",
        server_core=0,
        generator_core=1,
        load_average_start=(0.5, 0.4, 0.3),
        load_average_end=(0.6, 0.5, 0.4),
        git_commit="abc1234",
        git_dirty=False,
        python="3.11.7",
    )
    http = (
        _run("minimal", "rank", 1, 2000),
        _run("banditd", "rank", 1, 800),
        _run("minimal", "rank", 32, 5000, cpu=0.5),  # other processes took half its core
        _run("minimal", "rank", 32, 4000),  # a slower repeat: the best run counts
        _run("banditd", "rank", 32, 3500, p50=4.0, p99=10.0),
        _run("minimal", "reward", 32, 6000),
        _run("banditd", "reward", 32, 4200),
        _run("floor", "reward", 32, 12_000),
    )
    return BenchResult(
        meta=meta,
        workload={"seed": 5, "actions": 10},
        http=http,
        vw=VWLoopResult(
            arguments=ARGUMENTS, examples=100, predict_per_second=12_000, learn_per_second=10_000
        ),
        learner=LearnerResult(
            backlog=50_000, learned=50_000, seconds=10.0, per_second=7_500, server_cpu=0.97
        ),
        backlog=BacklogRankResult(
            backlog=40_000,
            with_backlog=_run("banditd-backlog", "rank", 32, 3000, p50=5.0, p99=30.0),
            without_backlog=_run("banditd-backlog", "rank", 32, 3400, p50=4.0, p99=10.0),
            learned_during=30_000,
            backlog_left=10_000,
        ),
        memory=MemoryResult(
            seconds=300.0,
            target_rate=1750.0,
            load=_load(1700),
            warmup_seconds=30.0,
            samples=((0.0, 50_000), (30.0, 100_000), (150.0, 104_000), (299.0, 103_000)),
            learned=200_000,
            cursor=199_000,
            lag_events=1_000,
            lag_seconds=2.5,
        ),
        profiles=(
            ProfileSummary(
                run="banditd rank c=32",
                samples=800,
                idle_share=0.1,
                threads=(("main (event loop)", 0.8),),
                top_self=(("schemas.py:parse_rank", 0.2),),
                top_inclusive=(("routes.py:rank", 0.7),),
            ),
        ),
    )


def test_targets_are_judged_on_the_best_runs() -> None:
    result = _synthetic()
    assert result.ratio("rank", 32) == pytest.approx(3500 / 5000)
    judged = {t.name.split(" ")[0] + " " + t.target: t for t in targets(result)}
    verdicts = [t.passed for t in targets(result)]
    # rank 0.70 ≥ 0.6; p99/p50 2.5 ≤ 3; reward 0.70 < 0.8; learner 0.75 ≥ 0.7; 7,500 ≥ 2,000;
    # drop 11.8% ≤ 15%; p99 3× > 2×; memory spread 4% ≤ 10%; learned 99.5% ≥ 99%; lag 2.5 s
    # < 11 s.
    assert verdicts == [True, True, False, True, True, True, False, True, True, True]
    assert judged["reward ≥ 0.80×"].measured == "0.700× (per CPU-s 0.70×)"
    # Per CPU-second, the minimal handler did 10,000 req/s and banditd 3,684: 0.37×.
    assert result.cpu_ratio("rank", 32) == pytest.approx(3500 / 0.95 / 10_000)
    assert judged["rank ≥ 0.60×"].measured == "0.700× (per CPU-s 0.37×)"


def test_a_phase_not_measured_is_neither_pass_nor_miss() -> None:
    result = _synthetic()
    partial = BenchResult(meta=result.meta, workload={}, http=result.http)
    verdicts = {t.name: t.passed for t in targets(partial)}
    assert verdicts["learner ≥ 2,000 joined events/s"] is None
    assert "not measured" in render_markdown(partial)


def test_report_writer_produces_json_and_markdown(tmp_path: Path) -> None:
    json_path, md_path = write(_synthetic(), tmp_path / "results")
    data = json.loads(json_path.read_text())
    assert data["meta"]["cores"] == 2
    assert data["meta"]["load_generator"].startswith("wrk")
    bandit_rank_32 = next(
        r
        for r in data["http"]
        if (r["server"], r["endpoint"], r["connections"]) == ("banditd", "rank", 32)
    )
    assert bandit_rank_32["ratio_to_minimal"] == pytest.approx(0.7)
    assert bandit_rank_32["load"]["p99_ms"] == 10.0
    assert data["learner"]["ratio_to_bare_learn"] == pytest.approx(0.75)
    assert data["memory"]["spread"] == pytest.approx(0.04)
    assert len(data["targets"]) == 10
    markdown = md_path.read_text()
    assert "| rank | 32 | 5,000 | 3,500 | 0.70× | 0.37× | 4.00 / 7.00 / 10.00 |" in markdown
    assert "| reward | 32 | 6,000 | 4,200 | 0.70× | 0.70× |" in markdown
    assert bandit_rank_32["cpu_ratio_to_minimal"] == pytest.approx(0.3684, abs=1e-4)
    assert "7,500" in markdown and "0.75×" in markdown
    assert "**miss**" in markdown and "| pass |" in markdown
    assert "2 cores (Test CPU)" in markdown
    assert "`schemas.py:parse_rank` 20%" in markdown
    # CPU per request: minimal reward 0.95 s of CPU (a quarter of it kernel) / 6,000 requests
    # = 119 + 40 µs; banditd's 0.95 s / 4,200 = 170 + 57 µs.
    assert "| reward | 32 | 119 + 40 | 170 + 57 | +51 / +17 |" in markdown
    # The asyncio floor's reward: 0.95 s / 12,000 = 59 + 20 µs, so aiohttp took 158 - 79 µs.
    assert "| +51 / +17 | 59 + 20 (79 µs in aiohttp) |" in markdown
    assert "| rank | 32 | 75 + 25 | 204 + 68 | +129 / +43 | — |" in markdown
    floor = next(r for r in data["http"] if r["server"] == "floor")
    assert floor["ratio_to_minimal"] is None
    assert bandit_rank_32["cpu_us_per_request"] == {
        "user": pytest.approx(0.95 * 0.75 / 3500 * 1e6),
        "kernel": pytest.approx(0.95 * 0.25 / 3500 * 1e6),
    }


def test_budgets_say_what_each_throughput_target_leaves_banditd(tmp_path: Path) -> None:
    synthetic = _synthetic()
    assert synthetic.vw is not None
    vw_rates = replace(synthetic.vw, predict_per_cpu_second=40_000, learn_per_cpu_second=40_000)
    # banditd's writer timed its transactions at 40 µs a decision and 16 µs a reward.
    commits = {"rank": 40.0, "reward": 16.0}
    http = tuple(
        replace(run, items_per_commit=17.0, commit_us_per_item=commits[run.endpoint])
        if run.server == "banditd"
        else run
        for run in synthetic.http
    )
    result = replace(synthetic, vw=vw_rates, http=http)
    rank, reward, learner = budgets(result)
    # Rank: the minimal handler's best run used 0.5 s of CPU for 5,000 requests (100 µs each);
    # at 0.6x banditd may spend 166.7 µs, so add 66.7; it spent 0.95 / 3,500 = 271.4 µs.
    assert (rank.baseline_us, rank.banditd_us) == pytest.approx((100.0, 0.95e6 / 3500))
    assert (rank.allowed_us, rank.may_add_us) == pytest.approx((100 / 0.6, 100 / 0.6 - 100))
    # Of the 66.7 µs, VW's predict takes 25 and the decision's store transaction 40.
    assert (rank.vw_us, rank.store_us, rank.measured_alone_us) == pytest.approx((25, 40, 65))
    assert reward.may_add_us == pytest.approx(0.95e6 / 6000 * (1 / 0.8 - 1))
    assert (reward.vw_us, reward.store_us) == (None, 16.0)
    # Learner: VW learns in 25 µs; at 0.7x the learner may take 35.7 µs an event; it took
    # 1 / (7,500 / 0.97) s = 129.3 µs.
    assert (learner.baseline_us, learner.banditd_us) == pytest.approx((25.0, 0.97e6 / 7500))
    assert learner.may_add_us == pytest.approx(25 / 0.7 - 25)
    assert learner.measured_alone_us is None
    _, md_path = write(result, tmp_path)
    markdown = md_path.read_text()
    assert (
        "| rank ≥ 0.6× minimal handler at 32 connections "
        "| 100 | 167 | 67 | 25 | 40 | 2 | 271 | 171 | 106 |" in markdown
    )
    assert (
        "| reward ≥ 0.8× minimal handler at 32 connections "
        "| 158 | 198 | 40 | — | 16 | 24 | 226 | 68 | 52 |" in markdown
    )
    assert (
        "| learner ≥ 0.7× bare VW parse + learn | 25 | 36 | 11 | — | — | — | 129 | 104 | — |"
        in markdown
    )
    data = json.loads((tmp_path / "latest.json").read_text())
    assert [b["may_add_us"] for b in data["budgets"]] == pytest.approx(
        [b.may_add_us for b in (rank, reward, learner)]
    )
    banditd_rank = next(
        r for r in data["http"] if r["server"] == "banditd" and r["connections"] == 32
    )
    assert banditd_rank["commit_us_per_item"] == 40.0
    # Without the bare loop's per-CPU rates there is no learner budget; without the writer's
    # timing no store column, and nothing is set apart from what banditd added.
    bare = budgets(synthetic)
    assert [b.name.split(" ")[0] for b in bare] == ["rank", "reward"]
    assert [b.measured_alone_us for b in bare] == [None, None]


def test_a_noisy_pair_is_judged_per_cpu_second() -> None:
    result = _synthetic()
    noisy = tuple(
        HttpRun(
            server=r.server,
            endpoint=r.endpoint,
            connections=r.connections,
            load=r.load,
            server_cpu=r.server_cpu,
            generator_cpu=r.generator_cpu,
            foreign_cpu=0.5 if r.server == "minimal" else r.foreign_cpu,
        )
        for r in result.http
    )
    judged = targets(BenchResult(meta=result.meta, workload={}, http=noisy))[0]
    # 0.70× raw would pass; per CPU-second banditd does 0.37× of the minimal handler's work.
    assert judged.passed is False
    assert judged.measured == "0.700× (per CPU-s 0.37×) — noisy, judged per CPU-s"


def _pg_run(endpoint: str, edges: int, rps: float, edge_cpu: float, database: float) -> PostgresRun:
    """A PostgreSQL run: the edges use ``edge_cpu`` of the 0.7 cores banditd used, and the
    database ``database`` cores, a tenth of it in its own processes; one edge's writer put 16
    items in a transaction, at 900 µs an item."""
    run = _run(f"banditd-pg-{edges}", endpoint, 32, rps, cpu=0.7)
    if edges == 1:
        run = replace(run, items_per_commit=16.0, commit_us_per_item=900.0)
    return PostgresRun(
        edges=edges,
        run=run,
        edge_cpu=edge_cpu,
        edge_kernel_cpu=edge_cpu / 10,
        supervisor_trainer_cpu=0.7 - edge_cpu,
        backend_cpu=0.9 * database,
        backend_kernel_cpu=0.3 * database,
        background_cpu=0.1 * database,
        other_clients_cpu=0.01,
        sessions=12,
    )


def _with_postgres() -> BenchResult:
    postgres = PostgresResult(
        server="127.0.0.1:5432/test",
        settings=(("server_version", "15.20"), ("synchronous_commit", "on")),
        local=True,
        placement="banditd's processes were pinned to core 0.",
        runs=(
            _pg_run("rank", 1, 1000, edge_cpu=0.6, database=0.13),
            _pg_run("rank", 2, 1200, edge_cpu=0.65, database=0.2),
            _pg_run("reward", 1, 2000, edge_cpu=0.5, database=0.2),
            _pg_run("reward", 2, 2100, edge_cpu=0.55, database=0.3),
        ),
        minimal=(_run("minimal", "rank", 32, 5000), _run("minimal", "reward", 32, 6000)),
        learner=PostgresLearner(
            learner=LearnerResult(
                backlog=12_000, learned=12_000, seconds=4.0, per_second=3000, server_cpu=0.5
            ),
            backend_us=80.0,
            background_us=5.0,
        ),
    )
    return replace(_synthetic(), postgres=postgres)


def test_the_postgres_section_sets_each_figure_beside_its_baselines(tmp_path: Path) -> None:
    json_path, md_path = write(_with_postgres(), tmp_path)
    markdown = md_path.read_text()
    assert "## PostgreSQL store" in markdown
    # Rank: 1,000 req/s on one edge, 1,200 on two; the phase's minimal handler did 5,000 and the
    # http phase's SQLite banditd 3,500.
    # Per CPU-second: 1,000 / (0.7 + 0.13) = 1,205 beside this phase's minimal handler's
    # 5,000 / 0.95 = 5,263 and SQLite's 3,500 / 0.95 = 3,684.
    assert (
        "| rank | 32 | 5,000 | 3,500 | 1,000 | 1,200 | 0.20× | 0.24× | 0.29× | 1.20× "
        "| 0.23× | 0.33× |" in markdown
    )
    assert "| reward | 32 | 6,000 | 4,200 | 2,000 | 2,100 | 0.33× | 0.35× | 0.48× | 1.05× |" in (
        markdown
    )
    # One edge: 0.6 cores of edges / 1,000 req/s = 600 µs (60 kernel); supervisor and trainer
    # 0.1 / 1,000 = 100; the database 0.117 + 0.013 cores = 117 + 13 = 130 µs, 0.13 / 0.83 of
    # the CPU banditd and the database used = 16%; 16 items a transaction of 16 × 900 µs.
    assert (
        "| rank | 32 | 1 | 600 (60 kernel) | 100 | 117 (39 kernel) | 13 | 130 | 16% | 12 "
        "| 16.0 | 14.4 | 70% + 13% |" in markdown
    )
    assert (
        "| rank | 32 | 2 | 542 (54 kernel) | 42 | 150 (50 kernel) | 17 | 167 | 22% | 12 | — | — |"
        in (markdown)
    )
    # The learner: 3,000 events/s beside SQLite's 7,500; 80 + 5 µs of database per event.
    assert "| 3,000 | 333 | 7,500 | 0.40× | 50% | 85 (80 + 5) |" in markdown
    # Projection: 1 / 130 µs = 7,692 req/s per database core; an edge does 1,000 / 0.6 = 1,667
    # req/s per CPU-second, so a core keeps up with 4.6 edges, 4 cores with 18.5.
    assert "k × 1 / 130 µs = k × 7,692 req/s" in markdown
    assert "k × 7,692 / 1,667 = k × 4.6 edges" in markdown
    assert "| 4 | 30,769 | 18.5 | 40,000 | 10.0 |" in markdown
    data = json.loads(json_path.read_text())
    rank = data["postgres"]["runs"][0]
    assert rank["us_per_request"]["database"] == pytest.approx(130.0)
    assert rank["ratio_to_minimal"] == pytest.approx(0.2)
    projection = data["postgres"]["projections"][0]
    assert projection["endpoint"] == "rank"
    assert projection["by_cores"]["2"]["max_rate"] == pytest.approx(2e6 / 130)


def test_a_remote_postgres_server_has_no_database_figures(tmp_path: Path) -> None:
    result = _with_postgres()
    assert result.postgres is not None
    remote = replace(result, postgres=replace(result.postgres, local=False))
    _, md_path = write(remote, tmp_path)
    markdown = md_path.read_text()
    assert "another machine: its CPU is not measured" in markdown
    assert "| not measured |" in markdown
    assert "### Projection" not in markdown
