"""The ``Store`` protocol: durable state of one loop.

Three implementations share one contract test suite: :class:`bandit.memory.MemoryStore`, the
SQLite store and the PostgreSQL store in ``server/``. Every method is one transaction.
"""

from __future__ import annotations

from typing import Protocol

from bandit.config import ServiceConfiguration
from bandit.events import (
    Checkpoint,
    Decision,
    JoinedEvent,
    ModelRecord,
    PolicySettings,
    Reward,
    StoreCounts,
    WriteBatch,
    WriteResult,
)


class Store(Protocol):
    """Durable decisions, rewards, joined events, models, checkpoint and settings."""

    def write(self, batch: WriteBatch) -> WriteResult:
        """Commit a batch of decisions, rewards and activations in one transaction.

        A decision whose event id exists already is not written; the stored one is returned in
        its place. Rewards are checked against their decision (unknown, not yet activated, late,
        duplicate ``request_key``) with :mod:`bandit.join`'s rules; activations likewise.
        Items are applied in order: decisions, then activations, then rewards.
        """
        ...

    def get_decision(self, event_id: str) -> Decision | None:
        """The stored decision for ``event_id``, or None."""
        ...

    def due(self, now: float, limit: int) -> list[tuple[Decision, list[Reward]]]:
        """Up to ``limit`` active, unjoined decisions whose window is due at ``now``.

        Ordered by window close then event id; each with its counted (non-late) rewards in
        arrival order.
        """
        ...

    def append_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        """Append joined events, giving each the next ``seq``; skip any already joined.

        Returns the events appended, with their ``seq``.
        """
        ...

    def joined_after(self, cursor: int, limit: int) -> list[JoinedEvent]:
        """Joined events with ``seq > cursor`` in ``seq`` order, at most ``limit``."""
        ...

    def last_seq(self) -> int:
        """The highest ``seq`` appended so far (0 when none)."""
        ...

    def load_checkpoint(self) -> Checkpoint | None:
        """The learner's last checkpoint."""
        ...

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Replace the learner's checkpoint (model and cursor together)."""
        ...

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

    def counts(self, now: float) -> StoreCounts:
        """Totals for metrics; ``pending_join`` counts active unjoined events due at ``now``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
