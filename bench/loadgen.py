"""A Python load generator, for machines where wrk is not installed and cannot be.

It does what the wrk scripts do — keep-alive HTTP/1.1 connections, closed loop, the same bodies,
eventIds and reward paths — on raw asyncio protocols with pre-encoded requests, so one core drives
several thousand requests/s. It runs in its own process pinned to its own core
(:class:`PythonGenerator`) and prints the same ``BENCH_JSON`` line as ``bench/lua/report.lua``.
Being Python, it saturates its core sooner than wrk does; the bench reports its CPU use beside
every run so a saturated generator shows.

Run directly: ``python -m bench.loadgen --kind rank --url http://127.0.0.1:8080 ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from array import array
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

from bench.load import RESULT_PREFIX, LoadResult, LoadSpec, parse_result
from bench.process import pin, run_child
from bench.workload import reward_value

_REWARD_BODIES = [
    json.dumps({"value": reward_value(i)}, separators=(",", ":")).encode() for i in range(5)
]
TIMEOUT_SECONDS = 10.0


class _Requests:
    """The request bytes of a spec, in the order the wrk scripts send them."""

    def __init__(self, spec: LoadSpec, host: str) -> None:
        self._spec = spec
        self._head = f"Host: {host}\r\nContent-Type: application/json\r\n".encode()
        self._tails = (
            Path(spec.tails_path).read_text().splitlines() if spec.kind != "reward" else []
        )
        ids = Path(spec.ids_path).read_text().splitlines() if spec.kind == "reward" else []
        self._ids = ids[spec.ids_offset : spec.ids_offset + max(spec.ids_count, 1)]
        self._n = 0
        self._sent = 0
        self._ranked = 0
        self._pending: deque[tuple[int, int]] = deque()

    def _post(self, path: str, body: bytes) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\n".encode()
            + self._head
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    def _rank(self, i: int) -> bytes:
        body = f'{{"eventId":"{self._spec.id_prefix}{i}",{self._tails[i % len(self._tails)]}'
        return self._post("/v1/rank", body.encode())

    def next(self) -> bytes:
        spec = self._spec
        if spec.kind == "rank":
            self._n += 1
            return self._rank(self._n - 1)
        if spec.kind == "reward":
            i = self._n % len(self._ids)
            self._n += 1
            index = spec.ids_offset + i
            return self._post(f"/v1/events/{self._ids[i]}/reward", _REWARD_BODIES[index % 5])
        self._sent += 1
        if self._pending and self._sent - self._pending[0][1] > spec.lag:
            event, _ = self._pending.popleft()
            return self._post(
                f"/v1/events/{spec.id_prefix}{event}/reward", _REWARD_BODIES[event % 5]
            )
        i = self._ranked
        self._ranked += 1
        if i % 100 < spec.share_percent:
            self._pending.append((i, self._sent))
        return self._rank(i)


class _Run:
    def __init__(self, spec: LoadSpec) -> None:
        parts = urlsplit(spec.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.spec = spec
        self.requests = _Requests(spec, f"{self.host}:{self.port}")
        self.latencies = array("d")
        self.non_2xx = 0
        self.socket_errors = 0
        self.stopping = False
        self.interval = 1.0 / spec.rate if spec.rate > 0 else 0.0
        self.next_slot = 0.0
        self.loop = asyncio.get_running_loop()

    def schedule(self, conn: _Connection) -> None:
        if self.stopping:
            conn.close()
            return
        if self.interval == 0.0:
            conn.send()
            return
        now = time.perf_counter()
        if self.next_slot == 0.0 or now - self.next_slot > 1.0:
            self.next_slot = now
        self.next_slot += self.interval
        delay = self.next_slot - now
        if delay <= 0:
            conn.send()
        else:
            self.loop.call_later(delay, conn.send)


class _Connection(asyncio.Protocol):
    def __init__(self, run: _Run) -> None:
        self._run = run
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._need = -1
        self._status = 0
        self.sent_at = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._run.schedule(self)

    def send(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        if self._run.stopping:
            self.close()
            return
        request = self._run.requests.next()
        self.sent_at = time.perf_counter()
        self._transport.write(request)

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            if self._need < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
                self._status = int(head[0].split()[1])
                length = 0
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                self._need = end + 4 + length
            if len(buffer) < self._need:
                return
            del buffer[: self._need]
            self._need = -1
            run = self._run
            if not run.stopping:
                run.latencies.append(time.perf_counter() - self.sent_at)
                if self._status >= 400:
                    run.non_2xx += 1
            run.schedule(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._run.stopping:
            self._run.socket_errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def drive(spec: LoadSpec) -> dict[str, object]:
    """Run ``spec`` in this process; returns the fields of the ``BENCH_JSON`` line."""
    run = _Run(spec)
    connections: list[_Connection] = []
    started = time.perf_counter()
    for _ in range(spec.connections):
        conn = _Connection(run)
        try:
            await run.loop.create_connection(lambda c=conn: c, run.host, run.port)  # type: ignore[misc]
        except OSError:
            run.socket_errors += 1
            continue
        connections.append(conn)
    await asyncio.sleep(max(0.0, spec.duration - (time.perf_counter() - started)))
    run.stopping = True
    elapsed = time.perf_counter() - started
    now = time.perf_counter()
    timeouts = sum(1 for c in connections if c.sent_at and now - c.sent_at > TIMEOUT_SECONDS)
    for conn in connections:
        conn.close()
    if connections:
        await asyncio.wait([c.closed for c in connections], timeout=5)
    ordered = sorted(run.latencies)
    micro = [1e6 * _percentile(ordered, q) for q in (0.5, 0.9, 0.99)]
    return {
        "requests": len(ordered),
        "duration_us": int(elapsed * 1e6),
        "non_2xx": run.non_2xx,
        "socket_errors": run.socket_errors,
        "timeouts": timeouts,
        "latency_us": {
            "p50": micro[0],
            "p90": micro[1],
            "p99": micro[2],
            "mean": 1e6 * sum(ordered) / len(ordered) if ordered else 0.0,
            "max": 1e6 * ordered[-1] if ordered else 0.0,
        },
    }


class PythonGenerator:
    """Runs specs with ``python -m bench.loadgen`` in a process pinned to ``core``."""

    def __init__(self, *, core: int | None, reason: str) -> None:
        self._core = core
        self._reason = reason

    @property
    def description(self) -> str:
        return f"bench.loadgen (Python asyncio, 1 process; {self._reason})"

    def run(self, spec: LoadSpec) -> LoadResult:
        command = [sys.executable, "-m", "bench.loadgen", *_spec_args(spec)]
        root = Path(__file__).resolve().parents[1]
        child = run_child(pin(command, self._core), timeout=spec.duration + 60, cwd=root)
        if child.returncode != 0:
            raise RuntimeError(f"bench.loadgen failed ({child.returncode}): {child.stderr[-2000:]}")
        return parse_result(child.stdout, child.cpu_seconds)


def _spec_args(spec: LoadSpec) -> list[str]:
    return [
        f"--kind={spec.kind}",
        f"--url={spec.url}",
        f"--connections={spec.connections}",
        f"--duration={spec.duration}",
        f"--tails={spec.tails_path}",
        f"--id-prefix={spec.id_prefix}",
        f"--ids={spec.ids_path}",
        f"--ids-offset={spec.ids_offset}",
        f"--ids-count={spec.ids_count}",
        f"--rate={spec.rate}",
        f"--lag={spec.lag}",
        f"--share-percent={spec.share_percent}",
    ]


def main(argv: list[str] | None = None) -> int:
    """Parse a spec from the command line, run it, print the result line."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--kind", choices=("rank", "reward", "mixed"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--tails", default="")
    parser.add_argument("--id-prefix", default="e")
    parser.add_argument("--ids", default="")
    parser.add_argument("--ids-offset", type=int, default=0)
    parser.add_argument("--ids-count", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--lag", type=int, default=256)
    parser.add_argument("--share-percent", type=int, default=50)
    args = parser.parse_args(argv)
    spec = LoadSpec(
        kind=args.kind,
        url=args.url,
        connections=args.connections,
        duration=args.duration,
        tails_path=args.tails,
        id_prefix=args.id_prefix,
        ids_path=args.ids,
        ids_offset=args.ids_offset,
        ids_count=args.ids_count,
        rate=args.rate,
        lag=args.lag,
        share_percent=args.share_percent,
    )
    result = asyncio.run(drive(spec))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
