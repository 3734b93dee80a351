"""Long-running jobs (offline evaluations, feature importances) on the trainer's worker thread.

A job's record lives in the store (:class:`bandit.events.JobRecord`): an edge creates it, and the
trainer finds it (:meth:`JobRunner.scan`, every second) and runs its work on one worker thread,
never on the event loop; the work saves the record as it finishes. A job is stopped when its
record is deleted (through any edge) or the trainer shuts down: its ``should_stop`` callable
turns true and the replay raises :class:`InterruptedError` at its next check. A record a
stopped trainer left running is run again by the next one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from bandit.events import JobRecord, JoinedEvent
from bandit.store import JobStore, LogArchive

log = logging.getLogger(__name__)

StopCheck = Callable[[], bool]
Work = Callable[[StopCheck], None]
Builder = Callable[[JobStore, JobRecord], Work | None]
"""The work of a stored record, or None when it has nothing left to do (finished)."""

_PAGE = 512


def logged_events(store: LogArchive, start: float, end: float) -> Iterator[JoinedEvent]:
    """Every joined event decided in ``[start, end)``, in log order, paged from the store."""
    after = 0
    while True:
        page = store.joined_between(start, end, after, _PAGE)
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1].seq


class JobRunner:
    """Runs jobs one at a time on a worker thread; each can be stopped by key."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="banditd-jobs")
        self._lock = threading.Lock()
        self._stopped: set[tuple[str, str]] = set()
        self._running: dict[tuple[str, str], Future[None]] = {}
        self._ran: set[tuple[str, str]] = set()
        self._closing = False

    def scan(self, builders: dict[str, Builder]) -> None:
        """Start the work of every stored record that has some and is not running or run here
        already; stop the jobs whose record is gone (store reads; call it off the event loop)."""
        for kind, build in builders.items():
            records = self.store.list_jobs(kind)
            stored = {r.id for r in records}
            with self._lock:
                running = {job_id for k, job_id in self._running if k == kind}
            for job_id in running - stored:
                self.stop(kind, job_id)
            for record in records:
                key = (kind, record.id)
                if key in self._ran or record.id in running:
                    continue
                work = build(self.store, record)
                if work is not None:
                    self.submit(kind, record.id, work)

    def submit(self, kind: str, job_id: str, work: Work) -> None:
        """Queue ``work``; it gets a callable telling it whether to stop."""
        key = (kind, job_id)
        with self._lock:
            self._stopped.discard(key)
            self._ran.add(key)

        def should_stop() -> bool:
            return self._closing or key in self._stopped

        def run() -> None:
            try:
                work(should_stop)
            except InterruptedError:
                log.info("%s %s stopped", kind, job_id)
            except Exception:
                log.exception("%s %s failed", kind, job_id)
            finally:
                with self._lock:
                    self._running.pop(key, None)

        with self._lock:
            self._running[key] = self._executor.submit(run)

    def stop(self, kind: str, job_id: str) -> None:
        """Ask a queued or running job to stop."""
        with self._lock:
            self._stopped.add((kind, job_id))

    def busy(self) -> bool:
        """Whether any job is queued or running."""
        with self._lock:
            return bool(self._running)

    async def idle(self) -> None:
        """Wait until no job is queued or running."""
        while self.busy():
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop every job and wait for the worker thread."""
        self._closing = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
