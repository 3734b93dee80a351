"""The store protocols: durable state of one loop, split by the role that uses it (DESIGN §4).

Each role depends only on the protocols it uses: the group-commit writer on :class:`EventLog`,
the learner on :class:`LearnerStore`, the job runner on :class:`Jobs`, export and import on
:class:`LogArchive`, the trainer's lease on :class:`TrainerLease`, edges and the trainer on
:class:`ControlChannel` to meet, ``banditd copy`` on :class:`LoopCopy`, and so on.
:class:`Store` is all of them, for the places that really need every part (opening a loop, the
service that hands parts to its roles, copying a loop).

The implementations share one contract suite, a module per protocol (``tests/stores/``):
:class:`bandit.memory.MemoryStore`, the SQLite store in ``stores/sqlite/`` and the PostgreSQL
store in ``stores/postgres/``. Every method is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from bandit.config import ServiceConfiguration
from bandit.events import (
    ApprenticeRecord,
    Checkpoint,
    Command,
    Decision,
    GuardrailRecord,
    JobRecord,
    JoinedEvent,
    Lease,
    LoopTime,
    ModelRecord,
    PolicySettings,
    ReportRecord,
    Reward,
    StoreCounts,
    StoredReward,
    WatchSettingsRecord,
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
        """Store a new serving model with the next version number; keep the newest ``keep``.

        Bumps the generation (:meth:`ControlChannel.generation`) in the same transaction.
        """
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

    def mark_restored(self, version: int, restored_from: int) -> None:
        """Record that model ``version`` was made by restoring ``restored_from`` (a manual
        activation): its :attr:`ModelRecord.restored_from` from now on. A no-op for a version
        no longer kept."""
        ...


class LoopSettings(Protocol):
    """The loop's settings and small records: service configuration, learning policy, guardrail
    state, watch settings, apprentice totals, named moments and named strings."""

    def load_config(self) -> ServiceConfiguration | None:
        """The stored service configuration."""
        ...

    def save_config(self, config: ServiceConfiguration) -> None:
        """Replace the stored service configuration (bumps the generation, same transaction)."""
        ...

    def load_policy(self) -> PolicySettings | None:
        """The stored learning policy."""
        ...

    def save_policy(self, policy: PolicySettings) -> None:
        """Replace the stored learning policy (bumps the generation, same transaction)."""
        ...

    def load_guardrail(self) -> GuardrailRecord | None:
        """The stored guardrail state, or None while none was saved."""
        ...

    def save_guardrail(self, record: GuardrailRecord) -> None:
        """Replace the stored guardrail state (bumps the generation, same transaction)."""
        ...

    def load_watch_settings(self) -> WatchSettingsRecord | None:
        """The watch settings saved through the API, or None."""
        ...

    def save_watch_settings(self, record: WatchSettingsRecord) -> None:
        """Replace the saved watch settings (bumps the generation, same transaction)."""
        ...

    def load_apprentice(self) -> ApprenticeRecord | None:
        """Apprentice mode's stored totals and running sums, or None."""
        ...

    def save_apprentice(self, record: ApprenticeRecord) -> None:
        """Replace apprentice mode's totals and sums. Saved every second or so while learning
        in Apprentice mode, so it leaves the generation alone: edges read it when asked."""
        ...

    def load_report(self) -> ReportRecord | None:
        """The trainer's last report, or None before its first."""
        ...

    def save_report(self, record: ReportRecord) -> None:
        """Replace the trainer's report (several times a second: the generation is left
        alone, edges read the report when asked)."""
        ...

    def get_time(self, name: LoopTime) -> float | None:
        """A named moment (seconds since the epoch), or None while never set."""
        ...

    def set_time(self, name: LoopTime, at: float) -> None:
        """Set a named moment."""
        ...

    def set_time_if_absent(self, name: LoopTime, at: float) -> float:
        """Set a named moment unless it is set already; returns the moment stored (one
        transaction, as :meth:`set_meta_if_absent`)."""
        ...

    def get_meta(self, key: str) -> str | None:
        """A small named string (the loop seed, the signing key)."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Set a small named value."""
        ...

    def set_meta_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless the key exists; returns the value stored.

        One transaction, so processes starting together on one store agree on values created
        once (the loop seed, the signing key): whichever commits first wins, and every caller
        gets its value back.
        """
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


class TrainerLease(Protocol):
    """The lease that makes one trainer per store: a holder and an expiry, compare-and-set.

    Times are the callers' clocks (seconds since the epoch); holders that share a store must
    share a clock within a small fraction of the ``ttl``.
    """

    def acquire_lease(self, holder: str, now: float, ttl: float) -> bool:
        """Take the trainer lease for ``holder`` until ``now + ttl``, or renew it if ``holder``
        holds it; False (nothing changed) while another holder's lease is unexpired at ``now``.

        One transaction (a row with an expiry; compare-and-set). A lease expires at its
        ``expires_at``: at ``now >= expires_at`` another holder may take it. A renewal keeps
        the term's ``acquired_at``; taking a lease (a free or an expired one, even one's own)
        starts a new term at ``now``.
        """
        ...

    def release_lease(self, holder: str) -> None:
        """Give the lease up if ``holder`` holds it (a standby may take it at once); else a
        no-op."""
        ...

    def lease(self, now: float) -> Lease | None:
        """The unexpired lease at ``now``, or None."""
        ...

    def wait_lease(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds while another session holds the lease, returning
        early when its hold ends (the holder released it, or its connection died); then the
        caller tries :meth:`acquire_lease`. True when the store waited; False at once from a
        store that cannot tell when a hold ends (the caller then polls on its own clock).

        PostgreSQL blocks on a session-level advisory lock its holder keeps, so a standby
        takes over the moment the holder's connection dies instead of after the ``ttl``.
        """
        ...

    def fence(self, holder: str | None) -> None:
        """From now on, refuse this handle's learner writes (:meth:`EventLog.append_joined`,
        :meth:`LearnerState.save_checkpoint`, :meth:`ModelRegistry.publish_model`) with
        :class:`bandit.errors.LeaseLost` unless the lease's holder is ``holder`` when they are
        made (checked in their own transaction); ``None`` lifts the fence. A trainer fences its
        handle once it holds the lease, so a trainer that stalled while a standby took over
        cannot write over the new holder's learning. Other writes are not fenced."""
        ...


