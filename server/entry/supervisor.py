"""``banditd serve`` with no role: one trainer and ``workers`` edges, each a process of its own,
on one store and (the edges) one port.

The supervisor starts ``banditd train`` and the edges (``banditd serve --role edge``), with the
same store, settings file and environment; with more than one edge each binds the port with
``SO_REUSEPORT`` and the kernel spreads connections over them. It restarts a child that exits
(with a backoff that doubles from 0.5 s to 10 s, reset once the child has run for 30 s) and logs
each exit; a child that exits 2 (a bad setting or address) or fails within 10 s of its first
start stops the whole, with its status, since no restart mends that. On SIGTERM or SIGINT it
stops the edges first (each drains its requests and flushes its writer), then the trainer
(which checkpoints and releases its lease), each within ``STOP_TIMEOUT`` seconds, after which
what is left is killed. On Linux a child also dies when the supervisor dies, however it dies,
so a killed supervisor leaves no process behind. The start-up summary
(:func:`server.api.announcements.startup_summary`) is logged once: by the first edge, on its
first start.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from server.api.connections import ListenError

log = logging.getLogger(__name__)

STOP_TIMEOUT = 20.0
"""Seconds each group of children (edges, then the trainer) has to stop after SIGTERM."""
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
STEADY = 30.0
"""Seconds a child must run for its next restart to start from the first backoff again."""
POLL = 0.1
USAGE, FAILED = 2, 1
"""A child's exit statuses for a bad setting or address (never mended by a restart), and for
a failure; a failure in the first ``STARTUP_GRACE`` seconds of the first start stops all."""
STARTUP_GRACE = 10.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


NO_SUMMARY = "--no-summary"
"""The flag that keeps an edge from logging the start-up summary: ``banditd serve`` logs it
once, from the first edge's first start."""


@dataclass
class Child:
    """One supervised process and its restart state."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None
    starts: int = field(default=0)
    first_argv: list[str] | None = None
    """The arguments of the first start, when they differ from a restart's (the edge that
    logs the summary)."""

    def start(self) -> None:
        argv = self.first_argv if self.starts == 0 and self.first_argv is not None else self.argv
        self.proc = subprocess.Popen(argv, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()
        self.restart_at = None
        self.starts += 1
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def reserve_port(host: str, port: int) -> int:
    """``port`` if it can be bound on ``host`` now, or (for 0) a port the kernel says is free.

    Raises:
        ListenError: the port is in use or cannot be bound (the message says what to do).
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
            raise ListenError(
                f"cannot listen on {host}:{port}: {reason}; stop whatever holds that port or "
                "choose another with --port (or port in the config file)."
            ) from exc
        bound: int = s.getsockname()[1]
        return bound


def children(common: list[str], *, host: str, port: int, workers: int) -> list[Child]:
    """The trainer and the edges, with ``common`` arguments (store, settings file)."""
    base = [sys.executable, "-m", "server.entry.cli"]
    out = [Child("trainer", [*base, "train", *common])]
    edge = [*base, "serve", "--role", "edge", *common, "--host", host, "--port", str(port)]
    if workers > 1:
        edge.append("--reuse-port")
    out += [
        Child(f"edge {i + 1}", [*edge, NO_SUMMARY], first_argv=None if i else edge)
        for i in range(workers)
    ]
    return out


class Supervisor:
    """Starts, restarts and stops the children."""

    def __init__(self, kids: list[Child]) -> None:
        self.kids = kids
        self._stopping = False
        self.status = 0

    def _stop(self, signum: int, _frame: object) -> None:
        log.info("received %s; stopping the edges, then the trainer", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        """Supervise until SIGTERM or SIGINT (0), or a child's fatal exit (its status)."""
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for kid in self.kids:
                kid.start()
            while not self._stopping:
                self._tend(time.monotonic())
                time.sleep(POLL)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.shutdown()
        return self.status

    def _tend(self, now: float) -> None:
        for kid in self.kids:
            if kid.running():
                continue
            if kid.restart_at is None:
                code = kid.proc.returncode if kid.proc is not None else None
                ran = now - kid.started_at
                if code == USAGE or (code == FAILED and kid.starts == 1 and ran < STARTUP_GRACE):
                    log.error("%s could not start (status %s); stopping", kid.name, code)
                    self.status = code
                    self._stopping = True
                    return
                if ran >= STEADY:
                    kid.backoff = FIRST_BACKOFF
                log.warning(
                    "%s exited with status %s after %.1f s; restarting in %.1f s",
                    kid.name,
                    code,
                    ran,
                    kid.backoff,
                )
                kid.restart_at = now + kid.backoff
                kid.backoff = min(kid.backoff * 2, MAX_BACKOFF)
            elif now >= kid.restart_at:
                kid.start()

    def shutdown(self) -> None:
        """SIGTERM the edges and wait, then the trainer; SIGKILL what outlives its time."""
        edges = [k for k in self.kids if k.name != "trainer"]
        trainers = [k for k in self.kids if k.name == "trainer"]
        for group in (edges, trainers):
            live = [k for k in group if k.running()]
            for kid in live:
                assert kid.proc is not None
                kid.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            for kid in live:
                assert kid.proc is not None
                try:
                    kid.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("%s did not stop within %g s; killing it", kid.name, STOP_TIMEOUT)
                    kid.proc.kill()
                    kid.proc.wait()


def supervise(common: list[str], *, host: str, port: int, workers: int) -> int:
    """Run the trainer and ``workers`` edges on ``port`` until SIGTERM or SIGINT, or until a
    child fails in a way a restart cannot mend; returns the exit status."""
    print(
        f"banditd: supervising 1 trainer and {workers} edge{'s' if workers > 1 else ''} "
        f"on {host}:{port} (pid {os.getpid()})",
        flush=True,
    )
    return Supervisor(children(common, host=host, port=port, workers=workers)).run()
