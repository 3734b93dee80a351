"""``banditd demo``: a real server on a temporary store, a simulated world driving it over HTTP,
and a live one-line summary, so a new user sees the loop learn within a minute.

The server is ``banditd serve`` in a child process (its own session, so Ctrl-C reaches the demo,
which stops the traffic and then the server in that order) on a fresh SQLite file in a temporary
directory, on a loopback port. The demo configures short windows (:data:`DEMO`: rewards join
3 s after the decision, a model is published every 5 s; Personalizer's defaults are 10 and 5
minutes) and drives :data:`DEMO`'s linear world through :func:`sims.http_runner.run_http_async`.

The world has 4 actions whose expected reward is linear in a 2-dimensional context
(:mod:`sims.linear`); with the default seed ranking at random earns 0.52 a decision, the best
action 0.85, and the default policy (ε-greedy with ε = 0.2) can reach ~0.78. On the in-process
runner at 25 decisions a second with these windows, the expected reward of what it served was
0.50 over the first 10 s of traffic, 0.67 over the next 10 and 0.74 over the third. Of the sizes
tried (seed 0), this one climbs the most in 30 s: 3 actions in 2 dimensions went from 0.59 to
0.69, 4 in 3 from 0.53 to 0.69, and 10 actions in 5 dimensions stayed near 0.5 for a minute.

Every second the demo reads ``/v1/loop/status`` and prints one line::

      12s  ranked 300  rewards 300  reward 0.61  model v3  learned 225

``reward`` is the mean reward of the latest 100–200 joined events (the watcher's window, set to
200 for the demo; ``– (N joined)`` until it holds :data:`MIN_EVENTS`) and ``learned`` the events
the learner has learned from. What random ranking and the best action earn in the world are
printed once, before the first line: computed from the world's expected rewards, they are
exact, where the watcher's off-policy estimate of random ranking is too noisy on a hundred
events to compare with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import aiohttp

from bandit.config import ServiceConfiguration, format_duration, to_wire
from sims.http_runner import run_http_async
from sims.presets import DEFAULT_EXPLORATION
from sims.scenarios import Scenario

HOST = "127.0.0.1"
RATE = 25.0
"""Decisions per second by default: tens a second learn visibly within a minute and leave
most of a small machine to the server."""
DEMO = Scenario(
    name="demo",
    environment="linear",
    params={"n_actions": 4, "dims": 2},
    rounds=3000,
    interval=1.0 / RATE,
    reward_wait_time=3.0,
    model_export_frequency=5.0,
)
"""The demo's world and windows (120 s at :data:`RATE`); ``rounds`` and ``interval`` are set
from ``--seconds`` and ``--rate``."""
WATCH_WINDOW = 200
"""Events per watcher segment: the reward shown covers the latest 100–200 joined events."""
MIN_EVENTS = 50
"""Joined events in the window before its mean reward is shown: fewer say too little."""
READY_TIMEOUT = 60.0
"""Seconds the server has to answer ``/healthz`` after it is started."""
STOP_TIMEOUT = 45.0
"""Seconds the server has to stop after SIGTERM (its edges, then its trainer) before it is
killed."""
TICK = 1.0
MAX_SECONDS = 3600.0
MAX_RATE = 200.0
"""Bounds of ``--seconds`` and ``--rate``: the HTTP runner keeps four floats per round."""
LOG_NAME = "server.log"
DB_NAME = "banditd.db"


class DemoError(Exception):
    """Something stops the demo; the message is the one line the user sees."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# --- HTTP: the few calls the demo makes to the server. Kept apart so that banditd's own client
# (``server.client``) can take their place.


