"""``banditd demo`` against the real server it starts: a run long enough to learn, a stop by
SIGTERM, and the errors a user meets (a port in use, a store already kept)."""

from __future__ import annotations

import doctest
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import sims.demo
import sims.demo_server
from sims.demo import DEMO, demo_main
from sims.demo_server import server_failure

TICK = re.compile(
    r"^\s*(?P<elapsed>\d+)s  ranked (?P<ranked>\d+)  rewards (?P<rewards>\d+)  "
    r"reward (?P<reward>– \(\d+ joined\)|\d\.\d\d)  "
    r"model v(?P<version>\d+)  learned (?P<learned>\d+)$"
)
START = re.compile(r"^banditd demo: starting banditd \(pid (\d+)\) on http://127\.0\.0\.1:(\d+)")


def ticks(out: str) -> list[dict[str, str]]:
    return [m.groupdict() for line in out.splitlines() if (m := TICK.match(line))]


def server_of(out: str) -> tuple[int, int]:
    found = [m for line in out.splitlines() if (m := START.match(line))]
    assert len(found) == 1, out
    return int(found[0].group(1)), int(found[0].group(2))


def assert_gone(pid: int, port: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


@pytest.mark.slow
def test_demo_shows_the_model_version_rising_and_the_loop_learning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "store"
    assert demo_main(["--seconds", "45", "--keep", str(kept)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    rows = ticks(out)
    assert len(rows) >= 20, out
    versions = [int(r["version"]) for r in rows]
    learned = [int(r["learned"]) for r in rows]
    # A model published once the learner had learned: the configuration's own (v2) is not one.
    start = next(k for k, n in enumerate(learned) if n > 0)
    assert max(versions[start:]) > versions[start], out
    assert versions == sorted(versions), out
    assert learned[-1] > learned[0] and learned[-1] > 0, out
    assert int(rows[-1]["ranked"]) > int(rows[0]["ranked"]), out
    # Ranking at random in this world earns the mean of the expected rewards; after 45 s the
    # loop's latest rewards are above it.
    env = DEMO.build(0)
    random_value = float(np.mean([env.round(t).expected.mean() for t in range(2000)]))
    assert f"ranking at random earns {random_value:.2f} a decision" in out
    latest = [float(r["reward"]) for r in rows[-5:] if r["reward"][0] != "–"]
    assert latest and np.mean(latest) > random_value, out
    assert "dashboard at http://127.0.0.1:" in out
    assert f"store kept in {kept}" in out
    assert (kept / "banditd.db").stat().st_size > 0 and (kept / "server.log").exists()
    assert_gone(*server_of(out))


def run_until_first_tick(act: Callable[[subprocess.Popen[str], str], None]) -> tuple[int, str, str]:
    """Run ``python -m sims.demo`` until its first summary line, call ``act(demo, output)``,
    then wait for the demo to end; its exit status, stdout and stderr."""
    argv = [sys.executable, "-m", "sims.demo", "--seconds", "600"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines: list[str] = []
        first_tick = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if TICK.match(lines[-1]):
                    first_tick.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert first_tick.wait(60), lines
            act(proc, "\n".join(lines))
            status = proc.wait(90)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(10)
        err = proc.stderr.read()
    return status, "\n".join(lines), err


def test_demo_stops_the_server_and_removes_its_store_on_sigterm() -> None:
    status, out, err = run_until_first_tick(lambda demo, _: demo.send_signal(signal.SIGTERM))
    assert status == 0, (out, err)
    assert err == ""
    assert out.splitlines()[-1] == "banditd demo: server stopped; temporary store removed"
    store = re.search(r"store in (\S+)$", out.splitlines()[0])
    assert store is not None and not Path(store.group(1)).exists()
    assert_gone(*server_of(out))


def test_demo_says_in_one_line_that_its_server_died() -> None:
    status, out, err = run_until_first_tick(lambda _, out: os.kill(server_of(out)[0], 9))
    assert status == 1, (out, err)
    assert err == "banditd demo: the server stopped (killed by SIGKILL)\n"
    store = re.search(r"store in (\S+)$", out.splitlines()[0])
    assert store is not None and not Path(store.group(1)).exists()
    assert_gone(*server_of(out))  # its edge and trainer die with it


def test_demo_refuses_a_port_in_use_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert demo_main(["--port", str(port), "--seconds", "5"]) == 2
    out, err = capsys.readouterr()
    assert err == (
        f"banditd demo: port {port} on 127.0.0.1 is in use; choose another with --port, "
        "or leave it out for a free one\n"
    )
    assert "starting banditd" not in out  # refused before any server starts


def test_demo_refuses_a_keep_directory_that_holds_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "banditd.db").write_bytes(b"")
    assert demo_main(["--keep", str(tmp_path)]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "exists; the demo starts from an empty store" in err


def test_server_failure_is_the_servers_own_line(tmp_path: Path) -> None:
    (tmp_path / "server.log").write_text(
        "banditd: supervising 1 trainer and 1 edge on 127.0.0.1:1 (pid 1)\n"
        "2026-01-01 00:00:00,000 INFO server.entry.supervisor started trainer (pid 2)\n"
        "banditd: cannot open the store: disk I/O error\n"
    )
    assert server_failure(tmp_path) == "cannot open the store: disk I/O error"
    (tmp_path / "server.log").write_text("Traceback (most recent call last):\nOSError: boom\n\n")
    assert server_failure(tmp_path) == "its log ends with: OSError: boom"
    (tmp_path / "server.log").unlink()
    assert server_failure(tmp_path) == "it printed nothing"


@pytest.mark.parametrize("module", [sims.demo, sims.demo_server], ids=lambda m: m.__name__)
def test_examples_in_the_demo_docstrings_hold(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_demo_reports_a_server_that_cannot_start_in_the_servers_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A directory where SQLite's write-ahead log must go: the server cannot open its store.
    (tmp_path / "banditd.db-wal").mkdir()
    assert demo_main(["--keep", str(tmp_path), "--seconds", "5"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("banditd demo: the server did not start: cannot open the database ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "dashboard at" not in out
    assert_gone(*server_of(out))
