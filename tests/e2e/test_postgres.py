"""Edges and trainers on one PostgreSQL database, as deployed (issue 19, "Judged by").

Each test runs two edges (``banditd serve --role edge`` on two ports) and a trainer
(``banditd train``; a standby too for the failover) in a schema of its own, with rank traffic
spread over both edges and most rewards sent to the edge that did *not* rank the event. Checked:

* **multi-edge**: both edges serve each new model version within one refresh period of its
  publication (the latency is measured and printed);
* **failover**: SIGKILL of the active trainer; the standby takes the lease at once and
  continues from the checkpoint (the takeover time is measured and printed);
* **edge loss**: SIGKILL of one edge; the other keeps serving;
* **connections terminated**: PostgreSQL ends every session of the test's processes a few
  times, then again and again for a few seconds; the edges answer 503 with ``Retry-After``
  (never another 5xx) meanwhile, and 2xx again by themselves (the time is measured and
  printed); the trainer renews its lease on a new session and learns on (or, should its
  renewals fail for a whole ``lease_ttl``, exits 1 and is started again, as systemd would);
* **lease lapse**: the ``lease`` table locked for longer than ``lease_ttl``: the trainer
  exits 1 and, started again, resumes from the checkpoint;

and after each: every acknowledged decision and reward is stored, every decision was joined
exactly once, and the learner learned each joined event exactly once: its checkpoint's cursor
and learned count are the number of joined events, and its model predicts as the joined
sequence learned once from a fresh model, offline.

The test's processes name their sessions (``application_name`` in the store URL) so that the
terminations hit them and not the tests running beside them on the same database. Periods are
bounded with a margin for a loaded machine (``SLACK``); measured figures are printed as
``MEASURED name=value`` lines (``pytest -s``) and written to ``measured.json`` in the test's
temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg
import pytest

from server.client import AsyncClient, RetryPolicy
from stores.postgres.store import PostgresStore
from tests import pg
from tests.e2e.conftest import (
    HOST,
    LEARN_INTERVAL,
    NO_ACK,
    PREDICTION_TOL,
    SOFTMAX_ARGUMENTS,
    Process,
    World,
    configure_short_loop,
    free_port,
    learn,
    max_difference,
    predictions,
    probe_requests,
    round_rng,
    until_healthy,
)

pytestmark = pytest.mark.slow

REFRESH = 0.25
"""The edges' refresh period (``refresh_interval``)."""
LEASE_TTL = 2.0
SLACK = 2.0
"""Seconds beyond a period a loaded machine may take before a check counts as late."""
RATE = 50.0
"""Rounds started per second at most."""
CONCURRENCY = 8
CROSS = 9
"""Of every ten rounds, how many send the reward to the edge that did not rank the event."""
SEED = 19
SETTLE_TIMEOUT = 60.0
"""Seconds the trainer may take to join and learn the last events after the traffic."""
TAKEOVER_TIMEOUT = 10.0
BURST_FROM = 100_000
"""Round numbers of the burst in flight on the edge that is killed (apart from the traffic's)."""
ENV = {
    "BANDITD_LEARN_INTERVAL": str(LEARN_INTERVAL),
    "BANDITD_REFRESH_INTERVAL": str(REFRESH),
    "BANDITD_REPORT_INTERVAL": str(REFRESH),
    "BANDITD_COMMAND_POLL": "0.05",
    "BANDITD_LEASE_TTL": str(LEASE_TTL),
    "BANDITD_TRAINER_NICE": "0",
}


@dataclass
class Ledger:
    """What the clients were told: acknowledged decisions (with the chosen action) and rewards,
    and every status each edge answered, with when."""

    ranked: dict[str, str] = field(default_factory=dict)
    rewarded: dict[str, float] = field(default_factory=dict)
    crossed: int = 0
    """Acknowledged rewards sent to the edge that did not rank their event."""
    statuses: Counter[int] = field(default_factory=Counter)
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    """(time.time(), edge, status) of every response."""
    without_retry_after: int = 0
    unanswered: int = 0
    """Requests that got no response (their edge died): no acknowledgement."""
    other_errors: list[str] = field(default_factory=list)

    def note(self, edge: str, response: aiohttp.ClientResponse, body: str) -> None:
        self.statuses[response.status] += 1
        self.answers.append((time.time(), edge, response.status))
        if response.status == 503 and "Retry-After" not in response.headers:
            self.without_retry_after += 1
        if response.status >= 500 and response.status != 503:
            self.other_errors.append(f"{response.status} from edge {edge}: {body[:300]}")


