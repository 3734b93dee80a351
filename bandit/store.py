"""The store protocols: durable state of one loop, split by the role that uses it (DESIGN §4).

Each role depends only on the protocols it uses: the group-commit writer on :class:`EventLog`,
the learner on :class:`LearnerStore`, the job runner on :class:`Jobs`, export and import on
:class:`LogArchive`, and so on. :class:`Store` is all of them, for the places that really need
every part (opening a loop, the service that hands parts to its roles).

Two implementations share one contract suite, a module per protocol (``tests/stores/``):
:class:`bandit.memory.MemoryStore` and the SQLite store in ``stores/sqlite/``; a PostgreSQL
store is not written yet. Every method is one transaction.
"""

from __future__ import annotations

from typing import Protocol

from bandit.config import ServiceConfiguration
from bandit.events import (
    Checkpoint,
    Decision,
    JobRecord,
    JoinedEvent,
    ModelRecord,
    PolicySettings,
    Reward,
    StoreCounts,
    WriteBatch,
    WriteResult,
)


class EventLog(Protocol):
    """Decisions, rewards and activations as they arrive, and the joined events made of them.

    The edge writes (group commit) and reads decisions back; the trainer joins due events and
    reads joined ones in ``seq`` order.
    """

    def write(self, batch: WriteBatch) -> WriteResult:
        """Commit a batch of decisions, rewards and activations in one transaction.

        A decision whose event id exists already is not written; the stored one is returned in
        its place. Rewards are checked against their decision (unknown, not yet activated, late,
        duplicate ``request_key``) with :mod:`bandit.join`'s rules; activations likewise.
        Items are applied in order: decisions, then activations, then rewards.

        The batch is committed on return, and durable once :meth:`sync` has returned after it
        (stores whose commits are durable anyway make ``sync`` a no-op). Splitting the two lets
        the group-commit writer start the next batch while the previous one is synced.
        """
        ...

    def try_write(self, batch: WriteBatch) -> WriteResult | None:
        """:meth:`write` if it can start without waiting for another writer, else None at once
        (nothing written).

        The group-commit writer commits on its event loop when this succeeds (handing a batch to
        a thread and back costs more than a batch's transaction) and on a thread otherwise.
        """
        ...

    def sync(self) -> None:
        """Make every write committed so far durable."""
        ...

    def failing_writes(self) -> str | None:
        """Why writes are failing (a full disk, a lock held past the wait), or None.

        Set by a write that raised :class:`bandit.errors.StoreUnavailable`, cleared by the next
        write that commits. Any write may raise it; it then wrote nothing.
        """
        ...

    def get_decision(self, event_id: str) -> Decision | None:
        """The stored decision for ``event_id``, or None."""
        ...

    def due(
        self, now: float, limit: int, *, raw_features: bool = False
    ) -> list[tuple[Decision, list[Reward]]]:
        """Up to ``limit`` active, unjoined decisions whose window is due at ``now``.

        Ordered by window close then event id; each with its counted (non-late) rewards in
        arrival order. With ``raw_features`` a store that keeps requests as JSON may leave each
        feature object's values encoded (``msgspec.Raw``): for the learner, which only hands
        them back to msgspec to build VW input. Such requests compare unequal to decoded ones.
        """
        ...

    def append_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        """Append joined events, giving each the next ``seq``; skip any already joined.

        Returns the events appended, with their ``seq``.
        """
        ...

    def joined_after(
        self, cursor: int, limit: int, *, raw_features: bool = False
    ) -> list[JoinedEvent]:
        """Joined events with ``seq > cursor`` in ``seq`` order, at most ``limit``
        (``raw_features``: as in :meth:`due`)."""
        ...

    def last_seq(self) -> int:
        """The highest ``seq`` appended so far (0 when none)."""
        ...

    def counts(self, now: float) -> StoreCounts:
        """Totals for metrics; ``pending_join`` counts active unjoined events due at ``now``."""
        ...

    def counted_rewards(self, event_ids: list[str]) -> dict[str, list[Reward]]:
        """The non-late rewards of each event, in arrival order (events without any absent)."""
        ...


