"""The loop: decide, record rewards and activations, join, learn exactly once, publish.

The same code serves the HTTP server (wall clock, SQLite store, group-commit writer)
and the simulator (virtual clock, in-memory store). Time comes in as ``now`` (seconds since the
epoch); storage as the store protocols it uses (:mod:`bandit.store`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from bandit import join as rules
from bandit.config import LearningMode, ServiceConfiguration
from bandit.errors import EventConflict, EventNotFound, InvalidRewardRequest
from bandit.events import (
    Activation,
    ActivationOutcome,
    Checkpoint,
    Decision,
    JoinedEvent,
    ModelRecord,
    PendingRetrain,
    RankRequest,
    Reward,
    RewardOutcome,
    WriteBatch,
)
from bandit.exploration import served_distribution
from bandit.policy import Policy, PolicyFactory
from bandit.sampling import sample
from bandit.store import EventLog, LearnerStore


def decide(
    request: RankRequest,
    policy: Policy,
    *,
    config: ServiceConfiguration,
    seed: int,
    model_version: int,
    now: float,
) -> Decision:
    """Compute the served distribution and the seeded draw for one request.

    The distribution is :func:`bandit.exploration.served_distribution` in the configured
    learning mode, with the budget lowered by the request's ``maxExploration``.
    """
    capped = served_distribution(
        policy,
        request,
        config,
        mode=config.learning_mode,
        max_exploration=request.max_exploration,
    )
    chosen = sample(capped.pmf, seed, request.event_id)
    active = not request.defer_activation
    return Decision(
        event_id=request.event_id,
        timestamp=now,
        request=request,
        pmf=capped.pmf,
        chosen_index=chosen,
        greedy_index=capped.greedy_index,
        model_version=model_version,
        learning_mode=config.learning_mode,
        active=active,
        activated_at=now if active else None,
        close_at=rules.close_at(now, config.reward_wait_time) if active else None,
    )


def resolve_replay(request: RankRequest, stored: Decision) -> Decision:
    """A rank whose event id is already stored: the stored decision if the body is the same.

    Raises:
        EventConflict: the stored decision was made for a different request.
    """
    if stored.request != request:
        raise EventConflict(request.event_id)
    return stored


def check_reward(value: object, config: ServiceConfiguration) -> float:
    """Validate a reward value: a finite number within the configured range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRewardRequest("value must be a number.", target="value")
    reward = float(value)
    if not math.isfinite(reward):
        raise InvalidRewardRequest("value must be finite.", target="value")
    if not config.reward_min <= reward <= config.reward_max:
        raise InvalidRewardRequest(
            f"value must be within [{config.reward_min:g}, {config.reward_max:g}].",
            target="value",
        )
    return reward


def join_due(
    store: EventLog,
    config: ServiceConfiguration,
    now: float,
    limit: int,
    *,
    raw_features: bool = False,
) -> list[JoinedEvent]:
    """Join every decision whose window closed (up to ``limit``); returns what was appended
    (``raw_features``: as in :meth:`EventLog.due`)."""
    due = store.due(now, limit, raw_features=raw_features)
    if not due:
        return []
    joined = [
        rules.join(
            d,
            rewards,
            aggregation=config.reward_aggregation,
            default_reward=config.default_reward,
            now=now,
        )
        for d, rewards in due
    ]
    return store.append_joined(joined)


class Schedule:
    """When the learner next publishes, or checkpoints: the one rule the trainer and the
    simulator share.

    Due once ``every`` seconds have passed since the last time *and* there is progress that
    time did not cover: learned events for a publication (every ``modelExportFrequency``, so a
    version is never published twice with nothing new), the cursor for a checkpoint (every
    ``checkpoint_interval``). Pure: the caller passes ``now`` (seconds since the epoch).

    >>> schedule = Schedule(at=0.0, progress=0)
    >>> schedule.due(10.0, 0, every=5.0), schedule.due(4.0, 3, every=5.0)
    (False, False)
    >>> schedule.due(5.0, 3, every=5.0)
    True
    >>> schedule.done(5.0, 3)
    >>> schedule.due(20.0, 3, every=5.0)
    False
    """

    __slots__ = ("at", "progress")

    def __init__(self, *, at: float, progress: int) -> None:
        self.at = at
        """When it was last done."""
        self.progress = progress
        """The progress it covered then (learned events, or the cursor)."""

    def due(self, now: float, progress: int, *, every: float) -> bool:
        """Whether to do it at ``now``, with the learner at ``progress``."""
        return progress != self.progress and now - self.at >= every

    def done(self, now: float, progress: int) -> None:
        """Record that it was done at ``now``, covering ``progress``."""
        self.at = now
        self.progress = progress


