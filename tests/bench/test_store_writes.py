"""The store phase of the bench: durable writes alone, and the writer's batch sizes it is given.

Real SQLite files and a real ``banditd serve``; nothing here is timed against a limit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.process import ServerProcess, free_port, http_json
from bench.run import _banditd_command, writer_batches
from bench.store_writes import _chunks, measure
from bench.workload import Workload, rank_bodies

ROOT = Path(__file__).resolve().parents[2]


def test_chunks_average_the_batch_size_and_cover_every_item_once() -> None:
    items = list(range(100))
    parts = _chunks(items, 7.5)
    assert [i for part in parts for i in items[part]] == items
    sizes = [len(items[part]) for part in parts]
    assert set(sizes[:-1]) <= {7, 8}
    assert abs(sum(sizes) / len(sizes) - 7.5) < 0.5
    assert [len(items[p]) for p in _chunks(items, 1.0)] == [1] * 100


def test_measure_writes_every_decision_and_reward_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    result = measure(
        path,
        events=300,
        decision_batch=7.5,
        reward_batch=5.0,
        seconds=30.0,
        workload=Workload(n_bodies=4),
    )
    # The first batch of each kind warms the store and is not counted; the rest all ran.
    assert result.decisions == 300 - 8  # round(7.5) = 8 in the first batch
    assert result.rewards == 295
    assert result.decision_user_us > 0 and result.reward_user_us > 0
    assert result.decision_us == result.decision_user_us + result.decision_kernel_us
    with sqlite3.connect(path) as db:
        decisions = db.execute("SELECT count(*) FROM decisions").fetchone()[0]
        rewarded = db.execute("SELECT count(DISTINCT event_id) FROM rewards").fetchone()[0]
        new = db.execute("SELECT count(*) FROM decisions WHERE event_id LIKE 'w-%'").fetchone()[0]
    assert (decisions, new, rewarded) == (600, 300, 300)


def test_writer_batches_count_what_a_live_banditd_committed(tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(
        name="banditd",
        command=_banditd_command(tmp_path / "banditd.db", port),
        port=port,
        core=None,
        log_path=tmp_path / "banditd.log",
        cwd=ROOT,
    )
    try:
        server.wait_ready()
        before = writer_batches(server)
        body = rank_bodies(Workload(n_bodies=1))[0]
        for n in range(3):
            http_json("POST", f"{server.url}/v1/rank", {**body, "eventId": f"wb-{n}"})
        http_json("POST", f"{server.url}/v1/events/wb-0/reward", {"value": 1.0})
        items, commits = writer_batches(server)
        # Sequential requests: each is committed alone.
        assert items - before[0] == 4
        assert commits - before[1] == 4
    finally:
        assert server.stop() == 0, (tmp_path / "banditd.log").read_text()[-2000:]
