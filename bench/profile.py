"""py-spy on the server during an extra, unmeasured load run: where the samples went.

``py-spy record -f raw`` writes collapsed stacks, one line per distinct stack:
``outer (file.py:12);inner (other.py:40) 17``. Self time is the share of samples whose innermost
frame is a function; inclusive time the share of samples with the function anywhere on the stack.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

from bench.process import pin, run_child
from bench.report import ProfileSummary


def py_spy() -> str | None:
    """The py-spy next to this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


PROJECT_PATHS = ("bandit/", "policies/", "server/")
"""Inclusive time is listed for functions in these packages: the stack's generic outer frames
(the event loop, threading) would otherwise fill the list."""

IDLE_LEAVES = frozenset(
    {
        "thread.py:_worker",  # an executor thread waiting on its queue (a C call)
        "threading.py:Condition.wait",
        "threading.py:Event.wait",
        "threading.py:Thread._wait_for_tstate_lock",
        "selectors.py:EpollSelector.select",
    }
)
"""Innermost frames of a thread that waits: not CPU, so left out of the shares."""

_BOOTSTRAP = frozenset(
    {
        "threading.py:Thread._bootstrap",
        "threading.py:Thread._bootstrap_inner",
        "threading.py:Thread.run",
    }
)


def _thread(functions: list[str]) -> str:
    """A stack's thread, named by its first function past ``threading``'s bootstrap frames."""
    if not functions or functions[0] != "threading.py:Thread._bootstrap":
        return "main (event loop)"
    return next((f for f in functions if f not in _BOOTSTRAP), "thread")


def _function(frame: str) -> tuple[str, str]:
    """``name (path/to/file.py:12)`` → (``file.py:name``, ``path/to/file.py``)."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return (f"{Path(path).name}:{name}" if name else frame), path


def _in_project(path: str, project_paths: tuple[str, ...]) -> bool:
    return any(path.startswith(p) or f"/{p}" in path for p in project_paths)


def summarize(
    raw: str, run: str, top: int = 10, project_paths: tuple[str, ...] = PROJECT_PATHS
) -> ProfileSummary:
    """Shares of the busy (non-waiting) samples: by thread, by function (self), by project
    function (inclusive).

    >>> raw = ("BaseEventLoop.run_forever (asyncio/base_events.py:1);a (server/x.py:1);"
    ...        "b (json/y.py:2) 3\\n"
    ...        "BaseEventLoop.run_forever (asyncio/base_events.py:1);a (server/x.py:1) 1\\n"
    ...        "EpollSelector.select (selectors.py:9) 4\\n")
    >>> s = summarize(raw, "demo")
    >>> s.samples, s.idle_share, s.threads
    (8, 0.5, (('main (event loop)', 1.0),))
    >>> s.top_self, s.top_inclusive
    ((('y.py:b', 0.75), ('x.py:a', 0.25)), (('x.py:a', 1.0),))
    """
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = busy = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        if frames[-1][0] in IDLE_LEAVES:
            continue
        busy += count
        self_counts[frames[-1][0]] += count
        threads[_thread([n for n, _ in frames])] += count
        for name in {n for n, path in frames if _in_project(path, project_paths)}:
            inclusive[name] += count
    share = 1 / busy if busy else 0.0
    return ProfileSummary(
        run=run,
        samples=total,
        idle_share=(total - busy) / total if total else 0.0,
        threads=tuple((n, c * share) for n, c in threads.most_common()),
        top_self=tuple((n, c * share) for n, c in self_counts.most_common(top)),
        top_inclusive=tuple((n, c * share) for n, c in inclusive.most_common(top)),
    )


def record(pid: int, seconds: float, out: Path, *, core: int | None) -> str:
    """Sample ``pid`` for ``seconds`` with py-spy (pinned to ``core``); returns the raw stacks."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed")
    command = [binary, "record", "--nonblocking", "-r", "200", "-p", str(pid)]
    command += ["-d", str(max(1, int(seconds))), "-f", "raw"]
    child = run_child(pin([*command, "-o", str(out)], core), timeout=seconds + 60)
    if child.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({child.returncode}): {child.stderr[-1000:]}")
    return out.read_text()
