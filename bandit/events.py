"""The values that flow through the loop: requests, decisions, rewards, joined events.

All are frozen. Feature objects are kept as the JSON the client sent (``JSONObject``); they are
validated at the edge and only ever read after that.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from bandit.config import LearningMode
from bandit.guardrail import GuardrailState

JSONObject = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One offered action: its id and its feature objects."""

    id: str
    features: tuple[JSONObject, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RankRequest:
    """A validated rank request.

    Attributes:
        event_id: the client's event id, or a generated UUID.
        context_features: the context feature objects, in order.
        actions: the offered actions, in order; the first non-excluded one is the baseline.
        excluded_action_ids: ids of actions that must get probability 0.
        defer_activation: when true the event waits for an activate call before its window opens.
        max_exploration: lowers the exploration budget for this request only.
    """

    event_id: str
    context_features: tuple[JSONObject, ...]
    actions: tuple[Action, ...]
    excluded_action_ids: tuple[str, ...] = ()
    defer_activation: bool = False
    max_exploration: float | None = None

    def excluded_mask(self) -> tuple[bool, ...]:
        """For each action, whether it is excluded."""
        excluded = set(self.excluded_action_ids)
        return tuple(a.id in excluded for a in self.actions)

    def baseline_index(self) -> int:
        """Index of the first non-excluded action."""
        for i, is_excluded in enumerate(self.excluded_mask()):
            if not is_excluded:
                return i
        raise ValueError("every action is excluded")


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """A logged decision: what was offered, the served distribution and the draw.

    Invariants: ``len(pmf) == len(request.actions)``; ``pmf`` sums to 1 ± 1e-6; the chosen action
    has ``pmf[chosen_index] > 0``. ``close_at`` is the end of the reward window (seconds since the
    epoch), or None while a deferred event is not activated.
    """

    event_id: str
    timestamp: float
    request: RankRequest
    pmf: tuple[float, ...]
    chosen_index: int
    model_version: int
    learning_mode: LearningMode = LearningMode.ONLINE
    greedy_index: int = 0
    active: bool = True
    activated_at: float | None = None
    close_at: float | None = None

    @property
    def propensity(self) -> float:
        """The probability with which the chosen action was served."""
        return self.pmf[self.chosen_index]

    @property
    def chosen_action_id(self) -> str:
        """Id of the action served."""
        return self.request.actions[self.chosen_index].id

    @property
    def explored(self) -> bool:
        """Whether the draw left the greedy action."""
        return self.chosen_index != self.greedy_index


@dataclass(frozen=True, slots=True, kw_only=True)
class Reward:
    """A reward report for one event. ``request_key`` deduplicates client retries."""

    event_id: str
    value: float
    received_at: float
    request_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReward:
    """A reward as a store holds it: the report and whether it came after its window closed
    (what :class:`bandit.store.LoopCopy` moves between stores)."""

    reward: Reward
    late: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Activation:
    """An activate call: the event's reward window opens at ``at`` and lasts ``wait`` seconds."""

    event_id: str
    at: float
    wait: float


class RewardOutcome(StrEnum):
    """What storing a reward did."""

    STORED = "stored"
    LATE = "late"
    DUPLICATE = "duplicate"
    INACTIVE = "inactive"
    UNKNOWN_EVENT = "unknown_event"


class ActivationOutcome(StrEnum):
    """What storing an activation did."""

    ACTIVATED = "activated"
    ALREADY_ACTIVE = "already_active"
    EXPIRED = "expired"
    UNKNOWN_EVENT = "unknown_event"


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteBatch:
    """Everything one group commit writes, in one transaction."""

    decisions: tuple[Decision, ...] = ()
    rewards: tuple[Reward, ...] = ()
    activations: tuple[Activation, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResult:
    """Per-item outcome of a :class:`WriteBatch`, in the batch's order.

    ``decisions`` holds the stored decision for each written one: itself when new, the earlier
    decision when the event id already existed (the caller decides replay or conflict).
    """

    decisions: tuple[Decision, ...] = ()
    rewards: tuple[RewardOutcome, ...] = ()
    activations: tuple[ActivationOutcome, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinedEvent:
    """A decision whose reward window closed, with its aggregated reward.

    ``seq`` orders joined events; the store assigns it (1, 2, …) when the event is appended and
    the learner's cursor counts in it. ``defaulted`` is true when no reward came and
    ``reward`` is the default reward.
    """

    decision: Decision
    reward: float
    reward_count: int
    defaulted: bool
    joined_at: float
    seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ImitationCounts:
    """Totals over a set of apprentice events.

    Attributes:
        number_of_events: events learned in Apprentice mode.
        sum_of_rewards: their rewards (what the baseline earned).
        number_of_imitated_events: events where the learned policy's greedy action was the
            baseline.
        sum_of_imitated_rewards: the rewards of those events.
    """

    number_of_events: int = 0
    sum_of_rewards: float = 0.0
    number_of_imitated_events: int = 0
    sum_of_imitated_rewards: float = 0.0

    def add(self, reward: float, imitated: bool) -> ImitationCounts:
        """These counts with one more event.

        >>> ImitationCounts().add(0.5, True).add(1.0, False)
        ImitationCounts(number_of_events=2, sum_of_rewards=1.5, number_of_imitated_events=1, sum_of_imitated_rewards=0.5)
        """  # noqa: E501
        return ImitationCounts(
            number_of_events=self.number_of_events + 1,
            sum_of_rewards=self.sum_of_rewards + reward,
            number_of_imitated_events=self.number_of_imitated_events + imitated,
            sum_of_imitated_rewards=self.sum_of_imitated_rewards + (reward if imitated else 0.0),
        )

    @property
    def imitation_rate(self) -> float:
        """Share of events imitated, in [0, 1] (0 with no events)."""
        return (
            self.number_of_imitated_events / self.number_of_events if self.number_of_events else 0.0
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprenticeMetrics:
    """Apprentice totals since Apprentice mode was turned on, and of the last learner batch.

    Times are seconds since the epoch; ``last_processed_event_time`` is the decision time of
    the newest apprentice event learned (``start_time`` until one is).
    """

    start_time: float
    last_processed_event_time: float
    total: ImitationCounts = ImitationCounts()
    last_batch: ImitationCounts = ImitationCounts()

    def add(self, event: JoinedEvent, imitated: bool) -> ApprenticeMetrics:
        """These metrics with one more learned apprentice event in the total."""
        return replace(
            self,
            last_processed_event_time=max(self.last_processed_event_time, event.decision.timestamp),
            total=self.total.add(event.reward, imitated),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MomentSums:
    """The running sums of a :class:`bandit.sequential.Moments` over ``k`` target policies, as
    stored (:meth:`bandit.graduation.ApprenticeEvaluation.sums`).

    ``wmax``, ``sw`` and ``swr`` hold ``k`` values, ``sww``, ``swwr`` and ``swwrr`` ``k * k``
    (row-major); ``rmin`` and ``rmax`` are infinite until the first event.
    """

    n: int
    rmin: float
    rmax: float
    wmax: tuple[float, ...]
    sw: tuple[float, ...]
    swr: tuple[float, ...]
    sww: tuple[float, ...]
    swwr: tuple[float, ...]
    swwrr: tuple[float, ...]


MOMENT_VECTORS = ("wmax", "sw", "swr", "sww", "swwr", "swwrr")
"""The fields of :class:`MomentSums` that hold vectors."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportRecord:
    """The trainer's last report, for edges to serve: who wrote it, when, and what it says.

    ``body`` is the server's encoding of the report (its status document, learner figures and
    metrics), opaque to the store, as a job record's ``data`` is.
    """

    at: float
    holder: str
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprenticeRecord:
    """Apprentice mode's persisted state: the totals served as ``latestApprenticeModeMetrics``
    and the running sums that value the learned policy against the baseline."""

    metrics: ApprenticeMetrics
    evaluation: MomentSums


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecord:
    """A published serving model."""

    version: int
    created_at: float
    data: bytes = field(repr=False)
    arguments: str
    learned_count: int
    cursor: int
    restored_from: int | None = None
    """The version this one restored, when a manual activation made it (a rollback)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingRetrain:
    """A retrain from the logs that a settings change started and no model has adopted yet.

    Saved with the checkpoint that resets the model (one transaction) and cleared by the
    checkpoint that adopts the retrained model, so a crash in between leaves it behind and the
    next start resumes the retrain: the learning the reset set aside is never lost.

    Attributes:
        generation: the change it belongs to; a newer change replaces the record.
        cursor: the learner's cursor at the reset: the retrain replays the retained joined
            events up to here, then catches up on what the live learner learned since.
        since: decision time of the oldest event replayed (``modelRetrainDays`` before the
            change).
        settings: what it retrains for (policy arguments, exploration, reward settings), for
            the log of a resumed retrain.
    """

    generation: int
    cursor: int
    since: float
    settings: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """The learner's durable state: its model and the seq of the last joined event it learned,
    and the retrain still owed to it (if any)."""

    model: bytes = field(repr=False)
    arguments: str
    cursor: int
    learned_count: int
    updated_at: float
    retrain: PendingRetrain | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySettings:
    """The learning policy: a name and a VW ``cb_explore_adf`` argument string."""

    name: str
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCounts:
    """Totals a store keeps for metrics.

    ``pending_join`` and ``oldest_pending_close_at`` cover the unjoined decisions already due
    (window closed and the join's grace passed); ``next_close_at`` is the earliest window close
    of any unjoined decision, due or not (None when none is pending): the next join comes then.
    """

    decisions: int
    rewards: int
    late_rewards: int
    joined: int
    defaulted: int
    explored: int
    pending_join: int
    oldest_pending_close_at: float | None
    next_close_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """A stored long-running job (offline evaluation, feature importance) and its result.

    ``data`` is the job's JSON document; the server module that owns the ``kind`` reads and
    writes it. Ids are unique per kind.
    """

    kind: str
    id: str
    created_at: float
    data: str = field(repr=False)


class LoopTime(StrEnum):
    """Named moments of a loop's life a store keeps (seconds since the epoch each)."""

    MODEL_CREATED = "model_created_at"
    """When the current model was started afresh (Personalizer's model ``creationTime``)."""
    CONFIG_EDITED = "config_edited_at"
    """When the service configuration was last changed through the API."""
    HEALTH_PROBE = "health_probe_at"
    """When ``/healthz`` last tried a small write to see whether failing writes recovered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardrailRecord:
    """The guardrail's state as stored, so a tripped guardrail stays tripped across restarts.

    Attributes:
        state: what serves: the learned policy, or the baseline while tripped.
        since: when it entered ``state`` (seconds since the epoch).
        reason: why, as logged.
        trips: how many times it has tripped, in all.
        recoveries: how many times it has released, in all.
    """

    state: GuardrailState
    since: float
    reason: str
    trips: int = 0
    recoveries: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSettingsRecord:
    """Watch, guardrail and drift settings changed through the API, as stored; they win over
    the settings file's from then on. Named as in the settings file's ``[watch]`` table (the
    server validates them when it reads them back).
    """

    window: int
    alpha: float
    guardrail_enabled: bool
    margin: float
    min_events: int
    drift_delta: float
    drift_threshold: float
    drift_min_events: int
    interval: float
    batch: int
    history: int


@dataclass(frozen=True, slots=True)
class Lease:
    """The trainer lease: ``holder`` is the one trainer of a store until ``expires_at``.

    Times are seconds since the epoch. ``acquired_at`` is when the holder's current term began
    (renewals keep it).
    """

    holder: str
    acquired_at: float
    expires_at: float


COMMAND_STATES = ("pending", "claimed", "done", "failed", "cancelled")
"""A :class:`Command`'s states: ``pending`` until the trainer claims it (or it is cancelled),
``claimed`` while the trainer carries it out, then ``done`` or ``failed``."""


@dataclass(frozen=True, slots=True)
class Command:
    """An admin request (made through any edge) that the trainer carries out once.

    Attributes:
        generation: assigned by the store when the command is submitted; increasing, and from
            the same sequence as the store's generation (so a command's number orders it among
            the changes it may cause).
        kind: what to do, for example ``"configure"``, ``"set_policy"``, ``"reset_model"``,
            ``"import_model"``, ``"activate_model"``, ``"delete_logs"``.
        payload: the request, opaque to the store (JSON, or model bytes).
        submitted_at: seconds since the epoch.
        state: one of :data:`COMMAND_STATES`.
        finished_at: when it was done, failed or cancelled; None before.
        result: what the trainer reports back, opaque to the store (JSON).
        error_code, error_message: why it failed (``error_code`` is set exactly when ``state``
            is ``"failed"``).
    """

    generation: int
    kind: str
    payload: bytes = field(repr=False)
    submitted_at: float
    state: str
    finished_at: float | None = None
    result: bytes = b""
    error_code: str | None = None
    error_message: str | None = None
