"""Shared pieces of the end-to-end tests: a ``banditd serve`` subprocess, free ports, health
waits, Prometheus parsing, and the synthetic world both acceptance tests send traffic from.

Every server runs on 127.0.0.1 in its own process group and is killed (the whole group) when the
test ends, whether it passed or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bandit.config import ServiceConfiguration, from_wire
from bandit.events import Action, JoinedEvent, RankRequest
from bandit.state import SEED_KEY
from policies import VWPolicy
from server.client import AsyncClient, RetryPolicy
from stores.sqlite.store import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

LEARN_INTERVAL = 0.05
"""Seconds the learner sleeps when idle (the server's default is 0.2)."""

HEALTH_TIMEOUT = 30.0
"""Seconds a server may take to start answering ``/healthz`` (imports VW and numpy)."""

STOP_TIMEOUT = 15.0
"""Seconds a server may take to exit after SIGTERM."""

SERVICE_CONFIG: dict[str, Any] = {
    "rewardWaitTime": "PT1S",
    "defaultReward": 0,
    "rewardAggregation": "earliest",
    "explorationPercentage": 0.2,
    "modelExportFrequency": "PT1S",
    "logRetentionDays": 7,
}
"""A short loop: rewards join 1 s (+ the join grace) after rank, models publish every second."""

SHORT_LOOP: ServiceConfiguration = from_wire(SERVICE_CONFIG)
""":data:`SERVICE_CONFIG` as the client sends it."""

NO_ACK = (aiohttp.ClientError, TimeoutError, OSError)
"""What a request raises when the server is gone: no response, so no acknowledgement."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def seed_store(db: Path, loop_seed: int) -> None:
    """Create the SQLite file with a fixed loop seed, so the server's draws are reproducible."""
    store = SQLiteStore(db)
    try:
        store.set_meta(SEED_KEY, str(loop_seed))
    finally:
        store.close()


class BanditServer:
    """One ``banditd serve`` process on a SQLite file and a fixed port; restartable.

    Output of every start goes to its own log file next to the database, quoted in failures.
    """

    def __init__(self, db: Path, port: int, log_dir: Path) -> None:
        self.db = db
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self._log_dir = log_dir
        self._config = log_dir / "banditd.toml"
        self.configure()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = log_dir / "server-0.log"

    def configure(self, **settings: float) -> None:
        """Write the TOML settings file the next start reads (``learn_interval`` is preset)."""
        values = {"learn_interval": LEARN_INTERVAL, **settings}
        self._config.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))

    def start(self) -> None:
        """Start the server (it must not be running)."""
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.starts += 1
        self.log_path = self._log_dir / f"server-{self.starts}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITD_")}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "server.entry.cli",
                    "serve",
                    "--db",
                    str(self.db),
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--config",
                    str(self._config),
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the current start's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    async def wait_healthy(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """Poll ``/healthz`` until it answers 200 (or fail, quoting the server's log)."""
        assert self.proc is not None
        return await until_healthy(http, self.url, self.proc, self.log_tail)

    def kill(self) -> None:
        """SIGKILL the server's process group and reap it."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)

    def terminate(self) -> int:
        """SIGTERM the server and return its exit status (fails if it does not exit in time)."""
        proc = self.proc
        assert proc is not None and proc.poll() is None, "server is not running"
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"banditd did not exit within {STOP_TIMEOUT} s of SIGTERM")


@dataclass
class Process:
    """One banditd process (``args`` after ``banditd``) in its own process group, its output
    appended to a log file; the caller's ``BANDITD_*`` variables are replaced by ``env``."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITD_")}
        env.update(self.env)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server.entry.cli", *self.args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)

    def terminate(self) -> int:
        assert self.proc is not None and self.alive(), f"{self.name} is not running"
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def tail(self, chars: int = 3000) -> str:
        """The last ``chars`` characters of the log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


