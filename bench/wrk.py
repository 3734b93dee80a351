"""wrk, Debian's package, as the load generator: found on PATH or installed with apt-get.

One wrk thread (``-t1``) on its own core drives every connection; Lua scripts in ``bench/lua``
build the request bodies and print the result line (``done()`` in ``report.lua``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.load import LoadResult, LoadSpec, parse_result
from bench.process import pin, run_child

LUA_DIR = Path(__file__).parent / "lua"
TIMEOUT_SECONDS = 10
"""wrk's per-request timeout; a request slower than this counts as a timeout, not a latency."""


def find_or_install(*, allow_install: bool = True) -> tuple[str, str] | None:
    """The wrk binary and how it got here, installing Debian's package when root with apt-get.

    Returns None when wrk is absent and cannot be installed.
    """
    found = shutil.which("wrk")
    if found:
        return found, "found on PATH"
    apt_get = shutil.which("apt-get")
    if not allow_install or apt_get is None or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> None:
        subprocess.run([apt_get, *args], env=env, capture_output=True, timeout=600, check=False)

    try:
        apt("install", "-y", "-q", "wrk")
        if shutil.which("wrk") is None:  # stale or missing package lists
            apt("update", "-q")
            apt("install", "-y", "-q", "wrk")
    except subprocess.TimeoutExpired:
        return None
    found = shutil.which("wrk")
    return (found, "installed with apt-get install wrk") if found else None


def version(binary: str) -> str:
    """wrk's version line (``wrk debian/4.1.0-3 [epoll] …`` → ``debian/4.1.0-3 [epoll]``)."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else ""
    return first.removeprefix("wrk ").split(" Copyright")[0].strip()


class WrkGenerator:
    """Runs specs with wrk pinned to ``core``; scripts are assembled into ``work_dir``."""

    def __init__(self, binary: str, how: str, *, core: int | None, work_dir: Path) -> None:
        self._binary = binary
        self._core = core
        self._work_dir = work_dir
        self._version = version(binary)
        self._how = how
        report = (LUA_DIR / "report.lua").read_text()
        for name in ("rank", "reward", "mixed"):
            script = (LUA_DIR / f"{name}.lua").read_text()
            (work_dir / f"{name}.lua").write_text(report + "\n" + script)

    @property
    def description(self) -> str:
        return f"wrk {self._version} ({self._how}), 1 thread"

    def run(self, spec: LoadSpec) -> LoadResult:
        args = _script_args(spec)
        command = [
            self._binary,
            "-t1",
            f"-c{spec.connections}",
            f"-d{max(1, round(spec.duration))}s",
            f"--timeout={TIMEOUT_SECONDS}s",
            "-s",
            str(self._work_dir / f"{spec.kind}.lua"),
            spec.url,
            "--",
            *args,
        ]
        child = run_child(pin(command, self._core), timeout=spec.duration + 60)
        if child.returncode != 0:
            raise RuntimeError(f"wrk failed ({child.returncode}): {child.stderr[-2000:]}")
        return parse_result(child.stdout, child.cpu_seconds)


def _script_args(spec: LoadSpec) -> list[str]:
    if spec.kind == "rank":
        return [spec.tails_path, spec.id_prefix]
    if spec.kind == "reward":
        return [spec.ids_path, str(spec.ids_offset), str(spec.ids_count)]
    return [
        spec.tails_path,
        spec.id_prefix,
        f"{spec.rate:.3f}",
        str(spec.lag),
        str(spec.share_percent),
    ]
