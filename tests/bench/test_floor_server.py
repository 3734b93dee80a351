"""The asyncio floor (:mod:`bench.floor_server`) answers the bench's requests over real sockets."""

from __future__ import annotations

import asyncio
import json

from bench.floor_server import FloorProtocol
from bench.minimal_server import RANKING


async def _exchange(
    payload: bytes, *, responses: int, split: int | None = None
) -> tuple[list[bytes], bool]:
    """Send ``payload`` on one loopback connection (in two writes, cut at ``split``); read
    ``responses`` responses (bounded in time) and whether the server then closed it."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorProtocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        cut = len(payload) if split is None else split
        writer.write(payload[:cut])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(payload[cut:])
        got: list[bytes] = []
        for _ in range(responses):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            got.append(head + await asyncio.wait_for(reader.readexactly(length), 5))
        closed = await asyncio.wait_for(reader.read(1), 0.2) == b"" if responses == 0 else False
        writer.close()
        return got, closed
    finally:
        server.close()
        await server.wait_closed()


def _post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_pipelined_requests_are_answered_in_order() -> None:
    rank = _post("/v1/rank", b'{"eventId":"e1","actions":[{"id":"a"}]}')
    reward = _post("/v1/events/e1/reward", b'{"value":1}')
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    # Split mid-request, so a body arriving in two reads is waited for.
    payload = rank + reward + health + _post("/v1/nothing", b"{}")
    got, _ = await _exchange(payload, responses=4, split=len(rank) + 30)
    assert got[0].startswith(b"HTTP/1.1 201 Created\r\n")
    assert json.loads(got[0].split(b"\r\n\r\n", 1)[1]) == {
        "ranking": RANKING,
        "eventId": "e1",
        "rewardActionId": "article-0",
    }
    assert got[1] == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert got[2].startswith(b"HTTP/1.1 200 OK\r\n") and got[2].endswith(b'{"status":"ok"}')
    assert got[3].startswith(b"HTTP/1.1 404 Not Found\r\n")


async def test_bodies_that_are_not_the_expected_json_get_400() -> None:
    got, _ = await _exchange(
        _post("/v1/rank", b"not json")
        + _post("/v1/rank", b"[1]")
        + _post("/v1/events/e/reward", b"{}"),
        responses=3,
    )
    assert all(r.startswith(b"HTTP/1.1 400 Bad Request\r\n") for r in got)


async def test_what_it_cannot_read_closes_the_connection() -> None:
    chunked = (
        b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    assert await _exchange(chunked, responses=0) == ([], True)
    bad_length = b"POST /v1/rank HTTP/1.1\r\nContent-Length: x\r\n\r\n"
    assert await _exchange(bad_length, responses=0) == ([], True)