async def until_healthy(
    http: aiohttp.ClientSession,
    url: str,
    proc: subprocess.Popen[bytes],
    tail: Callable[[], str],
    name: str = "banditd",
) -> dict[str, Any]:
    """Poll ``url``'s ``/healthz`` until it answers 200 and return its body; fail, quoting
    ``tail()`` (the process's log), if ``proc`` exits or ``HEALTH_TIMEOUT`` passes first."""
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode} while starting:\n{tail()}")
        try:
            async with http.get(
                f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                if response.status == 200:
                    health: dict[str, Any] = await response.json()
                    return health
        except NO_ACK:
            pass
        await asyncio.sleep(0.1)
    pytest.fail(f"{name} did not become healthy in {HEALTH_TIMEOUT} s:\n{tail()}")


@pytest.fixture
def banditd(tmp_path: Path) -> Iterator[BanditServer]:
    """A not-yet-started server on ``tmp_path/banditd.db`` and a free port; killed at teardown."""
    db = tmp_path / "banditd.db"
    server = BanditServer(db, free_port(), tmp_path)
    try:
        yield server
    finally:
        server.kill()


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    """GET a JSON document, asserting 200."""
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def put_service_config(server: BanditServer, key: str | None = None) -> None:
    """Install :data:`SERVICE_CONFIG` through the client (one try) and check the server
    answers it."""
    async with AsyncClient(server.url, key=key, retry=RetryPolicy(attempts=1)) as client:
        await configure_short_loop(client)


async def configure_short_loop(client: AsyncClient) -> None:
    """Install :data:`SHORT_LOOP` through the client and check the server answers it."""
    assert await client.put_configuration(SHORT_LOOP) == SHORT_LOOP


def parse_metrics(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text exposition, by name."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        name, _, value = line.partition(" ")
        samples[name] = float(value.split()[0])
    return samples


@dataclass(frozen=True)
class World:
    """A synthetic world whose best action depends on the context.

    ``users`` user types and ``actions`` actions, each with a categorical feature; the best
    action for user type ``u`` is action ``u``. Choosing it pays 1 with probability ``p_best``,
    any other action with probability ``p_other``.

    The context is the user type alone. A context namespace shared by every request (say a
    constant ``device``) makes the default policy (``-l 0.001``, ``-q ::``) learn a global
    per-action bias that user-specific weights need thousands more rounds to overcome: in a
    simulation on the real loop, 2 of 40 seeds were still wrong for one user type after 4,000
    rounds.
    """

    users: int = 3
    actions: int = 4
    p_best: float = 0.9
    p_other: float = 0.1

    def action_id(self, index: int) -> str:
        return f"article-{index}"

    def best_action(self, user: int) -> str:
        return self.action_id(user)

    def rank_body(self, event_id: str, user: int) -> dict[str, Any]:
        return {
            "eventId": event_id,
            "contextFeatures": [{"user": {"type": f"u{user}"}}],
            "actions": [
                {"id": self.action_id(a), "features": [{"item": {"topic": f"t{a}"}}]}
                for a in range(self.actions)
            ],
        }

    def rank_request(self, event_id: str, user: int) -> RankRequest:
        """The request :meth:`rank_body` describes, as the loop sees it."""
        body = self.rank_body(event_id, user)
        return RankRequest(
            event_id=event_id,
            context_features=tuple(body["contextFeatures"]),
            actions=tuple(
                Action(id=a["id"], features=tuple(a["features"])) for a in body["actions"]
            ),
        )

    def reward(self, rng: random.Random, user: int, chosen: str) -> float:
        p = self.p_best if chosen == self.best_action(user) else self.p_other
        return 1.0 if rng.random() < p else 0.0


def round_rng(seed: int, index: int) -> random.Random:
    """The generator of one round: the same round draws the same user and reward on any run."""
    return random.Random(seed * 1_000_003 + index)


def greedy_action(ranking: list[dict[str, Any]]) -> str | None:
    """The action with the highest probability, or None when the maximum is shared."""
    top = max(item["probability"] for item in ranking)
    best = [item["id"] for item in ranking if math.isclose(item["probability"], top, abs_tol=1e-9)]
    return best[0] if len(best) == 1 else None


EPSILON = float(SERVICE_CONFIG["explorationPercentage"])
PREDICTION_TOL = 1e-6
SOFTMAX_ARGUMENTS = (
    "--cb_explore_adf --softmax --lambda 10 --power_t 0 -l 0.001 --cb_type mtr -q ::"
)
"""Reads a model's action scores through a smooth map. The served ε-greedy distribution only
moves when the greedy action changes, so it cannot tell a model that learned one event twice
from one that did not; softmax probabilities of the same weights can."""


def probe_requests() -> list[RankRequest]:
    """Requests to compare models on: every user type, an unseen one, and other action sets."""
    world = World()
    requests = [world.rank_request(f"probe-{u}", u) for u in range(world.users + 1)]
    reordered = world.rank_request("probe-reordered", 1)
    fewer = world.rank_request("probe-fewer", 2)
    return [
        *requests,
        replace(reordered, actions=reordered.actions[::-1]),
        replace(fewer, actions=fewer.actions[1:]),
    ]


def learn(arguments: str, events: Sequence[JoinedEvent]) -> bytes:
    """A fresh model that learned ``events`` in order, once each (the learner's job, offline)."""
    policy = VWPolicy(arguments, epsilon=EPSILON)
    for event in events:
        policy.learn_one(event)
    return policy.to_bytes()


def predictions(arguments: str, model: bytes, requests: list[RankRequest]) -> list[float]:
    """Every action probability ``model`` gives each request, in order."""
    policy = VWPolicy(arguments, epsilon=EPSILON, model=model)
    return [p for request in requests for p in policy.predict_one(request)]


def max_difference(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))