@dataclass
class Sighting:
    """The model version an edge served at a moment."""

    at: float
    edge: str
    version: int


@dataclass
class Deployment:
    """Two edges and one or two trainers on a schema of their own, their sessions named
    ``name``."""

    schema: str
    logs: Path
    name: str = field(default_factory=lambda: f"banditd-e2e-{uuid.uuid4().hex[:10]}")
    edges: dict[str, Process] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    trainers: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        store = f"{pg.schema_url(self.schema)}&application_name={self.name}"
        common = ["--store", store]
        for edge in "AB":
            port = free_port()
            self.urls[edge] = f"http://{HOST}:{port}"
            self.edges[edge] = Process(
                f"edge {edge}",
                ["serve", "--role", "edge", *common, "--host", HOST, "--port", str(port)],
                self.logs / f"edge-{edge}.log",
                env=ENV,
            )
        self.trainers = [
            Process(f"trainer {i}", ["train", *common], self.logs / f"trainer-{i}.log", env=ENV)
            for i in (1, 2)
        ]

    def everyone(self) -> list[Process]:
        return [*self.trainers, *self.edges.values()]

    def open_store(self) -> PostgresStore:
        """A store on the schema for the test's own reads (sessions not named ``name``)."""
        return PostgresStore(pg.schema_url(self.schema))

    async def start(self, http: aiohttp.ClientSession, *, standby: bool) -> None:
        """Start the trainer and both edges, wait until they answer, install the short loop's
        configuration; then start the standby (``standby``) once the lease is held."""
        self.trainers[0].start()
        for edge in self.edges.values():
            edge.start()
        for name, edge in self.edges.items():
            assert edge.proc is not None
            await until_healthy(http, self.urls[name], edge.proc, edge.tail, edge.name)
        async with AsyncClient(self.urls["A"], retry=RetryPolicy(attempts=1)) as client:
            await configure_short_loop(client)
        if standby:
            await wait_for_holder(self, self.trainers[0])
            self.trainers[1].start()

    def terminate_sessions(self) -> int:
        """End every PostgreSQL session of this deployment's processes; how many there were."""
        with psycopg.connect(pg.URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database() "
                "AND pid <> pg_backend_pid()",
                [self.name],
            ).fetchall()
        return len(rows)


def holder_of(process: Process) -> str:
    assert process.proc is not None
    return f":{process.proc.pid}"


async def wait_for_holder(deployment: Deployment, trainer: Process) -> float:
    """Poll the lease row until ``trainer`` holds it; the time.time() it was first seen."""
    store = deployment.open_store()
    try:
        deadline = time.monotonic() + TAKEOVER_TIMEOUT + 30.0
        while time.monotonic() < deadline:
            lease = await asyncio.to_thread(store.lease, time.time())
            if lease is not None and lease.holder.endswith(holder_of(trainer)):
                return time.time()
            assert trainer.alive(), f"{trainer.name} exited:\n{trainer.tail()}"
            await asyncio.sleep(0.01)
    finally:
        store.close()
    pytest.fail(f"{trainer.name} did not take the lease:\n{trainer.tail()}")


async def one_round(
    http: aiohttp.ClientSession,
    deployment: Deployment,
    world: World,
    index: int,
    ledger: Ledger,
    via: str | None = None,
) -> None:
    """Rank on one live edge, reward (usually) on the other, or both on edge ``via``; record
    what was acknowledged."""
    alive = [name for name, edge in deployment.edges.items() if edge.alive()]
    if not alive:
        return
    ranker = via or alive[index % len(alive)]
    rewarder = via or (alive[(index + 1) % len(alive)] if index % 10 < CROSS else ranker)
    rng = round_rng(SEED, index)
    user = rng.randrange(world.users)
    event_id = f"r-{index}"
    try:
        async with http.post(
            f"{deployment.urls[ranker]}/v1/rank", json=world.rank_body(event_id, user)
        ) as response:
            body = await response.text()
            ledger.note(ranker, response, body)
            if response.status != 201:
                return
            chosen = json.loads(body)["rewardActionId"]
    except NO_ACK:
        ledger.unanswered += 1
        return
    ledger.ranked[event_id] = chosen
    value = world.reward(rng, user, chosen)
    try:
        async with http.post(
            f"{deployment.urls[rewarder]}/v1/events/{event_id}/reward", json={"value": value}
        ) as response:
            ledger.note(rewarder, response, await response.text())
            if response.status == 204:
                ledger.rewarded[event_id] = value
                ledger.crossed += rewarder != ranker
    except NO_ACK:
        ledger.unanswered += 1


