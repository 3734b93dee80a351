"""``banditd demo``: a real server on a temporary store, a simulated world driving it over HTTP,
and a live one-line summary, so a new user sees the loop learn within a minute.

The server is ``banditd serve`` in a child process (:mod:`sims.demo_server`; its own session, so
Ctrl-C reaches the demo, which stops the traffic and then the server in that order) on a fresh
SQLite file in a temporary directory, on a loopback port. The demo configures short windows
(:data:`DEMO`: rewards join 3 s after the decision, a model is published every 5 s;
Personalizer's defaults are 10 and 5 minutes) and drives :data:`DEMO`'s linear world through
:func:`sims.http_runner.run_http_async`.

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
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from bandit.config import format_duration
from server.client import ClientError
from sims.demo_server import (
    DB_NAME,
    HOST,
    READY_TIMEOUT,
    DemoAPI,
    DemoError,
    exit_status,
    free_port,
    server_failure,
    server_process,
)
from sims.http_runner import run_http_async
from sims.presets import DEFAULT_EXPLORATION
from sims.scenarios import Scenario

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
TICK = 1.0
MAX_SECONDS = 3600.0
MAX_RATE = 200.0
"""Bounds of ``--seconds`` and ``--rate``: the HTTP runner keeps four floats per round."""


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


def tick_of(status: Mapping[str, Any], elapsed: float) -> Tick:
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
            with server_process(directory, port, watch_window=WATCH_WINDOW) as proc:
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
    api = DemoAPI(base)
    try:
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
    finally:
        await api.close()
    error = None if runner.cancelled() else runner.exception()
    if proc.poll() is not None:
        # Whatever the traffic met then (a reset connection), the server's end is the news.
        stopped = f"the server stopped ({exit_status(proc.returncode)})"
        if proc.returncode is not None and proc.returncode < 0:
            raise DemoError(stopped)
        raise DemoError(f"{stopped}: {server_failure(directory)}")
    if isinstance(error, ClientError | TimeoutError | RuntimeError | ValueError):
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