LearnObserver = Callable[[Policy, JoinedEvent], None]
"""Called with the learner's policy and each joined event just before the policy learns it."""


@dataclass(slots=True)
class LearnStep:
    """What one learner step did."""

    joined: int
    learned: int
    cursor: int


class Learner:
    """Learns joined events in ``seq`` order, exactly once, and checkpoints model and cursor.

    The model and the cursor are saved in one store transaction, so after a crash the learner
    restarts from the last checkpoint and re-learns only what that checkpoint had not covered.
    That holds however often it checkpoints: ``checkpoint_interval`` (seconds; 0 = after every
    batch that moved the cursor, by :class:`Schedule`) trades the cost of serialising the model
    against the work redone after a crash.
    """

    def __init__(
        self,
        store: LearnerStore,
        factory: PolicyFactory,
        *,
        now: float,
        checkpoint_interval: float = 0.0,
        observer: LearnObserver | None = None,
    ) -> None:
        self._store = store
        self._factory = factory
        self.observer = observer
        self.last_published: ModelRecord | None = None
        """What :meth:`publish` last published (None before it has)."""
        self.checkpoint_interval = checkpoint_interval
        self._saved_bytes: tuple[int, int, bytes] | None = None  # (learned, cursor, model)
        checkpoint = store.load_checkpoint()
        self.retrain: PendingRetrain | None = None
        """The retrain owed to the model (saved with every checkpoint), or None."""
        if checkpoint is None:
            self.policy = factory(None)
            self.cursor = 0
            self.learned_count = 0
            self._checkpoints = Schedule(at=now, progress=0)
            self._save(now)
        else:
            self.policy = factory(checkpoint.model)
            self.cursor = checkpoint.cursor
            self.learned_count = checkpoint.learned_count
            self.retrain = checkpoint.retrain
            self._checkpoints = Schedule(at=now, progress=self.cursor)

    def _model_bytes(self) -> bytes:
        saved = self._saved_bytes
        if saved is not None and saved[:2] == (self.learned_count, self.cursor):
            return saved[2]
        data = self.policy.to_bytes()
        self._saved_bytes = (self.learned_count, self.cursor, data)
        return data

    def checkpoint(self, now: float) -> None:
        """Save model and cursor now (also on shutdown, so a clean stop redoes nothing)."""
        self._save(now)

    def _save(self, now: float) -> None:
        self._store.save_checkpoint(
            Checkpoint(
                model=self._model_bytes(),
                arguments=self.policy.arguments,
                cursor=self.cursor,
                learned_count=self.learned_count,
                updated_at=now,
                retrain=self.retrain,
            )
        )
        # Only once saved: a failed save (disk full, database locked) is retried next time.
        self._checkpoints.done(now, self.cursor)

    def step(self, config: ServiceConfiguration, now: float, limit: int = 512) -> LearnStep:
        """Join what is due, then learn up to ``limit`` joined events and checkpoint."""
        # Raw features: the policy only hands them back to msgspec to build its VW input.
        joined = join_due(self._store, config, now, limit, raw_features=True)
        if (
            joined
            and joined[0].seq == self.cursor + 1
            and joined[-1].seq - joined[0].seq == len(joined) - 1
        ):
            # Caught up: what was just joined is exactly what comes next, so learn it as it is
            # rather than reading (and decoding) the same events back from the store.
            batch = joined
        else:
            batch = self._store.joined_after(self.cursor, limit, raw_features=True)
        learn = config.learning_mode is not LearningMode.LOGGING_ONLY
        for event in batch:
            if learn:
                if self.observer is not None:
                    self.observer(self.policy, event)
                self.policy.learn_one(event)
                self.learned_count += 1
            self.cursor = event.seq
        if self._checkpoints.due(now, self.cursor, every=self.checkpoint_interval):
            self._save(now)
        return LearnStep(joined=len(joined), learned=len(batch) if learn else 0, cursor=self.cursor)

    def reset(
        self,
        now: float,
        factory: PolicyFactory | None = None,
        retrain: PendingRetrain | None = None,
    ) -> None:
        """Start from a fresh model (for example after a policy or settings change), owed
        ``retrain`` (None: nothing is owed, an older pending retrain is dropped).

        The cursor stays: events already joined are not learned by the new model. Saved before
        it takes effect: if the save fails, the learner is as it was.
        """
        self._replace((factory or self._factory)(None), 0, now, retrain)
        if factory is not None:
            self._factory = factory

    def adopt(
        self, policy: Policy, learned_count: int, now: float, *, retrained: bool = False
    ) -> None:
        """Continue from ``policy`` (for example one retrained from the logs up to the cursor);
        ``retrained``: it settles the pending retrain, cleared in the same checkpoint."""
        self._replace(policy, learned_count, now, None if retrained else self.retrain)

    def _replace(
        self, policy: Policy, learned_count: int, now: float, retrain: PendingRetrain | None
    ) -> None:
        previous = (self.policy, self.learned_count, self.retrain, self._saved_bytes)
        self.policy, self.learned_count, self.retrain = policy, learned_count, retrain
        self._saved_bytes = None
        try:
            self._save(now)
        except BaseException:
            self.policy, self.learned_count, self.retrain, self._saved_bytes = previous
            raise

    def publish(self, now: float, keep: int = 20) -> ModelRecord:
        """Make the learner's current model a new serving version."""
        record = self._store.publish_model(
            created_at=now,
            data=self._model_bytes(),
            arguments=self.policy.arguments,
            learned_count=self.learned_count,
            cursor=self.cursor,
            keep=keep,
        )
        self.last_published = record
        return record


