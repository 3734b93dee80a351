"""Moving a loop from one store to another (``banditd copy``), through the store protocols only,
so any two implementations can be source and target.

What a loop is, for copying: its decisions, rewards and joined events as stored (windows,
lateness and ``seq`` kept), its published models with their versions, the learner's checkpoint,
the service configuration, the learning policy, the guardrail state, the watch settings, the
apprentice record, every named moment and named string, the totals that outlive deleted logs,
and the ``seq`` high-water mark. Commands, the trainer lease and the trainer's report belong to
the processes running on a store, not to the loop, and stay behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bandit.events import LoopTime
from bandit.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyReport:
    """What :func:`copy_loop` copied: rows and records by kind.

    Attributes:
        decisions, rewards, joined, models: rows copied (rewards late ones included).
        checkpoint: whether the source had a learner checkpoint (and it was copied).
        records: settings records copied, of the configuration, the policy, the guardrail
            state, the watch settings and the apprentice record (0..5).
        times: named moments copied.
        meta: named strings copied.
        last_seq: the ``seq`` mark the target numbers new joined events after.
    """

    decisions: int = 0
    rewards: int = 0
    joined: int = 0
    models: int = 0
    checkpoint: bool = False
    records: int = 0
    times: int = 0
    meta: int = 0
    last_seq: int = 0


def holds_loop(store: Store) -> bool:
    """Whether ``store`` holds a loop already: any decision, model, checkpoint or configuration.

    >>> from bandit.memory import MemoryStore
    >>> holds_loop(MemoryStore())
    False
    """
    return bool(
        store.copy_decisions("", 1)
        or store.latest_model() is not None
        or store.load_checkpoint() is not None
        or store.load_config() is not None
    )


def copy_loop(
    source: Store,
    target: Store,
    *,
    page: int = 1000,
    progress: Callable[[CopyReport], None] | None = None,
) -> CopyReport:
    """Copy the loop in ``source`` into the empty ``target``, ``page`` rows per transaction.

    Afterwards every read of the loop on the target answers as the source's does (decisions,
    due events, rewards, joined events, totals, models with their bytes, checkpoint, settings,
    moments and strings), and the target numbers new joined events after every ``seq`` the
    source gave or its learner's cursor and models' cursors name. The target's generation
    (:meth:`bandit.store.ControlChannel.generation`) counts its own changes. Nothing is written
    to ``source``; it should not change while copied (stop the processes on it first), or the
    copy may miss rows or refuse a reward whose decision it read before the reward arrived.

    A copy that fails part way leaves the target partly written, and holding a loop: start
    again on an empty target.

    Args:
        source: the store to copy from.
        target: an empty store (it may hold named strings, but no loop).
        page: rows read and written per transaction (at least 1).
        progress: called with the counts so far after each page of rows.

    Raises:
        ValueError: ``target`` holds a loop already (:func:`holds_loop`), or ``page`` < 1.
    """
    if page < 1:
        raise ValueError(f"page must be at least 1, not {page}")
    if holds_loop(target):
        raise ValueError(
            "the target store holds a loop already (decisions, models, a checkpoint or a "
            "configuration); copy into an empty store"
        )
    report = CopyReport()

    def step(**counts: int) -> None:
        nonlocal report
        report = replace(report, **{k: getattr(report, k) + v for k, v in counts.items()})
        if progress is not None:
            progress(report)

    after_id = ""
    while decisions := source.copy_decisions(after_id, page):
        target.restore_rows(decisions=decisions)
        after_id = decisions[-1].event_id
        step(decisions=len(decisions))
    after_position = 0
    while rewards := source.copy_rewards(after_position, page):
        target.restore_rows(rewards=[stored for _, stored in rewards])
        after_position = rewards[-1][0]
        step(rewards=len(rewards))
    cursor = 0
    while joined := source.joined_after(cursor, page):
        target.restore_rows(joined=joined)
        cursor = joined[-1].seq
        step(joined=len(joined))

    # Oldest first: list_models may leave ``data`` out, so each model is read whole.
    model_cursors = [0]
    for listed in reversed(source.list_models()):
        model = source.get_model(listed.version)
        if model is not None:  # pruned since it was listed
            target.restore_model(model)
            model_cursors.append(model.cursor)
            step(models=1)

    checkpoint = source.load_checkpoint()
    if checkpoint is not None:
        target.save_checkpoint(checkpoint)
    records = 0
    if (config := source.load_config()) is not None:
        target.save_config(config)
        records += 1
    if (policy := source.load_policy()) is not None:
        target.save_policy(policy)
        records += 1
    if (guardrail := source.load_guardrail()) is not None:
        target.save_guardrail(guardrail)
        records += 1
    if (watch := source.load_watch_settings()) is not None:
        target.save_watch_settings(watch)
        records += 1
    if (apprentice := source.load_apprentice()) is not None:
        target.save_apprentice(apprentice)
        records += 1
    times = 0
    for name in LoopTime:
        if (at := source.get_time(name)) is not None:
            target.set_time(name, at)
            times += 1
    meta = source.copy_meta()
    for key, value in meta.items():
        target.set_meta(key, value)

    last_seq = max(
        source.last_seq(), checkpoint.cursor if checkpoint is not None else 0, *model_cursors
    )
    target.restore_seq(last_seq)
    totals = source.counts(0.0)  # the totals only; ``now`` counts what is due
    target.restore_totals(joined=totals.joined, defaulted=totals.defaulted)
    return replace(
        report,
        checkpoint=checkpoint is not None,
        records=records,
        times=times,
        meta=len(meta),
        last_seq=last_seq,
    )