async def send_traffic(
    http: aiohttp.ClientSession,
    deployment: Deployment,
    ledger: Ledger,
    rounds: int,
    at: dict[int, Callable[[], None]] | None = None,
) -> None:
    """``rounds`` rounds at up to ``RATE`` a second, ``CONCURRENCY`` at a time; ``at[i]`` is
    called before round ``i`` starts."""
    world = World()
    pending: set[asyncio.Task[None]] = set()
    for index in range(rounds):
        if at and index in at:
            at[index]()
        task = asyncio.create_task(one_round(http, deployment, world, index, ledger))
        pending.add(task)
        task.add_done_callback(pending.discard)
        while len(pending) >= CONCURRENCY:
            await asyncio.sleep(0.001)
        await asyncio.sleep(1 / RATE)
    await asyncio.gather(*pending)


@contextlib.asynccontextmanager
async def watching(
    http: aiohttp.ClientSession, deployment: Deployment
) -> AsyncIterator[list[Sighting]]:
    """Record each live edge's serving model version every 20 ms while the block runs."""
    seen: list[Sighting] = []
    stop = asyncio.Event()

    async def watch() -> None:
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            for name, url in deployment.urls.items():
                if not deployment.edges[name].alive():
                    continue
                with contextlib.suppress(*NO_ACK):
                    async with http.get(f"{url}/healthz") as response:
                        body = await response.json()
                        seen.append(Sighting(time.time(), name, int(body["modelVersion"])))
            await asyncio.sleep(0.02)

    task = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        stop.set()
        await task


def settle(deployment: Deployment, ledger: Ledger, trainer: Process) -> None:
    """Wait until every acknowledged decision is joined and the last checkpoint covers every
    joined event (or fail, quoting the trainer's log)."""
    store = deployment.open_store()
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            joined, due_left = store.last_seq(), store.counts(time.time()).pending_join
            checkpoint = store.load_checkpoint()
            cursor = checkpoint.cursor if checkpoint else 0
            if cursor == joined and due_left == 0 and joined >= len(ledger.ranked):
                return
            assert time.monotonic() < deadline, (
                f"not learned in {SETTLE_TIMEOUT} s: checkpoint at {cursor}, joined {joined}, "
                f"{due_left} still to join, {len(ledger.ranked)} acknowledged\n{trainer.tail()}"
            )
            time.sleep(0.2)
    finally:
        store.close()


def check_ledger(deployment: Deployment, ledger: Ledger) -> None:
    """Every acknowledged decision and reward is stored, every decision joined exactly once,
    and every joined event learned exactly once."""
    store = deployment.open_store()
    try:
        missing = [i for i in ledger.ranked if store.get_decision(i) is None]
        assert not missing, f"{len(missing)} acknowledged decisions not stored: {missing[:5]}"
        for event_id, action in ledger.ranked.items():
            decision = store.get_decision(event_id)
            assert decision is not None
            assert decision.request.actions[decision.chosen_index].id == action, event_id
        counted = store.counted_rewards(list(ledger.rewarded))
        lost = [i for i, v in ledger.rewarded.items() if v not in [r.value for r in counted[i]]]
        assert not lost, f"{len(lost)} acknowledged rewards not stored: {lost[:5]}"
        events = store.joined_after(0, 1_000_000)
        last_seq = store.last_seq()
        counts = store.counts(time.time())
        checkpoint = store.load_checkpoint()
    finally:
        store.close()
    by_id = {e.decision.event_id: e for e in events}
    assert len(by_id) == len(events), "an event was joined twice"
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "seq numbers skip"
    unjoined = sorted(set(ledger.ranked) - set(by_id))
    assert not unjoined, f"{len(unjoined)} acknowledged decisions not joined: {unjoined[:5]}"
    wrong = [i for i, v in ledger.rewarded.items() if by_id[i].reward != v or by_id[i].defaulted]
    assert not wrong, f"acknowledged rewards not joined as sent: {wrong[:5]}"
    # The store's own totals agree (a decision the client never heard of may be counted too).
    assert counts.joined == len(events) and counts.pending_join == 0, counts
    assert counts.decisions == len(events) >= len(ledger.ranked), counts
    assert counts.rewards >= len(ledger.rewarded), counts
    assert checkpoint is not None
    assert checkpoint.cursor == last_seq == len(events) == checkpoint.learned_count, (
        checkpoint.cursor,
        last_seq,
        len(events),
        checkpoint.learned_count,
    )
    # And by the model itself: the checkpoint predicts as the joined sequence learned once,
    # in order, from a fresh model (a trainer that relearned or skipped events would not).
    probes = probe_requests()
    offline = learn(checkpoint.arguments, events)
    for arguments in (checkpoint.arguments, SOFTMAX_ARGUMENTS):
        served = predictions(arguments, checkpoint.model, probes)
        replayed = predictions(arguments, offline, probes)
        assert max_difference(served, replayed) <= PREDICTION_TOL, (arguments, served, replayed)


