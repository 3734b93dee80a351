"""An in-memory :class:`bandit.store.Store` (every protocol of :mod:`bandit.store`) for the
simulator and unit tests."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bandit import join as rules
from bandit.config import ServiceConfiguration
from bandit.errors import LeaseLost
from bandit.events import (
    ActivationOutcome,
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
    RewardOutcome,
    StoreCounts,
    StoredReward,
    WatchSettingsRecord,
    WriteBatch,
    WriteResult,
)


@dataclass(slots=True)
class _Row:
    decision: Decision
    rewards: list[Reward] = field(default_factory=list)  # counted, in arrival order
    late: list[Reward] = field(default_factory=list)  # kept, for copying; never counted
    keys: set[str] = field(default_factory=set)
    joined: bool = False


class MemoryStore:
    """Keeps everything in dicts and lists; same semantics as the durable stores."""

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._pending: list[tuple[float, str]] = []  # (close_at, event_id), sorted
        self._joined: list[JoinedEvent] = []  # sorted by seq; deletions leave gaps
        self._seq = 0
        self._jobs: dict[tuple[str, str], JobRecord] = {}
        self._checkpoint: Checkpoint | None = None
        self._models: list[ModelRecord] = []
        self._next_version = 1
        self._config: ServiceConfiguration | None = None
        self._policy: PolicySettings | None = None
        self._meta: dict[str, str] = {}
        self._guardrail: GuardrailRecord | None = None
        self._watch_settings: WatchSettingsRecord | None = None
        self._times: dict[LoopTime, float] = {}
        self._apprentice: ApprenticeRecord | None = None
        self._report: ReportRecord | None = None
        self._fence: str | None = None
        self._generation = 0
        self._watchers: list[Callable[[], None]] = []
        self._lease: Lease | None = None
        self._commands: dict[int, Command] = {}  # by generation, in submission order
        self._arrivals: list[tuple[int, StoredReward]] = []  # by position; deletions leave gaps
        self._arrived = 0  # the last reward's position
        self._rewards = 0
        self._late = 0
        self._joined_total = 0  # every event ever joined, as _defaulted: deletions keep them
        self._defaulted = 0
        self._explored = 0

    def write(self, batch: WriteBatch) -> WriteResult:
        decisions = []
        for d in batch.decisions:
            row = self._rows.get(d.event_id)
            if row is None:
                self._add_decision(d)
                decisions.append(d)
            else:
                decisions.append(row.decision)
        activations = []
        for a in batch.activations:
            row = self._rows.get(a.event_id)
            if row is None:
                activations.append(ActivationOutcome.UNKNOWN_EVENT)
                continue
            updated, outcome = rules.activate(row.decision, a)
            if outcome is ActivationOutcome.ACTIVATED and updated.close_at is not None:
                row.decision = updated
                bisect.insort(self._pending, (updated.close_at, a.event_id))
            activations.append(outcome)
        outcomes = []
        for r in batch.rewards:
            row = self._rows.get(r.event_id)
            if row is None:
                outcomes.append(RewardOutcome.UNKNOWN_EVENT)
                continue
            if r.request_key is not None and r.request_key in row.keys:
                outcomes.append(RewardOutcome.DUPLICATE)
                continue
            late = rules.is_late(row.decision.close_at, r.received_at, joined=row.joined)
            self._keep_reward(row, StoredReward(reward=r, late=late))
            if late:
                outcomes.append(RewardOutcome.LATE)
            else:
                outcomes.append(
                    RewardOutcome.STORED if row.decision.active else RewardOutcome.INACTIVE
                )
        return WriteResult(
            decisions=tuple(decisions), rewards=tuple(outcomes), activations=tuple(activations)
        )

    def _keep_reward(self, row: _Row, stored: StoredReward) -> None:
        """Store a reward known not to be a duplicate: in its row, counted unless late, and in
        arrival order."""
        r = stored.reward
        if r.request_key is not None:
            row.keys.add(r.request_key)
        self._rewards += 1
        if stored.late:
            row.late.append(r)
            self._late += 1
        else:
            row.rewards.append(r)
        self._arrived += 1
        self._arrivals.append((self._arrived, stored))

    def try_write(self, batch: WriteBatch) -> WriteResult | None:
        return self.write(batch)

    def sync(self) -> None:
        pass

    def failing_writes(self) -> str | None:
        return None  # memory does not fill up or lock

    def get_decision(self, event_id: str) -> Decision | None:
        row = self._rows.get(event_id)
        return row.decision if row else None

    def due(
        self, now: float, limit: int, *, raw_features: bool = False
    ) -> list[tuple[Decision, list[Reward]]]:
        out: list[tuple[Decision, list[Reward]]] = []
        for close, event_id in self._pending:
            if len(out) >= limit or close + rules.JOIN_GRACE > now:
                break
            row = self._rows[event_id]
            if not row.joined and row.decision.active:
                out.append((row.decision, list(row.rewards)))
        return out

    def append_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        self._check_fence()
        appended = []
        done: set[str] = set()
        for e in events:
            row = self._rows.get(e.decision.event_id)
            if row is None or row.joined:
                continue
            row.joined = True
            done.add(e.decision.event_id)
            self._seq += 1
            stored = replace(e, seq=self._seq)
            self._joined.append(stored)
            self._joined_total += 1
            self._defaulted += stored.defaulted
            appended.append(stored)
        if done:
            self._pending = [p for p in self._pending if p[1] not in done]
        return appended

    def joined_after(
        self, cursor: int, limit: int, *, raw_features: bool = False
    ) -> list[JoinedEvent]:
        if limit <= 0:
            return []
        start = bisect.bisect_right(self._joined, cursor, key=lambda e: e.seq)
        return self._joined[start : start + limit]

    def last_seq(self) -> int:
        return self._seq

    def load_checkpoint(self) -> Checkpoint | None:
        return self._checkpoint

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._check_fence()
        self._checkpoint = checkpoint

    def _add_decision(self, d: Decision) -> None:
        self._rows[d.event_id] = _Row(d)
        self._explored += d.explored
        if d.close_at is not None and d.active:
            bisect.insort(self._pending, (d.close_at, d.event_id))

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
        self._check_fence()
        record = ModelRecord(
            version=self._next_version,
            created_at=created_at,
            data=data,
            arguments=arguments,
            learned_count=learned_count,
            cursor=cursor,
        )
        self._bump()
        self._next_version += 1
        self._models.append(record)
        del self._models[:-keep]
        return record

    def latest_model(self) -> ModelRecord | None:
        return self._models[-1] if self._models else None

    def get_model(self, version: int) -> ModelRecord | None:
        return next((m for m in self._models if m.version == version), None)

    def list_models(self) -> list[ModelRecord]:
        return list(reversed(self._models))

    def mark_restored(self, version: int, restored_from: int) -> None:
        for i, model in enumerate(self._models):
            if model.version == version:
                self._models[i] = replace(model, restored_from=restored_from)

    def load_config(self) -> ServiceConfiguration | None:
        return self._config

    def save_config(self, config: ServiceConfiguration) -> None:
        self._config = config
        self._bump()

    def load_policy(self) -> PolicySettings | None:
        return self._policy

    def save_policy(self, policy: PolicySettings) -> None:
        self._policy = policy
        self._bump()

    def load_guardrail(self) -> GuardrailRecord | None:
        return self._guardrail

    def save_guardrail(self, record: GuardrailRecord) -> None:
        self._guardrail = record
        self._bump()

    def load_watch_settings(self) -> WatchSettingsRecord | None:
        return self._watch_settings

    def save_watch_settings(self, record: WatchSettingsRecord) -> None:
        self._watch_settings = record
        self._bump()

    def load_apprentice(self) -> ApprenticeRecord | None:
        return self._apprentice

    def save_apprentice(self, record: ApprenticeRecord) -> None:
        self._apprentice = record

    def load_report(self) -> ReportRecord | None:
        return self._report

    def save_report(self, record: ReportRecord) -> None:
        self._report = record

    def get_time(self, name: LoopTime) -> float | None:
        return self._times.get(name)

    def set_time(self, name: LoopTime, at: float) -> None:
        self._times[name] = at

    def set_time_if_absent(self, name: LoopTime, at: float) -> float:
        return self._times.setdefault(name, at)

    def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self._meta[key] = value

    def set_meta_if_absent(self, key: str, value: str) -> str:
        return self._meta.setdefault(key, value)

    def counts(self, now: float) -> StoreCounts:
        due = [c for c, e in self._pending if c + rules.JOIN_GRACE <= now]
        return StoreCounts(
            decisions=len(self._rows),
            rewards=self._rewards,
            late_rewards=self._late,
            joined=self._joined_total,
            defaulted=self._defaulted,
            explored=self._explored,
            pending_join=len(due),
            oldest_pending_close_at=due[0] if due else None,
            next_close_at=self._pending[0][0] if self._pending else None,
        )

    def close(self) -> None:
        pass

    # -- trainer lease and control channel ---------------------------------------------------

    def acquire_lease(self, holder: str, now: float, ttl: float) -> bool:
        lease = self.lease(now)  # an expired lease is free to take
        if lease is not None and lease.holder != holder:
            return False
        acquired_at = now if lease is None else lease.acquired_at
        self._lease = Lease(holder=holder, acquired_at=acquired_at, expires_at=now + ttl)
        return True

    def release_lease(self, holder: str) -> None:
        if self._lease is not None and self._lease.holder == holder:
            self._lease = None

    def lease(self, now: float) -> Lease | None:
        lease = self._lease
        return lease if lease is not None and lease.expires_at > now else None

    def wait_lease(self, timeout: float) -> bool:
        return False  # one process: nothing to wait for

    def fence(self, holder: str | None) -> None:
        self._fence = holder

    def _check_fence(self) -> None:
        if self._fence is not None and (self._lease is None or self._lease.holder != self._fence):
            raise LeaseLost(f"the trainer lease is no longer held by {self._fence}")

    def generation(self) -> int:
        return self._generation

    def _bump(self) -> None:
        self._generation += 1
        for notify in self._watchers:
            notify()

    def watch_changes(self, notify: Callable[[], None]) -> None:
        self._watchers.append(notify)

    def submit_command(self, kind: str, payload: bytes, now: float) -> int:
        self._bump()
        self._commands[self._generation] = Command(
            generation=self._generation,
            kind=kind,
            payload=payload,
            submitted_at=now,
            state="pending",
        )
        return self._generation

    def claim_command(self, generation: int, now: float) -> bool:
        return self._move(generation, "pending", state="claimed")

    def finish_command(
        self,
        generation: int,
        *,
        now: float,
        result: bytes = b"",
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        finished = self._move(
            generation,
            "claimed",
            state="done" if error_code is None else "failed",
            finished_at=now,
            result=result,
            error_code=error_code,
            error_message=error_message,
        )
        if not finished:
            raise ValueError(f"command {generation} is not claimed")

    def cancel_command(self, generation: int, now: float) -> bool:
        return self._move(generation, "pending", state="cancelled", finished_at=now)

    def _move(self, generation: int, source: str, **changes: Any) -> bool:
        """Apply ``changes`` to the command if it is in state ``source``; whether it was."""
        command = self._commands.get(generation)
        if command is None or command.state != source:
            return False
        self._commands[generation] = replace(command, **changes)
        return True

    def get_command(self, generation: int) -> Command | None:
        return self._commands.get(generation)

    def pending_commands(self, after: int, limit: int) -> list[Command]:
        pending = (c for g, c in self._commands.items() if g > after and c.state == "pending")
        return list(itertools.islice(pending, max(limit, 0)))

    def fail_claimed(self, *, now: float, error_code: str, error_message: str) -> int:
        claimed = [g for g, c in self._commands.items() if c.state == "claimed"]
        for generation in claimed:
            self._move(
                generation,
                "claimed",
                state="failed",
                finished_at=now,
                error_code=error_code,
                error_message=error_message,
            )
        return len(claimed)

    # -- logs, retention and jobs ------------------------------------------------------------

    def joined_between(
        self, start: float, end: float, after_seq: int, limit: int
    ) -> list[JoinedEvent]:
        out: list[JoinedEvent] = []
        for event in self.joined_after(after_seq, len(self._joined)):
            if len(out) >= limit:
                break
            if start <= event.decision.timestamp < end:
                out.append(event)
        return out

    def log_range(self) -> tuple[float, float] | None:
        if not self._joined:
            return None
        times = [e.decision.timestamp for e in self._joined]
        return min(times), max(times)

    def delete_logs(self, *, before: float | None, through_seq: int) -> int:
        doomed = {
            e.decision.event_id
            for e in self._joined
            if e.seq <= through_seq and (before is None or e.decision.timestamp < before)
        }
        if before is not None:
            doomed.update(
                event_id
                for event_id, row in self._rows.items()
                if not row.decision.active and row.decision.timestamp < before
            )
        for event_id in doomed:
            row = self._rows.pop(event_id)
            self._rewards -= len(row.rewards) + len(row.late)
            self._late -= len(row.late)
            self._explored -= row.decision.explored
        self._joined = [e for e in self._joined if e.decision.event_id not in doomed]
        self._arrivals = [a for a in self._arrivals if a[1].reward.event_id not in doomed]
        return len(doomed)

    def counted_rewards(self, event_ids: list[str]) -> dict[str, list[Reward]]:
        out: dict[str, list[Reward]] = {}
        for event_id in event_ids:
            row = self._rows.get(event_id)
            if row is not None and row.rewards:
                out[event_id] = list(row.rewards)
        return out

    def import_joined(self, events: list[JoinedEvent]) -> list[JoinedEvent]:
        appended = []
        for e in events:
            if e.decision.event_id in self._rows:
                continue
            row = _Row(e.decision, joined=True)
            self._rows[e.decision.event_id] = row
            self._explored += e.decision.explored
            self._seq += 1
            stored = replace(e, seq=self._seq)
            self._joined.append(stored)
            self._joined_total += 1
            self._defaulted += stored.defaulted
            appended.append(stored)
        return appended

    def save_job(self, job: JobRecord) -> None:
        self._jobs[(job.kind, job.id)] = job

    def get_job(self, kind: str, job_id: str) -> JobRecord | None:
        return self._jobs.get((kind, job_id))

    def list_jobs(self, kind: str) -> list[JobRecord]:
        return sorted(
            (j for (k, _), j in self._jobs.items() if k == kind), key=lambda j: j.created_at
        )

    def delete_job(self, kind: str, job_id: str) -> bool:
        return self._jobs.pop((kind, job_id), None) is not None

    # -- copying a loop ----------------------------------------------------------------------

    def copy_decisions(self, after: str, limit: int) -> list[Decision]:
        ids = sorted(event_id for event_id in self._rows if event_id > after)
        return [self._rows[event_id].decision for event_id in ids[: max(limit, 0)]]

    def copy_rewards(self, after: int, limit: int) -> list[tuple[int, StoredReward]]:
        start = bisect.bisect_right(self._arrivals, after, key=lambda a: a[0])
        return self._arrivals[start : start + max(limit, 0)]

    def copy_meta(self) -> dict[str, str]:
        return dict(self._meta)

    def restore_rows(
        self,
        *,
        decisions: Sequence[Decision] = (),
        rewards: Sequence[StoredReward] = (),
        joined: Sequence[JoinedEvent] = (),
    ) -> None:
        _check_restorable(self._rows, self._joined, decisions, rewards, joined)
        for d in decisions:
            self._add_decision(d)
        for stored in rewards:
            self._keep_reward(self._rows[stored.reward.event_id], stored)
        for e in sorted(joined, key=lambda e: e.seq):
            self._rows[e.decision.event_id].joined = True
            bisect.insort(self._joined, e, key=lambda j: j.seq)
            self._joined_total += 1
            self._defaulted += e.defaulted
            self._seq = max(self._seq, e.seq)
        done = {e.decision.event_id for e in joined}
        if done:
            self._pending = [p for p in self._pending if p[1] not in done]

    def restore_model(self, record: ModelRecord) -> None:
        if any(m.version == record.version for m in self._models):
            raise ValueError(f"model version {record.version} is stored already")
        bisect.insort(self._models, record, key=lambda m: m.version)
        self._next_version = max(self._next_version, record.version + 1)
        self._bump()

    def restore_seq(self, last_seq: int) -> None:
        self._seq = max(self._seq, last_seq)

    def restore_totals(self, *, joined: int, defaulted: int) -> None:
        self._joined_total = joined
        self._defaulted = defaulted


def _check_restorable(
    rows: dict[str, _Row],
    stored_joined: list[JoinedEvent],
    decisions: Sequence[Decision],
    rewards: Sequence[StoredReward],
    joined: Sequence[JoinedEvent],
) -> None:
    """Raise ValueError, before anything is written, for a row :meth:`MemoryStore.restore_rows`
    must refuse: a key held already (or twice in the call), or a row of an unknown decision."""
    ids = set(rows)
    for d in decisions:
        if d.event_id in ids:
            raise ValueError(f"decision {d.event_id!r} is stored already")
        ids.add(d.event_id)
    keys = {(event_id, key) for event_id, row in rows.items() for key in row.keys}
    for stored in rewards:
        r = stored.reward
        if r.event_id not in ids:
            raise ValueError(f"reward of unknown decision {r.event_id!r}")
        if r.request_key is not None:
            if (r.event_id, r.request_key) in keys:
                raise ValueError(f"reward {r.request_key!r} of {r.event_id!r} is stored already")
            keys.add((r.event_id, r.request_key))
    seqs = {e.seq for e in stored_joined}
    done = {event_id for event_id, row in rows.items() if row.joined}
    for e in joined:
        event_id = e.decision.event_id
        if event_id not in ids:
            raise ValueError(f"joined event of unknown decision {event_id!r}")
        if e.seq < 1 or e.seq in seqs or event_id in done:
            raise ValueError(f"joined event {event_id!r} (seq {e.seq}) is stored already")
        seqs.add(e.seq)
        done.add(event_id)
