"""What one load run and one learner run measured: the records every report section reads.

A run's CPU figures are shares of one core over the run (1.0: a whole core busy throughout), so
a figure divided by requests/s is CPU seconds per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.load import LoadResult

TARGET_CONNECTIONS = 32
NOISY = 0.10
"""A run is noisy when processes outside the bench took more than this share of the server's
core; a ratio between noisy runs is judged per CPU-second (see :meth:`BenchResult.cpu_ratio`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRun:
    """One load run against one server at one concurrency.

    ``server_cpu`` and ``generator_cpu`` are the share of one core each process used over the
    run; ``server_kernel_cpu`` is the part of ``server_cpu`` spent in the kernel (sockets, the
    WAL's reads, writes and fsyncs, locks, threads waking each other); ``foreign_cpu`` is the
    share of the server's core used by processes other than the server (other users of a
    shared machine). For banditd, ``items_per_commit`` is the items its group-commit writer put
    in a transaction over the run and ``commit_us_per_item`` the µs those transactions took on the
    event loop per item (the writer's own timing; the fsyncs, on a thread of their own, are not
    in it).
    """

    server: str
    endpoint: str
    connections: int
    load: LoadResult
    server_cpu: float
    generator_cpu: float
    foreign_cpu: float
    server_kernel_cpu: float = 0.0
    note: str = ""
    repeat: int = 0
    items_per_commit: float | None = None
    commit_us_per_item: float | None = None

    @property
    def cpu_us_per_request(self) -> tuple[float, float] | None:
        """The server's CPU per successful request in µs, (user, kernel); None without any."""
        rate = self.load.ok_per_second
        if rate <= 0 or self.server_cpu <= 0:
            return None
        kernel = self.server_kernel_cpu
        return 1e6 * (self.server_cpu - kernel) / rate, 1e6 * kernel / rate

    @property
    def per_cpu_second(self) -> float | None:
        """Successful requests per CPU-second of the server: requests/s with the CPU other
        processes took from the server's core given back. None when the server barely ran."""
        if self.server_cpu < 0.05:
            return None
        return self.load.ok_per_second / self.server_cpu


@dataclass(frozen=True, slots=True, kw_only=True)
class LearnerResult:
    """The learner working through a backlog of ``backlog`` due events, nothing else running.

    ``server_cpu`` is the share of its core the server used (below 1: it waited, on the disk or
    for a core other processes held); ``foreign_cpu`` the share other processes used. ``series``
    holds (seconds since the server answered, learnedCount) samples.
    """

    backlog: int
    learned: int
    seconds: float
    per_second: float
    server_cpu: float
    foreign_cpu: float = 0.0
    series: tuple[tuple[float, int], ...] = ()

    @property
    def per_cpu_second(self) -> float | None:
        """Events learned per CPU-second of the server, or None when it barely ran."""
        return self.per_second / self.server_cpu if self.server_cpu >= 0.05 else None


def best_run(
    runs: Iterable[HttpRun], server: str, endpoint: str, connections: int
) -> HttpRun | None:
    """The run of ``server``'s ``endpoint`` at ``connections`` with the most requests/s."""
    matching = [
        run
        for run in runs
        if (run.server, run.endpoint, run.connections) == (server, endpoint, connections)
    ]
    return max(matching, key=lambda run: run.load.ok_per_second, default=None)


def backlog_rate(series: list[tuple[float, int]], backlog: int) -> tuple[float, float]:
    """Events/s a learner took through a backlog, and the seconds it was measured over.

    ``series`` holds (seconds, learned) samples. The rate is the slope between the first and the
    last sample taken while the backlog was being worked through (0 < learned < backlog): the
    start-up before the first learned event and the idle tail after the last one (up to a poll
    interval) are not the learner's speed. With fewer than two such samples, the slope from the
    start to the first sample that saw the backlog done.

    >>> backlog_rate([(0.1, 0), (0.2, 100), (0.3, 300), (0.4, 500), (0.5, 600)], 600)
    (2000.0, 0.2)
    """
    moving = [(t, n) for t, n in series if 0 < n < backlog]
    if len(moving) >= 2 and moving[-1][0] > moving[0][0]:
        (start_t, start_n), (end_t, end_n) = moving[0], moving[-1]
        return (end_n - start_n) / (end_t - start_t), end_t - start_t
    end_t, end_n = next(((t, n) for t, n in series if n >= backlog), series[-1])
    return (end_n / end_t if end_t > 0 else 0.0), end_t
