"""Child processes of a bench run: pinned to a core, bounded in time, measured from ``/proc``.

Servers run on one core and load generators on another (``taskset``), so the load generator
never takes CPU from the server it measures. Every wait here has a deadline, and a process is only
ever stopped by the id this module started it with.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pin(command: list[str], core: int | None) -> list[str]:
    """``command`` prefixed with ``taskset -c core`` (unchanged when ``core`` is None)."""
    if core is None:
        return command
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("taskset is not installed (Debian package util-linux)")
    return [taskset, "-c", str(core), *command]


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildResult:
    """A finished child: its output, exit code and the CPU seconds it used (user + system)."""

    stdout: str
    stderr: str
    returncode: int
    cpu_seconds: float
    wall_seconds: float


def run_child(command: list[str], *, timeout: float, cwd: Path | None = None) -> ChildResult:
    """Run ``command`` to completion (killed after ``timeout`` seconds) and measure its CPU.

    CPU time comes from ``wait4``'s resource usage of that one child, so other children of this
    process do not count.
    """
    started = time.monotonic()
    with (
        open(os.devnull, "rb") as stdin,
        _temp_output() as (out_path, out),
        _temp_output() as (err_path, err),
    ):
        proc = subprocess.Popen(command, stdin=stdin, stdout=out, stderr=err, cwd=cwd)
        deadline = started + timeout
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.flush()
        err.flush()
        stdout = Path(out_path).read_text(errors="replace")
        stderr = Path(err_path).read_text(errors="replace")
    return ChildResult(
        stdout=stdout,
        stderr=stderr,
        returncode=proc.returncode,
        cpu_seconds=(usage.ru_utime + usage.ru_stime) if usage is not None else 0.0,
        wall_seconds=time.monotonic() - started,
    )


@contextlib.contextmanager
def _temp_output() -> Iterator[tuple[str, IO[str]]]:
    with tempfile.NamedTemporaryFile("w+", suffix=".out", delete=True) as handle:
        yield handle.name, handle


def process_cpu_times(pid: int) -> tuple[float, float]:
    """User and system (kernel) CPU seconds of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat(5)); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` so far."""
    return sum(process_cpu_times(pid))


CpuTimes = dict[int, tuple[float, float]]
"""User and kernel CPU seconds so far, by process id."""


def cpu_snapshot(pids: Iterable[int]) -> CpuTimes:
    """The CPU times of each of ``pids`` still running."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = process_cpu_times(pid)
    return out


def cpu_spent(before: CpuTimes, after: CpuTimes) -> tuple[float, float]:
    """(user + kernel, kernel) seconds the processes of ``after`` used since ``before``; one
    that started in between counts from its start, one that ended in between not at all.

    >>> cpu_spent({1: (1.0, 0.5), 2: (3.0, 0.0)}, {1: (1.5, 0.75), 3: (0.25, 0.25)})
    (1.25, 0.5)
    """
    total = kernel = 0.0
    for pid, (user, system) in after.items():
        was_user, was_system = before.get(pid, (0.0, 0.0))
        total += max(0.0, user - was_user) + max(0.0, system - was_system)
        kernel += max(0.0, system - was_system)
    return total, kernel


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it now (``banditd serve`` supervises a trainer
    and edges as processes of their own), from each thread's ``children`` file."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` and its descendants (those still running)."""
    user = kernel = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            u, k = process_cpu_times(member)
            user, kernel = user + u, kernel + k
    return user, kernel


def command_line(pid: int) -> list[str]:
    """The arguments ``pid`` was started with."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def process_rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def core_busy_seconds() -> dict[int, float]:
    """Busy (non-idle, non-iowait) seconds of each core since boot, from ``/proc/stat``."""
    busy: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values]
            idle = ticks[3] + ticks[4]
            busy[int(name[3:])] = (sum(ticks[:8]) - idle) / CLOCK_TICKS
    return busy


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_json(method: str, url: str, body: object | None = None, timeout: float = 10.0) -> Any:
    """One JSON request over loopback; returns the decoded body (None when empty)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


class ServerProcess:
    """A server started on one core, answering on ``http://127.0.0.1:port``.

    Args:
        name: a label for logs and errors.
        command: the server's command line (without the pinning prefix).
        core: the core to pin it to, or None.
        log_path: where its stdout and stderr go.
        health_path: a GET path that answers 200 once it serves.
    """

    def __init__(
        self,
        *,
        name: str,
        command: list[str],
        port: int,
        core: int | None,
        log_path: Path,
        health_path: str = "/healthz",
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self._health_path = health_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            pin(command, core),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        self.pid = self._proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the health path answers 200; raise if it exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode} on start")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.url + self._health_path, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {self._health_path} in {timeout:.0f} s")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._proc.poll() is None

    def cpu_seconds(self) -> float:
        """CPU seconds the server used so far (all threads of all its processes)."""
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """User and kernel CPU seconds the server used so far (all threads of all its
        processes: a supervised banditd's trainer and edges too)."""
        return tree_cpu_times(self.pid)

    def rss_kib(self) -> int:
        """The server's resident size in KiB (all its processes)."""
        total = 0
        for member in process_tree(self.pid):
            with contextlib.suppress(OSError, RuntimeError):
                total += process_rss_kib(member)
        return total

    def edge_pids(self) -> list[int]:
        """The edges of a supervised banditd (``--role edge``); empty for any other server."""
        out = []
        for member in process_tree(self.pid):
            with contextlib.suppress(OSError):
                if "--role" in (args := command_line(member)) and "edge" in args:
                    out.append(member)
        return out

    def serving_pid(self) -> int:
        """The process that answers requests: a supervised banditd's (first) edge, else the
        server itself."""
        return next(iter(self.edge_pids()), self.pid)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit code."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._log.close()
        return self._proc.returncode
