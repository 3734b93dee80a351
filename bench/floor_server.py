"""A reference below the ceiling: the minimal handler's work on a bare asyncio protocol.

It answers the bench's requests with :mod:`bench.minimal_server`'s own functions (``json.loads``
of the body, the shape check, the fixed ranking or 204), but reads and writes HTTP/1.1 itself
instead of through aiohttp. Only the CPU it takes per request is reported, beside the minimal
handler's: the difference is what aiohttp's request machinery (its protocol, request and
response objects, router and handler task) costs per request on this machine, a cost every
aiohttp service pays and banditd's ratio targets take as given.

It is a measuring device, not a server: it understands ``Content-Length`` bodies on keep-alive
connections and nothing else (no chunked bodies, no limits, no timeouts), which is all the
bench's load generators send. Anything it cannot read closes the connection.

Run: ``python -m bench.floor_server --port 8082``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from bench.minimal_server import rank_answer, reward_accepted

MAX_HEAD = 16 * 1024
"""Bytes of request line and headers read before the connection is given up."""

_REWARD_PREFIX = b"/v1/events/"
_REWARD_SUFFIX = b"/reward"


def _content_length(head: bytes) -> int | None:
    """The ``Content-Length`` of a request head (0 when absent), or None when it is malformed
    or the body is chunked."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
        elif name == b"transfer-encoding":
            return None
    return length if length >= 0 else None


def respond(method: bytes, path: bytes, body: bytes) -> bytes:
    """The whole HTTP/1.1 response to one request."""
    if method == b"POST" and path == b"/v1/rank":
        text = rank_answer(body)
        if text is None:
            return _response(b"400 Bad Request")
        return _response(b"201 Created", text.encode())
    if method == b"POST" and path.startswith(_REWARD_PREFIX) and path.endswith(_REWARD_SUFFIX):
        if not reward_accepted(body):
            return _response(b"400 Bad Request")
        return _response(b"204 No Content", None)
    if method == b"GET" and path == b"/healthz":
        return _response(b"200 OK", b'{"status":"ok"}')
    return _response(b"404 Not Found")


def _response(status: bytes, body: bytes | None = b"") -> bytes:
    if body is None:  # 204: no body, no length
        return b"HTTP/1.1 " + status + b"\r\n\r\n"
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class FloorProtocol(asyncio.Protocol):
    """One connection: requests are answered in order as their bodies complete."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        buffer = self._buffer + data
        out: list[bytes] = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    transport.close()
                    return
                break
            head = buffer[:end]
            length = _content_length(head)
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            if length is None or len(request_line) != 3:
                transport.close()
                return
            if len(buffer) < end + 4 + length:
                break
            body = buffer[end + 4 : end + 4 + length]
            buffer = buffer[end + 4 + length :]
            try:
                out.append(respond(request_line[0], request_line[1], body))
            except ValueError:  # a body that is not JSON
                out.append(_response(b"400 Bad Request"))
        self._buffer = buffer
        if out:
            transport.write(b"".join(out))


async def serve(port: int) -> None:
    """Serve on 127.0.0.1 until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorProtocol, "127.0.0.1", port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
