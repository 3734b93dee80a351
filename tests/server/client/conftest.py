"""A live ``banditd serve`` (a real process on a loopback port, with a client and an admin key)
for the client's tests, and a scripted aiohttp server for the retry tests.

The live server is shared by a module's tests; each test names its own event ids.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from bandit.config import ServiceConfiguration
from bandit.events import Action, RankRequest
from server.client import Client, ClientError
from tests.e2e.conftest import HEALTH_TIMEOUT, HOST, Process, free_port

CLIENT_KEY = "client-key-for-client-tests"
ADMIN_KEY = "admin-key-for-client-tests"
SHORT = ServiceConfiguration(
    reward_wait_time=1.0, model_export_frequency=1.0, exploration_percentage=0.2
)
"""Rewards join a second after rank, models publish every second."""


@dataclass(frozen=True)
class Live:
    """A running server: its root URL and its log (quoted in failures)."""

    url: str
    process: Process


def start_live(directory: Path) -> Live:
    port = free_port()
    config = directory / "banditd.toml"
    config.write_text("learn_interval = 0.05\n")
    process = Process(
        name="banditd",
        args=[
            "serve",
            "--db",
            str(directory / "banditd.db"),
            "--host",
            HOST,
            "--port",
            str(port),
            "--config",
            str(config),
        ],
        log=directory / "banditd.log",
        env={"BANDITD_CLIENT_KEY": CLIENT_KEY, "BANDITD_ADMIN_KEY": ADMIN_KEY},
    )
    process.start()
    live = Live(url=f"http://{HOST}:{port}", process=process)
    deadline = time.monotonic() + HEALTH_TIMEOUT
    with Client(live.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not process.alive():
                pytest.fail(f"banditd exited while starting:\n{process.tail()}")
            try:
                if client.health().ok:
                    return live
            except ClientError:
                pass
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"banditd did not become healthy in {HEALTH_TIMEOUT} s:\n{process.tail()}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A banditd with :data:`SHORT` windows, killed (its process group) after the module."""
    server = start_live(tmp_path_factory.mktemp("live"))
    try:
        with Client(server.url, key=ADMIN_KEY) as admin:
            admin.put_configuration(SHORT)
        yield server
    finally:
        server.process.kill()


def rank_request(event_id: str, user: int = 0, *, defer: bool = False) -> RankRequest:
    """Three articles for user type ``user``."""
    return RankRequest(
        event_id=event_id,
        context_features=({"user": {"type": f"u{user}"}},),
        actions=tuple(
            Action(id=f"article-{a}", features=({"item": {"topic": f"t{a}"}},)) for a in range(3)
        ),
        defer_activation=defer,
    )


# -- the scripted server ---------------------------------------------------------------------


@dataclass
class Seen:
    """One request the scripted server took: method, path, headers, body, when (monotonic),
    and the client's address (one per connection)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    peer: object = None


@dataclass
class Script:
    """Answers in turn (the last repeats): each a status, a body and headers."""

    answers: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    counted: list[tuple[str, int, int]] = field(default_factory=list)
    """Streamed bodies under ``/v1/logs/import``: (transfer encoding, bytes, lines); these
    bodies are counted as they arrive, never held."""

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        index = min(len(self.seen) - 1, len(self.answers) - 1)
        return self.answers[index]


def unavailable(retry_after: str | None = "1") -> tuple[int, bytes, dict[str, str]]:
    body = (
        b'{"error":{"code":"ServiceUnavailable","message":"store writes are failing.",'
        b'"innerError":{"code":"ServiceUnavailable"}}}'
    )
    headers = {"Content-Type": "application/json", "x-ms-error-code": "ServiceUnavailable"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return 503, body, headers


RANKED = (
    201,
    b'{"ranking":[{"id":"a","probability":0.9},{"id":"b","probability":0.1}],'
    b'"eventId":"e","rewardActionId":"a"}',
    {"Content-Type": "application/json"},
)
NO_CONTENT: tuple[int, bytes, dict[str, str]] = (204, b"", {})


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], str]]:
    """Serve a :class:`Script` on a loopback port from a thread of its own; returns its URL."""
    stops: list[Callable[[], None]] = []

    def serve(script: Script) -> str:
        loop = asyncio.new_event_loop()

        async def handle(request: web.Request) -> web.Response:
            body = b""
            if request.path == "/v1/logs/import":
                size = lines = 0
                async for chunk in request.content.iter_any():
                    size, lines = size + len(chunk), lines + chunk.count(b"\n")
                encoding = request.headers.get("Transfer-Encoding", "")
                script.counted.append((encoding, size, lines))
            else:
                body = await request.read()
            peer = request.transport.get_extra_info("peername") if request.transport else None
            script.seen.append(
                Seen(
                    request.method,
                    request.path_qs,
                    dict(request.headers),
                    body,
                    time.monotonic(),
                    peer,
                )
            )
            status, payload, headers = script.answer()
            return web.Response(status=status, body=payload, headers=headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        # The loop runs in its own thread from the start, so async tests can use it too.
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        async def start() -> int:
            await runner.setup()
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return port

        port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)

        def stop() -> None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

        stops.append(stop)
        return f"http://{HOST}:{port}"

    try:
        yield serve
    finally:
        for stop in stops:
            stop()
