"""The bench reads what banditd's group-commit writer did from a live server's ``/metrics``."""

from __future__ import annotations

from pathlib import Path

from bench.process import ServerProcess, free_port, http_json
from bench.run import _banditd_command, writer_totals
from bench.workload import Workload, rank_bodies

ROOT = Path(__file__).resolve().parents[2]


def test_writer_totals_count_what_a_live_banditd_committed(tmp_path: Path) -> None:
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
        before = writer_totals(server)
        body = rank_bodies(Workload(n_bodies=1))[0]
        for n in range(3):
            http_json("POST", f"{server.url}/v1/rank", {**body, "eventId": f"wt-{n}"})
        http_json("POST", f"{server.url}/v1/events/wt-0/reward", {"value": 1.0})
        after = writer_totals(server)
        # One request at a time: each is committed in a transaction of its own.
        assert after.items - before.items == 4
        assert after.commits - before.commits == 4
        assert after.seconds > before.seconds
    finally:
        assert server.stop() == 0, (tmp_path / "banditd.log").read_text()[-2000:]