class ControlChannel(Protocol):
    """How edges and the trainer meet: a generation number and a queue of admin commands.

    One sequence numbers both: every save an edge caches and every command submitted takes
    the next generation, so ``generation()`` is at least every command's generation.
    """

    def generation(self) -> int:
        """A number that grows whenever anything an edge caches changes: the configuration,
        the policy, a published model, the guardrail state, the watch settings (each save of
        these bumps it in the same transaction); and with each command submitted. Cheap: edges
        poll it every period. 0 for a store where nothing was saved yet."""
        ...

    def watch_changes(self, notify: Callable[[], None]) -> None:
        """Call ``notify`` (from any thread, without arguments) soon after the generation moves,
        whoever moved it; from then until :meth:`Store.close`. A store that cannot tell when
        another process moves it (SQLite) calls it only for its own handle's changes, or never:
        edges poll :meth:`generation` as well, so a lost notice delays a change by at most one
        poll period. PostgreSQL announces with ``NOTIFY`` (the payload is only the number)."""
        ...

    def submit_command(self, kind: str, payload: bytes, now: float) -> int:
        """Queue a command (state ``pending``, submitted at ``now``); returns its generation."""
        ...

    def claim_command(self, generation: int, now: float) -> bool:
        """``pending`` -> ``claimed``; False (nothing changed) if it was not pending (cancelled,
        claimed already, finished, or unknown). One transaction, so of all callers across
        processes exactly one claims a command."""
        ...

    def finish_command(
        self,
        generation: int,
        *,
        now: float,
        result: bytes = b"",
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """``claimed`` -> ``done`` (no ``error_code``) or ``failed`` (``error_code`` set), with
        ``finished_at = now`` and the result and error given.

        Raises:
            ValueError: the command is not claimed (unknown, pending, or finished already);
                nothing changed.
        """
        ...

    def cancel_command(self, generation: int, now: float) -> bool:
        """``pending`` -> ``cancelled`` (``finished_at = now``); False (nothing changed) if it
        was no longer pending, or is unknown."""
        ...

    def get_command(self, generation: int) -> Command | None:
        """A command by generation, in whatever state, or None."""
        ...

    def pending_commands(self, after: int, limit: int) -> list[Command]:
        """Pending commands with generation > ``after``, oldest first, at most ``limit``."""
        ...

    def fail_claimed(self, *, now: float, error_code: str, error_message: str) -> int:
        """``claimed`` -> ``failed`` for every command still claimed; how many. A trainer that
        has just taken the lease calls it: whoever claimed those stopped before finishing."""
        ...


class LoopCopy(Protocol):
    """A loop's rows as they are stored, read in pages and written into another store as they
    were: what ``banditd copy`` moves between stores (decisions with their windows, rewards
    with their lateness, joined events with their ``seq``, models with their versions, every
    named string, and the totals that outlive deleted logs) through
    :func:`bandit.transfer.copy_loop`.

    The settings, checkpoint, small records and named moments travel through their own
    protocols' loads and saves; commands, the lease and the trainer's report are not copied.
    """

    def copy_decisions(self, after: str, limit: int) -> list[Decision]:
        """Stored decisions with ``event_id > after`` (code point order: ``""`` starts), at most
        ``limit``, in that order; joined or not, active or not."""
        ...

    def copy_rewards(self, after: int, limit: int) -> list[tuple[int, StoredReward]]:
        """Stored rewards after position ``after`` (0 starts), in arrival order, at most
        ``limit``; each with its position (a number that grows with arrival; page by the last
        one seen). Late rewards included, as stored; a duplicate-keyed retry was never stored
        (its first report is)."""
        ...

    def copy_meta(self) -> dict[str, str]:
        """Every small named string (:meth:`LoopSettings.get_meta`), by key: what
        :class:`LoopSettings` cannot list."""
        ...

    def restore_rows(
        self,
        *,
        decisions: Sequence[Decision] = (),
        rewards: Sequence[StoredReward] = (),
        joined: Sequence[JoinedEvent] = (),
    ) -> None:
        """Write rows read from another store, as they were: decisions (active state and window
        kept), rewards in the order given with their lateness and ``request_key`` kept (so a
        retry after the copy is still a duplicate), joined events with their ``seq`` (their
        decisions restored already, in this call or an earlier one). One transaction.

        An unjoined active decision with a window is due for joining as it was; a joined one
        is not. Rows whose key the store holds already (an event id, a reward's event id and
        ``request_key``, a joined event's ``seq`` or event id), and rewards or joined events of
        a decision the store does not hold, are an error (``ValueError``, nothing written):
        copy into an empty store. :meth:`EventLog.counts` counts what is restored (the totals
        of deleted events come with :meth:`restore_totals`).
        """
        ...

    def restore_model(self, record: ModelRecord) -> None:
        """Store a model with its version, creation time, data and ``restored_from`` kept;
        later publications take versions after every restored one. A version the store holds
        already is an error (``ValueError``, nothing written). Bumps the generation, as a
        publication does."""
        ...

    def restore_seq(self, last_seq: int) -> None:
        """Make later :meth:`EventLog.append_joined` and :meth:`LogArchive.import_joined` give
        ``seq`` values above ``last_seq`` (a copied loop may have deleted its newest joined
        events; its learner's cursor must stay behind every new one). Never lowers the mark."""
        ...

    def restore_totals(self, *, joined: int, defaulted: int) -> None:
        """Set the totals of :meth:`EventLog.counts` that outlive deleted logs: ``joined`` and
        ``defaulted`` count every event ever joined, deleted since or not (the other totals
        count stored rows, and come with :meth:`restore_rows`)."""
        ...


class LearnerStore(EventLog, LearnerState, ModelRegistry, Protocol):
    """What the loop's learner uses: the joined events it learns, its checkpoint, and the
    models it publishes (:class:`bandit.loop.Learner`, :class:`bandit.loop.Loop`)."""


class WatchedLog(EventLog, ModelRegistry, Protocol):
    """What the counterfactual watch reads: the joined events and the models that served them."""


class JobStore(Jobs, LogArchive, Protocol):
    """What offline jobs (evaluations, feature importances) use: their records and the logs."""


class Store(
    EventLog,
    LearnerState,
    ModelRegistry,
    LoopSettings,
    LogArchive,
    Jobs,
    TrainerLease,
    ControlChannel,
    LoopCopy,
    Protocol,
):
    """Every part of a loop's durable state, and the connections behind it."""

    def close(self) -> None:
        """Release connections."""
        ...