class DemoAPI:
    """The server's health, service configuration and loop status over HTTP (no key)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")

    async def ready(self) -> bool:
        """Whether ``/healthz`` answers 200 now."""
        try:
            async with self._session.get(f"{self._base}/healthz") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def configure(self, config: ServiceConfiguration) -> None:
        """PUT the whole service configuration.

        Raises:
            DemoError: the server refused it or could not be reached.
        """
        url = f"{self._base}/v1/configurations/service"
        try:
            async with self._session.put(url, json=to_wire(config)) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise DemoError(f"the server refused the demo's configuration: {text}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DemoError(f"cannot configure the server: {exc}") from None

    async def loop_status(self) -> dict[str, Any] | None:
        """``/v1/loop/status`` without the chart history; None when it cannot be read now."""
        try:
            url = f"{self._base}/v1/loop/status?history=false"
            async with self._session.get(url) as response:
                if response.status != 200:
                    return None
                body: dict[str, Any] = await response.json()
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None


# --- What one line says.


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """The loop at one moment of the demo.

    Attributes:
        elapsed: seconds since the traffic started.
        ranked: decisions stored.
        rewards: rewards stored.
        reward: mean reward of the watcher's window, or None before the first joins.
        joined: events in the watcher's window.
        model_version: the version being served.
        learned: events the learner has learned from.
    """

    elapsed: float
    ranked: int
    rewards: int
    reward: float | None
    joined: int
    model_version: int
    learned: int


def tick_of(status: dict[str, Any], elapsed: float) -> Tick:
    """The :class:`Tick` of a ``/v1/loop/status`` document."""
    window = status.get("window", {})
    counts = status.get("counts", {})
    return Tick(
        elapsed=elapsed,
        ranked=int(counts.get("decisions", 0)),
        rewards=int(counts.get("rewards", 0)),
        reward=_number(window.get("rewardMean")),
        joined=int(window.get("events", 0)),
        model_version=int(status.get("modelVersion", 0)),
        learned=int(status.get("learner", {}).get("learnedCount", 0)),
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def format_tick(tick: Tick) -> str:
    """One summary line.

    >>> t = Tick(elapsed=12.3, ranked=300, rewards=298, reward=0.6125, joined=150,
    ...          model_version=3, learned=225)
    >>> format_tick(t)
    '  12s  ranked 300  rewards 298  reward 0.61  model v3  learned 225'
    >>> format_tick(replace(t, reward=0.25, joined=24))
    '  12s  ranked 300  rewards 298  reward – (24 joined)  model v3  learned 225'
    """
    if tick.reward is not None and tick.joined >= MIN_EVENTS:
        reward = f"{tick.reward:.2f}"
    else:
        reward = f"– ({tick.joined} joined)"
    return (
        f"{tick.elapsed:4.0f}s  ranked {tick.ranked}  rewards {tick.rewards}  reward {reward}  "
        f"model v{tick.model_version}  learned {tick.learned}"
    )


class Line:
    """Prints summary lines: on a terminal one line rewritten in place, otherwise one a tick."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._tty = out.isatty()
        self._open = False

    def update(self, text: str) -> None:
        if self._tty:
            # Cut to the terminal's width: a wrapped line cannot be rewritten in place.
            width = shutil.get_terminal_size().columns - 1
            self._out.write("\r" + text[:width] + "\x1b[K")
            self._open = True
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def say(self, text: str) -> None:
        """A line of its own (ends the line being rewritten)."""
        self.close()
        self._out.write(text + "\n")
        self._out.flush()

    def close(self) -> None:
        if self._open:
            self._out.write("\n")
            self._open = False


def world_values(scenario: Scenario, seed: int, rounds: int = 2000) -> tuple[float, float]:
    """(random, best): the mean expected reward of a uniformly random action and of the best
    action over the world's first ``rounds`` rounds (at most ``scenario.rounds``).

    >>> random, best = world_values(DEMO, 0)
    >>> f"{random:.2f} {best:.2f}"
    '0.52 0.85'
    """
    env = scenario.build(seed)
    picked = [env.round(t) for t in range(max(1, min(rounds, scenario.rounds)))]
    random = sum(float(r.expected[r.allowed()].mean()) for r in picked) / len(picked)
    return random, sum(r.best_expected() for r in picked) / len(picked)


# --- The server process.


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


def server_environment() -> dict[str, str]:
    """The demo server's environment: the caller's without any ``BANDITD_*`` setting (the demo
    runs on its own terms, whatever a shell exports), plus the demo's watch window."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITD_")}
    env["BANDITD_WATCH_WINDOW"] = str(WATCH_WINDOW)
    return env


@contextlib.contextmanager
def server_process(directory: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``banditd serve`` on ``directory``/banditd.db at ``HOST:port`` until the block ends,
    then stop it with SIGTERM (killed after :data:`STOP_TIMEOUT` s). Its output goes to
    ``directory``/server.log."""
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
            env=server_environment(),
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