class Loop:
    """The whole loop in one synchronous object: the simulator's and the tests' entry point.

    The server runs the same pieces (:func:`decide`, :meth:`EventLog.write`, :class:`Learner`), with
    writes group-committed and the learner on its own thread.
    """

    def __init__(
        self,
        *,
        store: LearnerStore,
        factory: PolicyFactory,
        config: ServiceConfiguration,
        seed: int,
        now: float,
        keep_models: int = 20,
        checkpoint_interval: float = 0.0,
    ) -> None:
        self.store = store
        self.config = config
        self.seed = seed
        self.keep_models = keep_models
        self.learner = Learner(store, factory, now=now, checkpoint_interval=checkpoint_interval)
        latest = store.latest_model()
        if latest is None:
            latest = self.learner.publish(now, keep_models)
        self.serving = factory(latest.data)
        self.serving_version = latest.version
        self._factory = factory
        self._publications = Schedule(at=latest.created_at, progress=self.learner.learned_count)

    def rank(self, request: RankRequest, now: float) -> Decision:
        """Decide and log; a repeated event id returns the stored decision (or conflicts)."""
        stored = self.store.get_decision(request.event_id)
        if stored is not None:
            return resolve_replay(request, stored)
        decision = decide(
            request,
            self.serving,
            config=self.config,
            seed=self.seed,
            model_version=self.serving_version,
            now=now,
        )
        result = self.store.write(WriteBatch(decisions=(decision,)))
        return resolve_replay(request, result.decisions[0])

    def reward(
        self, event_id: str, value: float, now: float, request_key: str | None = None
    ) -> RewardOutcome:
        """Record a reward; raises :class:`EventNotFound` for an unknown event."""
        reward = Reward(
            event_id=event_id,
            value=check_reward(value, self.config),
            received_at=now,
            request_key=request_key,
        )
        outcome = self.store.write(WriteBatch(rewards=(reward,))).rewards[0]
        if outcome is RewardOutcome.UNKNOWN_EVENT:
            raise EventNotFound(event_id)
        return outcome

    def activate(self, event_id: str, now: float) -> ActivationOutcome:
        """Open a deferred event's reward window; raises :class:`EventNotFound` if unknown."""
        activation = Activation(event_id=event_id, at=now, wait=self.config.reward_wait_time)
        outcome = self.store.write(WriteBatch(activations=(activation,))).activations[0]
        if outcome is ActivationOutcome.UNKNOWN_EVENT:
            raise EventNotFound(event_id)
        return outcome

    def step(self, now: float, limit: int = 4096) -> LearnStep:
        """Join and learn what is due; publish when ``modelExportFrequency`` has passed and
        something new was learned (:class:`Schedule`, as the trainer does)."""
        result = self.learner.step(self.config, now, limit)
        learned = self.learner.learned_count
        if self._publications.due(now, learned, every=self.config.model_export_frequency):
            self.publish(now)
        return result

    def publish(self, now: float) -> ModelRecord:
        """Publish the learner's model and serve it from now on."""
        record = self.learner.publish(now, self.keep_models)
        self.serving = self._factory(record.data)
        self.serving_version = record.version
        self._publications.done(now, record.learned_count)
        return record
