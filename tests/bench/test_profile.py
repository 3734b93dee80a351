"""py-spy, as ``make bench BENCH_ARGS=--profile`` runs it, on a real process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import profile

BUSY = textwrap.dedent(
    """
    import time

    def spin_in_busy_child(deadline):
        total = 0
        while time.monotonic() < deadline:
            total += sum(range(1000))
        return total

    print("ready", flush=True)
    spin_in_busy_child(time.monotonic() + 20)
    """
)


def test_make_install_brings_py_spy() -> None:
    # `make test` and `make bench` install the `bench` extra: without it --profile only notes
    # its absence.
    assert profile.py_spy() is not None


def test_a_recorded_profile_names_the_busy_function(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", BUSY], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        try:
            raw = profile.record(child.pid, 1.0, tmp_path / "busy.txt", core=None)
        except RuntimeError as exc:
            if "ptrace" in str(exc).lower() or "permission" in str(exc).lower():
                pytest.skip(f"this machine does not let py-spy read other processes: {exc}")
            raise
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    summary = profile.summarize(raw, "busy child", project_paths=("<string>",))
    # How many samples a second of recording yields depends on the machine's load; what the
    # profile must show is where they went: most of them in the busy function.
    assert summary.samples > 0, "py-spy recorded no samples of a busy process"
    assert summary.top_self[0][0] == "<string>:spin_in_busy_child", summary.top_self
    assert summary.top_self[0][1] > 0.5, summary.top_self
