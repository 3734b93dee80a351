"""The ``Policy`` protocol: compute a distribution over offered actions; learn from joined events.

Policies return distributions, never bare choices: capping and sampling happen in
:mod:`bandit.exploration` and :mod:`bandit.sampling`, so every decision logs its propensity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bandit.events import JoinedEvent, RankRequest


class Policy(Protocol):
    """A learner that maps a rank request to action probabilities."""

    @property
    def arguments(self) -> str:
        """The argument string that identifies this policy's settings."""
        ...

    def predict_one(self, request: RankRequest) -> list[float]:
        """Probabilities for ``request.actions``, in request order (sum 1 ± 1e-6)."""
        ...

    def learn_one(self, event: JoinedEvent) -> None:
        """Update from one joined event (the chosen action, its propensity and reward).

        The learner reads events with ``raw_features`` (:meth:`bandit.store.EventLog.due`): their
        feature values may still be encoded JSON, which only msgspec can write back out.
        """
        ...

    def to_bytes(self) -> bytes:
        """Serialize the model; ``PolicyFactory(data)`` restores it."""
        ...


PolicyFactory = Callable[[bytes | None], Policy]
"""Builds a policy: a fresh one from ``None``, or one restored from ``to_bytes`` output."""
