"""PostgreSQL for the bench: schemas of its own, and the CPU the database server spends.

The bench never touches a schema it did not create: :func:`bench_schemas` migrates fresh ones
(named ``bench_<hex>_<role>``) and drops them, with everything in them, when the phase ends,
whether it passed or failed. Processes reach a schema through its URL (:func:`schema_url`).

Where the database's CPU goes is read from ``/proc``, so only for a server on this machine:
every process whose ``comm`` is ``postgres`` is either a backend of one of the bench's sessions
(found by the client port of each TCP connection a bench process holds to the server, matched
against ``pg_stat_activity.client_port``), one of the server's own processes (postmaster, WAL
writer, checkpointer, background writer, autovacuum: everything that is not a client backend),
or a backend of some other client of the same server (other users; counted apart, as load that
is not the bench's).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bench.process import CpuTimes, cpu_spent, process_cpu_times
from stores.postgres.schema import migrate

SETTINGS = ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers", "max_connections")
"""Server settings the report names beside the figures (they decide what a commit costs)."""

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "")


def unavailable(url: str) -> str | None:
    """Why the bench cannot use the server at ``url`` (one line), or None when it answers."""
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no PostgreSQL server answers at {redact(url)} ({first})"
    return None


def redact(url: str) -> str:
    """``url`` as the report may print it: host, port and database, never a password.

    >>> redact("postgresql://bench:secret@db.example:6432/loop?sslmode=require")
    'db.example:6432/loop'
    """
    parts = conninfo_to_dict(url)
    return f"{parts.get('host', '')}:{parts.get('port', '5432')}/{parts.get('dbname', '')}"


def is_local(url: str) -> bool:
    """Whether the server of ``url`` runs on this machine (so ``/proc`` shows its processes)."""
    return str(conninfo_to_dict(url).get("host", "")) in LOCAL_HOSTS


def server_port(url: str) -> int:
    """The TCP port of the server of ``url``."""
    return int(conninfo_to_dict(url).get("port") or 5432)


def schema_url(url: str, schema: str) -> str:
    """``url`` with the session's ``search_path`` set to ``schema``: what ``--store`` needs to
    find the bench's tables.

    >>> schema_url("postgresql://u@h:5432/test", "bench_1")
    'postgresql://u@h:5432/test?options=-csearch_path%3Dbench_1'
    """
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def bench_schemas(url: str, roles: Iterable[str]) -> Iterator[dict[str, str]]:
    """Fresh, migrated schemas, one per role (role → schema name), dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    names = {role: f"bench_{tag}_{role}" for role in roles}
    created: list[str] = []
    try:
        for name in names.values():
            created.append(name)
            migrate(url, schema=name)
        yield names
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            for name in created:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )


def server_settings(url: str) -> dict[str, str]:
    """The server's version and :data:`SETTINGS`."""
    with psycopg.connect(url, connect_timeout=10) as conn:
        found = {}
        for name in ("server_version", *SETTINGS):
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            found[name] = str(row[0]) if row else "?"
    return found


def postgres_pids() -> list[int]:
    """Every process on this machine whose ``comm`` is ``postgres``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    out.append(int(entry.name))
    return out


def _socket_inodes(pids: Iterable[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = str(fd.readlink())
                    if target.startswith("socket:["):
                        inodes.add(int(target[8:-1]))
    return inodes


def client_ports(pids: Iterable[int], port: int) -> set[int]:
    """Local ports of the TCP connections that ``pids`` hold to a server on ``port``."""
    inodes = _socket_inodes(pids)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseCpu:
    """CPU seconds (user, kernel) the server's processes had used at one moment, by kind.

    ``ours`` are the backends of the watched processes' sessions, ``background`` the server's
    own processes, ``others`` the backends of every other session (the bench's own monitoring
    session among them).
    """

    ours: CpuTimes
    background: CpuTimes
    others: CpuTimes


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseUse:
    """CPU seconds the server spent between two :class:`DatabaseCpu` snapshots."""

    backends: float
    backends_kernel: float
    background: float
    others: float
    sessions: int
    """Backends of the watched processes seen at either end."""


class DatabaseWatch:
    """Snapshots of the CPU a local PostgreSQL server spends for some processes' sessions.

    Args:
        url: the server (without a schema; only ``pg_stat_activity`` is read).
    """

    def __init__(self, url: str) -> None:
        self.port = server_port(url)
        self.local = is_local(url)
        self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def close(self) -> None:
        self._conn.close()

    def snapshot(self, pids: Iterable[int]) -> DatabaseCpu:
        """The CPU used so far by the backends of ``pids``' sessions and every other server
        process (empty when the server is not on this machine)."""
        if not self.local:
            return DatabaseCpu(ours={}, background={}, others={})
        ports = client_ports(pids, self.port)
        rows = self._conn.execute(
            "SELECT pid, backend_type, client_port FROM pg_stat_activity"
        ).fetchall()
        ours = {int(pid) for pid, _, port in rows if port is not None and int(port) in ports}
        clients = {int(pid) for pid, kind, _ in rows if kind == "client backend"}
        cpu: tuple[CpuTimes, CpuTimes, CpuTimes] = ({}, {}, {})
        for pid in postgres_pids():
            with contextlib.suppress(OSError):
                kind = 0 if pid in ours else 2 if pid in clients else 1
                cpu[kind][pid] = process_cpu_times(pid)
        return DatabaseCpu(ours=cpu[0], background=cpu[1], others=cpu[2])

    @staticmethod
    def used(before: DatabaseCpu, after: DatabaseCpu) -> DatabaseUse:
        """What the server spent from ``before`` to ``after``. A backend of the watched
        sessions seen only at the start (its session ended) is not counted after it."""
        backends, kernel = cpu_spent(before.ours, {**before.ours, **after.ours})
        return DatabaseUse(
            backends=backends,
            backends_kernel=kernel,
            background=cpu_spent(before.background, after.background)[0],
            others=cpu_spent(before.others, after.others)[0],
            sessions=len(before.ours.keys() | after.ours.keys()),
        )
