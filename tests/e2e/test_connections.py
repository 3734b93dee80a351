"""The connection layer of a live ``banditd serve``: parser errors answered in Personalizer's
error body, slow clients timed out (the slowloris fault test), idle connections closed, and the
connection limit.

Every server is a real subprocess on 127.0.0.1 with short timeouts in its config file; every
socket a test opens is closed when it ends. Timings are reported (``-s`` shows them), and
asserted only against generous bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import HOST, BanditServer, World, free_port

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
IDLE_TIMEOUT = 2.0
CLOSE_BOUND = 12.0
"""Seconds after which a slow connection still open fails a test (the timeouts plus a wide
margin for a busy machine)."""

SLOW_HEADERS = 100
SLOW_BODIES = 100


def read_until_closed(sock: socket.socket, bound: float = CLOSE_BOUND) -> tuple[bytes, bool]:
    """Everything the server sends until it closes the connection, read for at most ``bound``
    s, and whether it did close it in that time."""
    sock.settimeout(0.5)
    received = b""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


def read_response(sock: socket.socket, bound: float = CLOSE_BOUND) -> bytes:
    """Everything the server sends until it closes the connection (at most ``bound`` s)."""
    return read_until_closed(sock, bound)[0]


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.x response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return status, headers, body[:length]


def assert_error(raw: bytes, status: int, inner: str) -> dict[str, object]:
    """``raw`` is a ``status`` response with Personalizer's error body and ``inner`` code."""
    assert raw, "the server closed the connection without a response"
    got, headers, body = split_response(raw)
    assert got == status, raw[:500]
    assert headers["content-type"] == "application/json; charset=utf-8", headers
    assert headers["x-ms-error-code"] == inner, headers
    error = json.loads(body)["error"]
    assert set(error) <= {"code", "message", "target", "innerError"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["innerError"] == {"code": inner}
    result: dict[str, object] = error
    return result


async def start(tmp: Path, **settings: float) -> BanditServer:
    server = BanditServer(tmp / "banditd.db", free_port(), tmp)
    server.configure(**settings)
    server.start()
    async with aiohttp.ClientSession() as http:
        await server.wait_healthy(http)
    return server


@pytest.fixture
async def quick(tmp_path: Path) -> AsyncIterator[BanditServer]:
    """A server with 1.5 s header and body timeouts, a 2 s idle timeout, 20 connections."""
    server = await start(
        tmp_path,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
        max_connections=20,
    )
    try:
        yield server
    finally:
        server.kill()


@contextlib.contextmanager
def connection(port: int) -> Iterator[socket.socket]:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        yield sock


def send_raw(port: int, data: bytes) -> bytes:
    with connection(port) as sock:
        sock.sendall(data)
        return read_response(sock)


# -- parser errors (defect 9): Personalizer's JSON error body, not text/plain ----------------


@pytest.mark.parametrize(
    ("name", "data", "status", "inner"),
    [
        (
            "nul_in_header",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
            400,
            "InvalidRequest",
        ),
        ("bad_request_line", b"GARBAGE\r\n\r\n", 400, "InvalidRequest"),
        (
            "bad_chunk_size",
            b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n",
            400,
            "InvalidRequest",
        ),
        (
            "header_over_8190_bytes",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "RequestHeaderFieldsTooLarge",
        ),
        (
            "request_line_over_8190_bytes",
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            431,
            "RequestHeaderFieldsTooLarge",
        ),
    ],
)
async def test_parser_error_answers_text_plain(
    quick: BanditServer, name: str, data: bytes, status: int, inner: str
) -> None:
    assert_error(send_raw(quick.port, data), status, inner)
    # The server is still there and serving.
    ok = send_raw(quick.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert split_response(ok)[0] == 200


# -- slow clients (defect 7) ----------------------------------------------------------------


def test_slow_headers_are_never_timed_out(quick: BanditServer) -> None:
    with connection(quick.port) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.3)
        received = b""
        while time.monotonic() - started < CLOSE_BOUND:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
        else:
            pytest.fail(f"a client dribbling headers was still connected after {CLOSE_BOUND} s")
    assert_error(received, 408, "RequestTimeout")


def test_slow_body_is_never_timed_out(quick: BanditServer) -> None:
    with connection(quick.port) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
        sock.settimeout(0.3)
        received = b""
        while time.monotonic() - started < CLOSE_BOUND:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        else:
            pytest.fail(f"a client dribbling a body was still connected after {CLOSE_BOUND} s")
    assert_error(received, 408, "RequestTimeout")


def test_steady_large_body_is_cut_by_the_body_timeout(quick: BanditServer) -> None:
    """A 600 KB rank sent in 100 KB pieces every 0.5 s takes twice the 1.5 s body timeout, but
    keeps well above the minimum rate (64 KiB/s): it is served, not cut."""
    body = json.dumps(World().rank_body("steady", 0)).encode() + b" " * 600_000
    with connection(quick.port) as sock:
        sock.sendall(
            b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for start in range(0, len(body), 100_000):
            sock.sendall(body[start : start + 100_000])
            time.sleep(0.5)
        status, _, answer = split_response(read_response(sock))
    assert status == 201, answer
    assert json.loads(answer)["eventId"] == "steady"


def test_silent_connection_is_closed_after_the_idle_timeout(quick: BanditServer) -> None:
    with connection(quick.port) as sock:
        raw, closed = read_until_closed(sock)
    assert closed, f"a silent connection was still open after {CLOSE_BOUND} s"
    assert raw == b""


def test_idle_keep_alive_connection_is_closed(quick: BanditServer) -> None:
    with connection(quick.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw, closed = read_until_closed(sock)
    assert closed, f"an idle keep-alive connection was still open after {CLOSE_BOUND} s"
    assert split_response(raw)[0] == 200


async def test_connections_past_the_limit_starve_the_process(tmp_path: Path) -> None:
    """20 idle connections fill the limit; the next five get a 503 at once, and once the idle
    ones go, the server serves again."""
    server = await start(tmp_path, idle_timeout=60.0, max_connections=20)
    try:
        with contextlib.ExitStack() as stack:
            held = [stack.enter_context(connection(server.port)) for _ in range(20)]
            # The last one held is served, so the server has accepted all 20.
            held[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held[-1].recv(12).startswith(b"HTTP/1.1 200")
            for _ in range(5):
                with connection(server.port) as extra:
                    raw = read_response(extra, bound=5.0)
                error = assert_error(raw, 503, "ServiceUnavailable")
                assert "20 connections" in str(error["message"])
                assert split_response(raw)[1]["retry-after"] == "1"
        deadline = time.monotonic() + CLOSE_BOUND
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        while True:
            raw = send_raw(server.port, request)
            if raw and split_response(raw)[0] == 200:
                break
            assert time.monotonic() < deadline, "the server did not recover after the limit"
            await asyncio.sleep(0.2)
        assert server.terminate() == 0, server.log_tail()
    finally:
        server.kill()


# -- the slowloris fault test ---------------------------------------------------------------


async def dribble(port: int, prefix: bytes, drip: bytes) -> tuple[float | None, bytes]:
    """Send ``prefix``, then ``drip`` every 0.25 s until the server closes the connection.

    Returns the seconds until it did (None if it was still open after :data:`CLOSE_BOUND`)
    and what it sent.
    """
    reader, writer = await asyncio.open_connection(HOST, port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = b""
    try:
        writer.write(prefix)
        while loop.time() - started < CLOSE_BOUND:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.25)
            except TimeoutError:
                writer.write(drip)
                await writer.drain()
                continue
            if not chunk:
                return loop.time() - started, received
            received += chunk
        return None, received
    except ConnectionError:
        return loop.time() - started, received
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_slowloris(tmp_path: Path) -> None:
    server = await start(
        tmp_path,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
        max_connections=SLOW_HEADERS + SLOW_BODIES + 50,
    )
    try:
        world = World()
        statuses: list[int] = []
        done = asyncio.Event()

        async def well_behaved() -> None:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as http:
                index = 0
                while not done.is_set() and index < 5000:
                    body = world.rank_body(f"good-{index}", index % world.users)
                    async with http.post(f"{server.url}/v1/rank", json=body) as response:
                        await response.read()
                        statuses.append(response.status)
                    index += 1
                    await asyncio.sleep(0.01)

        good = asyncio.create_task(well_behaved())
        headers = [
            dribble(server.port, b"POST /v1/rank HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n")
            for _ in range(SLOW_HEADERS)
        ]
        bodies = [
            dribble(
                server.port,
                b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{",
                b" ",
            )
            for _ in range(SLOW_BODIES)
        ]
        results = await asyncio.gather(*headers, *bodies)
        done.set()
        await asyncio.wait_for(good, 15)

        closed = [seconds for seconds, _ in results if seconds is not None]
        timeouts = sum(b" 408 " in raw.split(b"\r\n", 1)[0] for _, raw in results)
        print(
            f"\nslowloris: {len(results)} slow connections ({SLOW_HEADERS} headers, "
            f"{SLOW_BODIES} bodies), {len(closed)} closed by the server, {timeouts} with a 408; "
            f"seconds to close: min {min(closed, default=0):.2f}, "
            f"median {statistics.median(closed) if closed else 0:.2f}, "
            f"max {max(closed, default=0):.2f}; well-behaved client: {len(statuses)} ranks, "
            f"statuses {sorted(set(statuses))}"
        )
        assert len(closed) == len(results), "slow connections still open after the bound"
        for _, raw in results:
            if raw:
                assert_error(raw, 408, "RequestTimeout")
        assert statuses and set(statuses) == {201}, statuses
        assert server.terminate() == 0, server.log_tail()
    finally:
        server.kill()
    with contextlib.closing(sqlite3.connect(server.db)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