def measured(tmp_path: Path, **figures: float | int | None) -> None:
    """Print the figures as ``MEASURED name=value`` and add them to ``measured.json``."""
    path = tmp_path / "measured.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    for name, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"MEASURED {name}={shown}")
        known[name] = value
    path.write_text(json.dumps(known, indent=2))


def stop_all(deployment: Deployment) -> None:
    for process in deployment.everyone():
        if process.alive():
            assert process.terminate() == 0, process.tail()


async def test_both_edges_serve_each_new_model_within_a_period(tmp_path: Path) -> None:
    rounds = 500
    ledger = Ledger()
    with pg.fresh_schema() as schema:
        deployment = Deployment(schema, tmp_path)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await deployment.start(http, standby=False)
                async with watching(http, deployment) as seen:
                    started = time.time()
                    await send_traffic(http, deployment, ledger, rounds)
                    await asyncio.to_thread(settle, deployment, ledger, deployment.trainers[0])
                    ended = time.time()
            stop_all(deployment)
        finally:
            for process in deployment.everyone():
                process.kill()
        check_ledger(deployment, ledger)
        store = deployment.open_store()
        try:
            models = store.list_models()
        finally:
            store.close()
    assert ledger.statuses[201] >= rounds * 0.95 and not ledger.other_errors, ledger.statuses
    assert ledger.crossed >= 0.8 * len(ledger.rewarded), (ledger.crossed, len(ledger.rewarded))
    published = [m for m in models if started < m.created_at < ended - REFRESH - SLACK]
    assert len(published) >= 3, [(m.version, m.created_at - started) for m in models]
    latencies: list[float] = []
    for model in published:
        for edge in "AB":
            first = next(
                (s.at for s in seen if s.edge == edge and s.version >= model.version), None
            )
            assert first is not None and first - model.created_at <= REFRESH + SLACK, (
                f"edge {edge} served v{model.version} "
                f"{None if first is None else round(first - model.created_at, 2)} s after "
                "its publication"
            )
            latencies.append(first - model.created_at)
    measured(
        tmp_path,
        model_versions=len(published),
        publish_to_edge_max_s=max(latencies),
        publish_to_edge_median_s=statistics.median(latencies),
    )