# --- The demo.


class Signals:
    """SIGINT and SIGTERM: while traffic runs the first one calls ``target`` (stop the traffic,
    then the server); otherwise, or the second time, KeyboardInterrupt, which still stops the
    server but at once."""

    def __init__(self) -> None:
        self.target: Callable[[], object] | None = None

    def __call__(self, signum: int, frame: object) -> None:
        target, self.target = self.target, None
        if target is None:
            raise KeyboardInterrupt
        target()


def demo_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd demo``."""
    p = argparse.ArgumentParser(
        prog="banditd demo",
        description="Start a banditd with short windows on a temporary store, drive a\n"
        "simulated world against it over HTTP, and print the dashboard URL and a live\n"
        "one-line summary (reward rate, model version, events learned). Stops after\n"
        "--seconds or on Ctrl-C, then stops the server and removes the store.",
        epilog="examples:\n  banditd demo\n  banditd demo --seconds 60 --keep demo-store",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--seconds", type=float, default=120.0, help="how long to drive traffic (default 120)"
    )
    p.add_argument("--port", type=int, help="loopback port of the server (default: a free one)")
    p.add_argument(
        "--rate", type=float, default=RATE, help=f"decisions per second (default {RATE:g})"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated world (default 0)")
    p.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the store and the server log in DIR (created; must not hold a store yet)",
    )
    return p


def demo_main(argv: list[str]) -> int:
    """Entry point of ``banditd demo``; returns the exit status."""
    parser = demo_parser()
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be within (0, {MAX_SECONDS:g}]")
    if not 0.1 <= args.rate <= MAX_RATE:
        parser.error(f"--rate must be within [0.1, {MAX_RATE:g}] decisions per second")
    if args.port is not None and not 0 < args.port < 65536:
        parser.error("--port must be within 1..65535")
    line = Line(sys.stdout)
    signals = Signals()
    previous = {s: signal.signal(s, signals) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _directory(args.keep) as directory:
            port = free_port(args.port)
            with server_process(directory, port) as proc:
                status = asyncio.run(_demo(args, directory, port, proc, line, signals))
                line.say("banditd demo: stopping the server")
        line.say(
            f"banditd demo: server stopped; store kept in {directory}"
            if args.keep
            else "banditd demo: server stopped; temporary store removed"
        )
        return status
    except DemoError as exc:
        line.close()
        print(f"banditd demo: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        line.close()
        print("banditd demo: interrupted; server stopped", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _directory(keep: Path | None) -> Iterator[Path]:
    """``keep`` (created, refused when it holds a store already), or a temporary directory
    removed afterwards."""
    if keep is None:
        path = Path(tempfile.mkdtemp(prefix="banditd-demo-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    try:
        keep.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create {keep}: {exc.strerror}", status=2) from None
    if (keep / DB_NAME).exists():
        raise DemoError(
            f"{keep / DB_NAME} exists; the demo starts from an empty store, give another --keep",
            status=2,
        )
    yield keep


async def _demo(
    args: argparse.Namespace,
    directory: Path,
    port: int,
    proc: subprocess.Popen[bytes],
    line: Line,
    signals: Signals,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals.target = lambda: loop.call_soon_threadsafe(stop.set)
    try:
        return await _drive(args, directory, port, proc, line, stop)
    finally:
        signals.target = None


async def _drive(
    args: argparse.Namespace,
    directory: Path,
    port: int,
    proc: subprocess.Popen[bytes],
    line: Line,
    stop: asyncio.Event,
) -> int:
    base = f"http://{HOST}:{port}"
    scenario = replace(
        DEMO, interval=1.0 / args.rate, rounds=max(1, math.ceil(args.seconds * args.rate))
    )
    config = scenario.config(DEFAULT_EXPLORATION)
    line.say(f"banditd demo: starting banditd (pid {proc.pid}) on {base}, store in {directory}")
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = DemoAPI(session, base)
        started = time.monotonic()
        while not await api.ready():
            if proc.poll() is not None:
                raise DemoError(f"the server did not start: {server_failure(directory)}")
            if stop.is_set():
                return 0
            if time.monotonic() - started > READY_TIMEOUT:
                raise DemoError(f"the server did not answer within {READY_TIMEOUT:g} s")
            await asyncio.sleep(0.2)
        await api.configure(config)
        line.say(f"banditd demo: dashboard at {base}/dashboard")
        random_value, best_value = world_values(scenario, args.seed)
        line.say(
            f"banditd demo: rewards join after {format_duration(config.reward_wait_time)} and a "
            f"model is published every {format_duration(config.model_export_frequency)} "
            "(Personalizer's defaults: PT10M and PT5M)"
        )
        line.say(
            f"banditd demo: {args.rate:g} decisions/s for {args.seconds:g} s in a linear world of "
            f"{DEMO.params['n_actions']} actions, where ranking at random earns "
            f"{random_value:.2f} a decision and the best action {best_value:.2f}; Ctrl-C stops"
        )
        runner = asyncio.create_task(
            run_http_async(
                scenario,
                base,
                seed=args.seed,
                policy="default",
                max_seconds=args.seconds,
                run_id="demo-",
                stop=stop,
            )
        )
        try:
            summary = await _report(runner, api, proc, line)
        finally:
            if not runner.done():
                runner.cancel()
            await asyncio.wait([runner])
    error = None if runner.cancelled() else runner.exception()
    if proc.poll() is not None:
        # Whatever the traffic met then (a reset connection), the server's end is the news.
        stopped = f"the server stopped ({exit_status(proc.returncode)})"
        if proc.returncode is not None and proc.returncode < 0:
            raise DemoError(stopped)
        raise DemoError(f"{stopped}: {server_failure(directory)}")
    if isinstance(error, aiohttp.ClientError | TimeoutError | RuntimeError | ValueError):
        raise DemoError(f"the simulated traffic failed: {error}")
    if error is not None:
        raise error
    line.say(_closing(*summary))
    return 0


async def _report(
    runner: asyncio.Task[Any], api: DemoAPI, proc: subprocess.Popen[bytes], line: Line
) -> tuple[Tick | None, Tick | None, float | None]:
    """Print a line a second until the traffic ends or the server exits; the first and the
    last ticks, and when a model version above the one served at the first tick with learned
    events appeared (seconds into the traffic): a model surely published after learning
    began, where the configuration's change publishes one that learned nothing."""
    first: Tick | None = None
    last: Tick | None = None
    learning: Tick | None = None  # the first tick after the learner had learned something
    rose_at: float | None = None
    start = time.monotonic()
    while not runner.done():
        await asyncio.wait([runner], timeout=TICK)
        if proc.poll() is not None:
            break
        status = await api.loop_status()
        if status is None:
            continue
        tick = tick_of(status, time.monotonic() - start)
        first = first or tick
        learning = learning or (tick if tick.learned > 0 else None)
        if rose_at is None and learning and tick.model_version > learning.model_version:
            rose_at = tick.elapsed
        last = tick
        line.update(format_tick(tick))
    return first, last, rose_at


def exit_status(code: int | None) -> str:
    """A process's exit, in words.

    >>> exit_status(-9), exit_status(1)
    ('killed by SIGKILL', 'exit status 1')
    """
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _closing(first: Tick | None, last: Tick | None, rose_at: float | None) -> str:
    if first is None or last is None:
        return "banditd demo: stopped before the loop reported anything"
    rose = (
        f"the first model published after learning began was served at {rose_at:.0f} s"
        if rose_at is not None
        else "no model published since learning began"
    )
    reward = "–" if last.reward is None else f"{last.reward:.2f}"
    return (
        f"banditd demo: {last.elapsed:.0f} s, {last.ranked} decisions, {last.learned} learned; "
        f"model v{first.model_version} → v{last.model_version} ({rose}); latest reward {reward}"
    )


if __name__ == "__main__":
    sys.exit(demo_main(sys.argv[1:]))
