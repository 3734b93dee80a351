"""The trainer's state: configuration, policy and learner, as the trainer role holds them.

One trainer per store joins, learns, checkpoints and publishes (:class:`LearnerThread`); its
control (:mod:`server.trainer.control`), watcher (:mod:`server.trainer.observer`) and jobs act
on this object. Edges never see it: they read what it publishes from the store.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from bandit.config import ServiceConfiguration
from bandit.events import ModelRecord
from bandit.loop import Learner
from bandit.policy import Policy, PolicyFactory
from bandit.state import ensure_loop_state
from bandit.store import Store
from policies import DEFAULT_POLICY, make_factory
from server.entry.settings import Settings
from server.trainer.apprentice import ApprenticeTracker
from server.trainer.learner import LearnerThread
from server.trainer.metrics import TrainerMetrics


@dataclass(frozen=True, slots=True)
class Published:
    """The newest model the trainer published (what edges serve unless the guardrail trips)."""

    policy: Policy
    version: int
    created_at: float


def never_loaded() -> bool:
    """The trainer's own process serves no requests, so it never yields to them."""
    return False


class Trainer:
    """Configuration, policy, learner and learner thread of the trainer role.

    ``under_load`` tells the learner and the watcher when to yield: a trainer in a process of
    its own never does; one sharing an interpreter with an edge (one process holding both
    roles, as the in-process tests do) is handed the edge's request rate.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        under_load: Callable[[], bool] = never_loaded,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.metrics = TrainerMetrics()
        self._under_load = under_load
        now = clock()
        state = ensure_loop_state(
            store, new_seed=secrets.randbits(62), default_policy=DEFAULT_POLICY
        )
        self.seed = state.seed
        self.config = state.config
        self.policy_settings = state.policy
        self.factory: PolicyFactory = make_factory(
            state.policy.arguments, epsilon=state.config.exploration_percentage
        )
        self.apprentice = ApprenticeTracker(store)
        self.learner = Learner(
            store,
            self.factory,
            now=now,
            checkpoint_interval=settings.checkpoint_interval,
            observer=self.apprentice.observe,
        )
        latest = store.latest_model() or self.learner.publish(now, settings.keep_models)
        self.serving = Published(self.factory(latest.data), latest.version, latest.created_at)
        self.learner_thread: LearnerThread | None = None
        self.lease_until = math.inf
        """Until when (wall clock) this trainer's lease is known to be held; the lease renewal
        moves it. Past it the learner stops writing: a standby may have taken over."""

    def holds_lease(self) -> bool:
        """Whether the lease is known to be held now (the learner writes only while it is)."""
        return time.time() < self.lease_until

    async def start(self) -> None:
        """Start the learner thread."""
        self.learner_thread = LearnerThread(self, asyncio.get_running_loop())
        self.learner_thread.start()

    async def stop(self) -> None:
        """Stop learning (the thread checkpoints as it stops)."""
        if self.learner_thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.learner_thread.stop)
            self.learner_thread = None

    def under_load(self) -> bool:
        """Whether the learner and the watcher should yield to request handling now."""
        return self._under_load()

    def yield_time(self, worked: float, part: float = 1.0) -> float:
        """Seconds background work should pause after ``worked`` seconds, under load.

        ``part`` is the fraction of ``learn_share_under_load`` this worker may use; the learner
        and the watcher split it (2/3 and 1/3), so together they stay within the share.
        """
        share = self.settings.learn_share_under_load * part
        return worked * (1.0 - share) / share

    def update_config(self, new: ServiceConfiguration) -> ServiceConfiguration:
        """Validate a change against the current configuration, store it and apply it."""
        old = self.config
        old.check_change(new)
        self.store.save_config(new)
        self.config = new
        if new.exploration_percentage != old.exploration_percentage:
            self.factory = make_factory(
                self.policy_settings.arguments, epsilon=new.exploration_percentage
            )
        return new

    def install(self, record: ModelRecord, policy: Policy) -> None:
        """Record ``record`` as the newest published model. Event-loop thread only."""
        self.serving = Published(policy, record.version, record.created_at)