async def test_the_standby_takes_over_from_the_checkpoint(tmp_path: Path) -> None:
    rounds = 450
    ledger = Ledger()
    killed: list[float] = []
    with pg.fresh_schema() as schema:
        deployment = Deployment(schema, tmp_path)
        active, standby = deployment.trainers

        def kill_trainer() -> None:
            killed.append(time.time())
            active.kill()

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await deployment.start(http, standby=True)
                await asyncio.sleep(1.0)
                assert standby.alive() and "Training as" not in standby.tail(10**6), (
                    f"the standby did not wait for the lease:\n{standby.tail()}"
                )
                traffic = asyncio.create_task(
                    send_traffic(http, deployment, ledger, rounds, {rounds // 3: kill_trainer})
                )
                while not killed and not traffic.done():
                    await asyncio.sleep(0.005)
                took = await wait_for_holder(deployment, standby)
                training = await asyncio.to_thread(wait_for_line, standby, "Training as")
                await traffic
                await asyncio.to_thread(settle, deployment, ledger, standby)
            stop_all(deployment)
        finally:
            for process in deployment.everyone():
                process.kill()
        check_ledger(deployment, ledger)
    assert ledger.statuses[201] >= rounds * 0.95 and not ledger.other_errors, ledger.statuses
    measured(
        tmp_path,
        takeover_lease_s=took - killed[0],
        takeover_training_s=training - killed[0],
    )


def wait_for_line(process: Process, text: str) -> float:
    """Poll ``process``'s log every 10 ms until a line holds ``text``; the time.time() then."""
    deadline = time.monotonic() + TAKEOVER_TIMEOUT + 30.0
    while time.monotonic() < deadline:
        if text in process.tail():
            return time.time()
        assert process.alive(), f"{process.name} exited:\n{process.tail()}"
        time.sleep(0.01)
    pytest.fail(f"{process.name} never printed {text!r}:\n{process.tail()}")


async def test_the_other_edge_keeps_serving_when_one_is_killed(tmp_path: Path) -> None:
    rounds = 400
    ledger = Ledger()
    killed: list[float] = []
    with pg.fresh_schema() as schema:
        deployment = Deployment(schema, tmp_path)

        async def kill_edge_in_flight(http: aiohttp.ClientSession) -> None:
            """A burst of rounds on B, and B killed while they are in flight."""
            world = World()
            burst = [
                asyncio.create_task(one_round(http, deployment, world, i, ledger, via="B"))
                for i in range(BURST_FROM, BURST_FROM + 4 * CONCURRENCY)
            ]
            await asyncio.sleep(0.01)
            killed.append(time.time())
            deployment.edges["B"].kill()
            await asyncio.gather(*burst)

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await deployment.start(http, standby=False)
                pending: list[asyncio.Task[None]] = []

                def kill_edge() -> None:
                    pending.append(asyncio.create_task(kill_edge_in_flight(http)))

                await send_traffic(http, deployment, ledger, rounds, {rounds // 2: kill_edge})
                await asyncio.gather(*pending)
                await asyncio.to_thread(settle, deployment, ledger, deployment.trainers[0])
            stop_all(deployment)
        finally:
            for process in deployment.everyone():
                process.kill()
        check_ledger(deployment, ledger)
    after = Counter(status for at, edge, status in ledger.answers if edge == "A" and at > killed[0])
    assert after[201] >= rounds // 2 * 0.95 and after[204] >= rounds // 2 * 0.9, after
    assert not ledger.other_errors, ledger.other_errors
    before = Counter(
        edge for at, edge, status in ledger.answers if status == 201 and at < killed[0]
    )
    assert before["B"] > rounds // 5, before
    assert ledger.unanswered > 0, "the kill caught no request in flight on edge B"
    measured(
        tmp_path,
        acknowledged_decisions=len(ledger.ranked),
        acknowledged_rewards=len(ledger.rewarded),
        unanswered_at_kill=ledger.unanswered,
        edge_a_2xx_after_kill=after[201] + after[204],
    )


@contextlib.asynccontextmanager
async def restarted_on_failure(trainer: Process) -> AsyncIterator[list[int | None]]:
    """Start ``trainer`` again whenever it exits 1 while the block runs (at most 3 times), as
    the supervisor or systemd's ``Restart=`` would; yields the exit statuses seen."""
    exits: list[int | None] = []
    done = asyncio.Event()

    async def watch() -> None:
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline and len(exits) < 3:
            if not trainer.alive():
                assert trainer.proc is not None
                exits.append(trainer.proc.returncode)
                if trainer.proc.returncode != 1:
                    return
                trainer.start()
            await asyncio.sleep(0.05)

    task = asyncio.create_task(watch())
    try:
        yield exits
    finally:
        done.set()
        await task


async def test_edges_answer_503_while_postgresql_ends_their_sessions(tmp_path: Path) -> None:
    rounds = 600
    ledger = Ledger()
    terminated: list[tuple[float, int]] = []
    with pg.fresh_schema() as schema:
        deployment = Deployment(schema, tmp_path)
        trainer = deployment.trainers[0]

        async def terminations() -> None:
            await asyncio.sleep(2.0)
            for _ in range(3):
                count = await asyncio.to_thread(deployment.terminate_sessions)
                terminated.append((time.time(), count))
                await asyncio.sleep(2.0)
            outage_end = time.monotonic() + 3.0
            while time.monotonic() < outage_end:
                count = await asyncio.to_thread(deployment.terminate_sessions)
                terminated.append((time.time(), count))
                await asyncio.sleep(0.05)

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await deployment.start(http, standby=False)
                async with restarted_on_failure(trainer) as exits:
                    killer = asyncio.create_task(terminations())
                    await send_traffic(http, deployment, ledger, rounds)
                    await killer
                    await asyncio.to_thread(settle, deployment, ledger, trainer)
                    # The trainer renews its lease on a new session after each termination;
                    # should renewals fail for a whole lease_ttl it exits 1 and comes back.
                    await wait_for_holder(deployment, trainer)
            stop_all(deployment)
        finally:
            for process in deployment.everyone():
                process.kill()
        check_ledger(deployment, ledger)
    last = terminated[-1][0]
    assert all(count > 0 for _, count in terminated[:3]), terminated[:3]
    assert ledger.statuses[503] > 0, f"no 503 while the sessions were ended: {ledger.statuses}"
    assert ledger.without_retry_after == 0, ledger.without_retry_after
    assert not ledger.other_errors, ledger.other_errors[:5]
    assert all(code == 1 for code in exits), exits
    recovered: dict[str, float] = {}
    for edge in "AB":
        again = [at for at, e, status in ledger.answers if e == edge and at > last and status < 300]
        assert again, f"edge {edge} answered no 2xx after the terminations: {ledger.statuses}"
        recovered[edge] = min(again) - last
    first = terminated[0][0]
    ok_times = sorted(at for at, _, status in ledger.answers if status < 300)
    gaps = [b - a for a, b in itertools.pairwise(ok_times) if b > first and a < last]
    measured(
        tmp_path,
        terminations=len(terminated),
        statuses_503=ledger.statuses[503],
        statuses_2xx=ledger.statuses[201] + ledger.statuses[204],
        recovery_a_s=recovered["A"],
        recovery_b_s=recovered["B"],
        longest_without_2xx_s=max(gaps, default=0.0),
        lease_renewals_failed=trainer.tail(10**7).count("could not renew the trainer lease"),
        trainer_restarts=len(exits),
    )


STALL = LEASE_TTL + 1.5
"""Seconds the lease table stays locked: longer than the lease lasts unrenewed."""


async def test_a_trainer_whose_lease_lapsed_exits_and_resumes_from_the_checkpoint(
    tmp_path: Path,
) -> None:
    """Regression: the store stalls the trainer's lease renewals (the ``lease`` table locked,
    as a stuck migration or a long transaction would) for longer than ``lease_ttl``, then lets
    them through. The learner stops when the lease lapses (a standby may have taken it); the
    trainer used to go on renewing the lease without learning, keeping standbys out. It exits
    1 and, started again as systemd or the supervisor would, resumes from the checkpoint."""
    rounds = 450
    ledger = Ledger()
    with pg.fresh_schema() as schema:
        deployment = Deployment(schema, tmp_path)
        trainer = deployment.trainers[0]

        def lock_lease_table() -> None:
            with psycopg.connect(pg.schema_url(schema)) as conn:  # one transaction
                conn.execute("LOCK TABLE lease IN ACCESS EXCLUSIVE MODE")
                time.sleep(STALL)

        async def stall() -> None:
            await asyncio.sleep(2.0)
            await asyncio.to_thread(lock_lease_table)

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await deployment.start(http, standby=False)
                async with restarted_on_failure(trainer) as exits:
                    staller = asyncio.create_task(stall())
                    await send_traffic(http, deployment, ledger, rounds)
                    await staller
                    await asyncio.to_thread(settle, deployment, ledger, trainer)
                    await wait_for_holder(deployment, trainer)
            stop_all(deployment)
        finally:
            for process in deployment.everyone():
                process.kill()
        check_ledger(deployment, ledger)
    assert exits and all(code == 1 for code in exits), exits
    assert not ledger.other_errors, ledger.other_errors[:5]
    measured(tmp_path, trainer_restarts=len(exits))
