"""What a load generator is asked to do and what it reports, whichever generator runs.

Two generators implement :class:`LoadGenerator`: wrk (:mod:`bench.wrk`, Debian's package,
installed by the bench when it can) and a Python one (:mod:`bench.loadgen`) for machines without
wrk. Both run in their own process pinned to a core the server does not use, keep connections
alive, run closed-loop (each connection sends its next request when the previous one answered, or
at the next rate slot in ``mixed`` runs), and print the same ``BENCH_JSON`` line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["rank", "reward", "mixed"]
RESULT_PREFIX = "BENCH_JSON "


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    """One load run against one server.

    Attributes:
        kind: ``rank`` (POST /v1/rank, fresh eventIds), ``reward`` (POST rewards to ids ranked
            earlier) or ``mixed`` (rank, then reward a share of those events ``lag`` requests
            later, at ``rate``).
        url: the server's base URL.
        connections: concurrent keep-alive connections.
        duration: seconds of load.
        tails_path: file of rank body tails (one per line), for rank and mixed.
        id_prefix: prefix of the eventIds a rank or mixed run makes up.
        ids_path: file of event ids (one per line), for reward.
        ids_offset: first id (0-based) a reward run uses.
        ids_count: ids a reward run may use; it wraps within them if it outlasts them.
        rate: mixed only: target requests/s of the whole run (0: as fast as possible).
        lag: mixed only: requests between an event's rank and its reward.
        share_percent: mixed only: events out of 100 that get a reward.
    """

    kind: Kind
    url: str
    connections: int
    duration: float
    tails_path: str = ""
    id_prefix: str = "e"
    ids_path: str = ""
    ids_offset: int = 0
    ids_count: int = 0
    rate: float = 0.0
    lag: int = 256
    share_percent: int = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """What one run measured. Latencies in milliseconds, from send to full response.

    Attributes:
        requests: responses received (any status).
        seconds: the run's measured duration.
        non_2xx: responses with status ≥ 400.
        socket_errors: connect, read and write errors.
        timeouts: requests that got no answer within the generator's timeout.
        p50_ms, p90_ms, p99_ms, mean_ms, max_ms: latency of the responses.
        generator_cpu: CPU seconds the load generator used, from its own process accounting.
    """

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    generator_cpu: float

    @property
    def ok_per_second(self) -> float:
        """Successful (non-error) responses per second."""
        ok = self.requests - self.non_2xx
        return ok / self.seconds if self.seconds > 0 else 0.0


def parse_result(stdout: str, generator_cpu: float) -> LoadResult:
    """Read the ``BENCH_JSON`` line both generators print.

    >>> line = ('BENCH_JSON {"requests": 10, "duration_us": 2000000, "non_2xx": 1, '
    ...         '"socket_errors": 0, "timeouts": 0, "latency_us": {"p50": 1000, "p90": 2000, '
    ...         '"p99": 3000, "mean": 1200, "max": 4000}}')
    >>> r = parse_result("noise\\n" + line, 0.5)
    >>> (r.requests, r.seconds, r.p99_ms, r.ok_per_second)
    (10, 2.0, 3.0, 4.5)
    """
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            latency = data["latency_us"]
            return LoadResult(
                requests=int(data["requests"]),
                seconds=data["duration_us"] / 1e6,
                non_2xx=int(data["non_2xx"]),
                socket_errors=int(data["socket_errors"]),
                timeouts=int(data["timeouts"]),
                p50_ms=latency["p50"] / 1000,
                p90_ms=latency["p90"] / 1000,
                p99_ms=latency["p99"] / 1000,
                mean_ms=latency["mean"] / 1000,
                max_ms=latency["max"] / 1000,
                generator_cpu=generator_cpu,
            )
    raise RuntimeError(f"the load generator printed no result line:\n{stdout[-2000:]}")


class LoadGenerator(Protocol):
    """Runs :class:`LoadSpec` s in a separate process pinned to ``core``."""

    @property
    def description(self) -> str:
        """Which generator, which version, and how it got onto this machine."""
        ...

    def run(self, spec: LoadSpec) -> LoadResult:
        """Run ``spec`` to completion (bounded by its duration plus a margin)."""
        ...
