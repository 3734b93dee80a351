"""The work of the trainer's jobs: offline evaluations and feature importances.

An edge stores a job's record as ``Running`` (:mod:`server.api.evaluations`,
:mod:`server.api.importance`); the trainer's :class:`server.trainer.jobs.JobRunner` finds it and
runs the work built here on its job thread, which saves the result into the same record unless
the record was deleted meanwhile. A record a stopped trainer left ``Running`` is run again by
the next one, so no process marks another's job as failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from bandit.evaluation import Candidate, PolicySource, best, evaluate, optimization_grid
from bandit.events import JobRecord, JoinedEvent
from bandit.importance import importance, namespaces
from bandit.store import JobStore
from policies import BaselinePolicy, UniformPolicy, make_factory
from server.trainer import job_records as wire
from server.trainer.jobs import StopCheck, Work, logged_events

MAX_NAMESPACES = 32
"""Most namespaces one feature-importance job scores."""


def evaluation_work(store: JobStore, record: JobRecord) -> Work | None:
    """The work of a ``Running`` evaluation record; None for one that has finished."""
    evaluation = wire.decode(record.data)
    if evaluation.status != "Running":
        return None
    return lambda should_stop: run_evaluation(store, evaluation, should_stop)


def importance_work(store: JobStore, record: JobRecord) -> Work | None:
    """The work of a ``Running`` feature-importance record; None for one that has finished."""
    item = wire.decode_importance(record.data)
    if item.status != "Running":
        return None
    return lambda should_stop: run_importance(store, item, should_stop)


def _candidates(e: wire.StoredEvaluation) -> list[Candidate]:
    def learner(name: str, arguments: str, source: PolicySource) -> Candidate:
        return Candidate(
            name=name,
            arguments=arguments,
            source=source,
            factory=make_factory(arguments, epsilon=e.epsilon),
            epsilon=e.epsilon,
            min_propensity=e.min_propensity,
        )

    out = [
        learner("Online", e.online[1], PolicySource.ONLINE),
        Candidate(
            name="Baseline",
            arguments="baseline",
            source=PolicySource.BASELINE,
            factory=lambda _: BaselinePolicy(),
        ),
        Candidate(
            name="Random",
            arguments="uniform",
            source=PolicySource.RANDOM,
            factory=lambda _: UniformPolicy(),
        ),
    ]
    out += [learner(n, a, PolicySource.CUSTOM) for n, a in e.policies]
    if e.optimize:
        out += [learner(n, a, PolicySource.OPTIMIZED) for n, a in optimization_grid()]
    return out


def run_evaluation(store: JobStore, e: wire.StoredEvaluation, should_stop: StopCheck) -> None:
    """Replay, estimate, save (job thread)."""

    def finish(**changes: Any) -> None:
        if should_stop() or store.get_job(wire.KIND, e.id) is None:
            return
        store.save_job(wire.evaluation_record(msgspec.structs.replace(e, **changes)))

    try:
        results = evaluate(
            lambda: logged_events(store, e.start, e.end),
            _candidates(e),
            should_stop=should_stop,
        )
    except InterruptedError:
        raise
    except Exception as exc:
        finish(status="Failed", description=f"evaluation failed: {exc}")
        raise
    count = results[0].ips.n if results else 0
    if count == 0:
        finish(status="Failed", description="no events in the window")
        return
    sources = (PolicySource.ONLINE, PolicySource.CUSTOM, PolicySource.OPTIMIZED)
    optimal = best(results, sources)
    finish(
        status="Succeeded",
        description=f"{count} events evaluated",
        optimal=optimal.name if optimal is not None else None,
        events=count,
        results=[wire.store_result(r) for r in results],
    )


def run_importance(store: JobStore, item: wire.StoredImportance, should_stop: StopCheck) -> None:
    """Score each namespace of the window's events, save (job thread)."""

    def events() -> Iterator[JoinedEvent]:
        return logged_events(store, item.start, item.end)

    candidate = Candidate(
        name="Online",
        arguments=item.arguments,
        source=PolicySource.ONLINE,
        factory=make_factory(item.arguments, epsilon=item.epsilon),
        epsilon=item.epsilon,
        min_propensity=item.min_propensity,
    )
    names = namespaces(events())[:MAX_NAMESPACES]
    changes: dict[str, Any]
    try:
        scores = importance(events, candidate, names, should_stop=should_stop)
        changes = {
            "status": "Succeeded",
            "description": f"{len(names)} namespaces scored",
            "scores": [(s.namespace, s.score, s.drop) for s in scores],
        }
    except InterruptedError:
        raise
    except Exception as exc:
        changes = {"status": "Failed", "description": f"feature importance failed: {exc}"}
    if not should_stop() and store.get_job(wire.IMPORTANCE_KIND, item.id) is not None:
        store.save_job(wire.importance_record(msgspec.structs.replace(item, **changes)))
