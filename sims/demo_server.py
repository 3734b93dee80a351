"""The demo's server: ``banditd serve`` as a child process on a store of its own, and the few
HTTP calls the demo makes to it.

The child runs in a session of its own, so a Ctrl-C reaches only the demo, which stops its
traffic first and then the server (SIGTERM: the edges drain, the trainer checkpoints). On Linux
the child also dies with the demo, however the demo dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bandit.config import ServiceConfiguration
from server.client import AsyncClient, ClientError, RetryPolicy

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
"""Seconds the server has to answer ``/healthz`` after it is started."""
STOP_TIMEOUT = 45.0
"""Seconds the server has to stop after SIGTERM (its edges, then its trainer) before it is
killed."""
LOG_NAME = "server.log"
DB_NAME = "banditd.db"


class DemoError(Exception):
    """Something stops the demo; the message is the one line the user sees."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# --- HTTP: the few calls the demo makes to the server, through banditd's own client.


class DemoAPI:
    """The server's health, service configuration and loop status (no key; no retries: the
    demo polls once a second and a missed tick is just skipped)."""

    def __init__(self, base_url: str) -> None:
        self._client = AsyncClient(base_url, timeout=10.0, retry=RetryPolicy(attempts=1))

    async def close(self) -> None:
        await self._client.close()

    async def ready(self) -> bool:
        """Whether ``/healthz`` answers 200 now."""
        try:
            return (await self._client.health()).ok
        except ClientError:
            return False

    async def configure(self, config: ServiceConfiguration) -> None:
        """PUT the whole service configuration.

        Raises:
            DemoError: the server refused it or could not be reached.
        """
        try:
            await self._client.put_configuration(config)
        except ClientError as exc:
            if exc.status is None:
                raise DemoError(f"cannot configure the server: {exc}") from None
            raise DemoError(f"the server refused the demo's configuration: {exc}") from None

    async def loop_status(self) -> Mapping[str, Any] | None:
        """``/v1/loop/status`` without the chart history; None when it cannot be read now."""
        try:
            return (await self._client.loop_status()).raw
        except ClientError:
            return None


# --- The process.


def free_port(port: int | None) -> int:
    """``port`` if it is free on the loopback address, or a free one when None.

    Raises:
        DemoError: ``port`` is in use or cannot be bound (status 2).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, 0 if port is None else port))
        except OSError as exc:
            reason = (
                "is in use"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be bound ({exc.strerror})"
            )
            raise DemoError(
                f"port {port} on {HOST} {reason}; choose another with --port, or leave it out "
                "for a free one",
                status=2,
            ) from None
        bound: int = sock.getsockname()[1]
        return bound


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # The server's own supervisor does the same for its children: a demo that is killed
    # outright must not leave a server behind (Linux; elsewhere a no-op).
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def server_environment(watch_window: int) -> dict[str, str]:
    """The demo server's environment: the caller's without any ``BANDITD_*`` setting (the demo
    runs on its own terms, whatever a shell exports), with the watcher's ``window``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITD_")}
    env["BANDITD_WATCH_WINDOW"] = str(watch_window)
    return env


@contextlib.contextmanager
def server_process(
    directory: Path, port: int, *, watch_window: int
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``banditd serve`` on ``directory``/banditd.db at ``HOST:port`` until the block ends,
    then stop it with SIGTERM (killed after :data:`STOP_TIMEOUT` s). Its output goes to
    ``directory``/server.log; the watcher's window is ``watch_window`` events."""
    argv = [sys.executable, "-m", "server.entry.cli", "serve", "--db", str(directory / DB_NAME)]
    argv += ["--host", HOST, "--port", str(port)]
    try:
        log = (directory / LOG_NAME).open("wb")
    except OSError as exc:
        raise DemoError(f"cannot write in {directory}: {exc.strerror}", status=2) from None
    with log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_environment(watch_window),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except (subprocess.TimeoutExpired, KeyboardInterrupt):
                    # Too slow, or the user would not wait: its own children die with it.
                    proc.kill()
                    proc.wait()


def server_failure(directory: Path) -> str:
    """Why the server stopped, from its log (removed with the store right after): its own
    ``banditd: …`` line, else the log's last line, else that it printed nothing."""
    try:
        lines = (directory / LOG_NAME).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    said = [line for line in lines if line.startswith("banditd: ") and "supervising" not in line]
    if said:
        return said[-1].removeprefix("banditd: ")
    written = [line.strip() for line in lines if line.strip()]
    return f"its log ends with: {written[-1][:200]}" if written else "it printed nothing"


def exit_status(code: int | None) -> str:
    """A process's exit, in words.

    >>> exit_status(-9), exit_status(1)
    ('killed by SIGKILL', 'exit status 1')
    """
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"