class LearnerState(Protocol):
    """The learner's checkpoint: its model and cursor, saved together."""

    def load_checkpoint(self) -> Checkpoint | None:
        """The learner's last checkpoint."""
        ...

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Replace the learner's checkpoint (model and cursor together)."""
        ...


class ModelRegistry(Protocol):
    """Published serving models, numbered by version."""

    def publish_model(
        self,
        *,
        created_at: float,
        data: bytes,
        arguments: str,
        learned_count: int,
        cursor: int,
        keep: int,
    ) -> ModelRecord:
        """Store a new serving model with the next version number; keep the newest ``keep``."""
        ...

    def latest_model(self) -> ModelRecord | None:
        """The newest published model."""
        ...

    def get_model(self, version: int) -> ModelRecord | None:
        """A published model by version, if still kept."""
        ...

    def list_models(self) -> list[ModelRecord]:
        """Kept models, newest first (``data`` may be empty to save memory)."""
        ...


class LoopSettings(Protocol):
    """The loop's settings: service configuration, learning policy and small named values."""

    def load_config(self) -> ServiceConfiguration | None:
        """The stored service configuration."""
        ...

    def save_config(self, config: ServiceConfiguration) -> None:
        """Replace the stored service configuration."""
        ...

    def load_policy(self) -> PolicySettings | None:
        """The stored learning policy."""
        ...

    def save_policy(self, policy: PolicySettings) -> None:
        """Replace the stored learning policy."""
        ...

    def get_meta(self, key: str) -> str | None:
        """A small named value (for example the loop seed)."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Set a small named value."""
        ...


class LogArchive(Protocol):
    """The logs as an archive: time windows of joined events, retention, imports."""

    def joined_between(
        self, start: float, end: float, after_seq: int, limit: int
    ) -> list[JoinedEvent]:
        """Joined events decided in ``[start, end)`` with ``seq > after_seq``, in ``seq`` order.

        At most ``limit``; page by passing the last ``seq`` seen as ``after_seq``.
        """
        ...

    def log_range(self) -> tuple[float, float] | None:
        """Decision times of the oldest and the newest joined event, or None when none."""
        ...

    def delete_logs(self, *, before: float | None, through_seq: int) -> int:
        """Delete logged events with their decisions and rewards; returns how many decisions.

        Deletes joined events with ``seq <= through_seq`` (so nothing the learner has not learned
        yet) decided before ``before`` (all of them when None), and, when ``before`` is given,
        never-activated deferred decisions made before it. ``seq`` values are never reused.
        """
        ...

    def import_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        """Store already-joined events from an external log (decision and outcome together).

        Events whose id is stored already are skipped. Returns the events appended, with the
        ``seq`` each was given (after every existing one), so the learner learns them next.
        """
        ...


class Jobs(Protocol):
    """Records of long-running jobs (offline evaluations, feature importances)."""

    def save_job(self, job: JobRecord) -> None:
        """Insert or replace a job record."""
        ...

    def get_job(self, kind: str, job_id: str) -> JobRecord | None:
        """A job record by kind and id."""
        ...

    def list_jobs(self, kind: str) -> list[JobRecord]:
        """Every job record of a kind, oldest first."""
        ...

    def delete_job(self, kind: str, job_id: str) -> bool:
        """Delete a job record; returns whether it existed."""
        ...


class LearnerStore(EventLog, LearnerState, ModelRegistry, Protocol):
    """What the loop's learner uses: the joined events it learns, its checkpoint, and the
    models it publishes (:class:`bandit.loop.Learner`, :class:`bandit.loop.Loop`)."""


class WatchedLog(EventLog, ModelRegistry, Protocol):
    """What the counterfactual watch reads: the joined events and the models that served them."""


class JobStore(Jobs, LogArchive, Protocol):
    """What offline jobs (evaluations, feature importances) use: their records and the logs."""


class Store(EventLog, LearnerState, ModelRegistry, LoopSettings, LogArchive, Jobs, Protocol):
    """Every part of a loop's durable state, and the connections behind it."""

    def close(self) -> None:
        """Release connections."""
        ...
