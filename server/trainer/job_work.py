"""The work of the trainer's jobs: offline evaluations and feature importances.

An edge stores a job's record as ``Running`` (:mod:`server.api.evaluations`,
:mod:`server.api.importance`); the trainer's :class:`server.trainer.jobs.JobRunner` finds it and
runs the work built here on its job thread, which saves the result into the same record unless
the record was deleted meanwhile. A record a stopped trainer left ``Running`` is run again by
the next one, so no process marks another's job as failed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import msgspec

from bandit.evaluation import Candidate, PolicySource, best, evaluate, optimization_grid
from bandit.events import JobRecord, JoinedEvent
from bandit.importance import FeatureScore, features, importance
from bandit.store import JobStore
from policies import BaselinePolicy, UniformPolicy, make_factory
from server.trainer import job_records as wire
from server.trainer.jobs import StopCheck, Work, logged_events

MAX_FEATURES = 32
"""Most features one feature-importance job scores (the first in name order)."""

MAX_EVENTS = 100_000
"""Most events one feature-importance job replays (the window's first)."""


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


def _stored(s: FeatureScore) -> wire.StoredFeatureScore:
    return wire.StoredFeatureScore(
        namespaces=[f.namespace for f in s.features],
        names=[f.name for f in s.features],
        label=s.label,
        score=s.score,
        drop=s.drop,
        interaction=s.interaction,
        halves=s.halves,
    )


def run_importance(store: JobStore, item: wire.StoredImportance, should_stop: StopCheck) -> None:
    """Score each feature of the window's events and pairs of the most important, save (job
    thread). Costs ``N (2 + 2F + P)`` learned events (:mod:`bandit.importance`), with N and F
    bounded by :data:`MAX_EVENTS` and :data:`MAX_FEATURES`."""

    def events() -> Iterator[JoinedEvent]:
        return itertools.islice(logged_events(store, item.start, item.end), MAX_EVENTS)

    candidate = Candidate(
        name="Online",
        arguments=item.arguments,
        source=PolicySource.ONLINE,
        factory=make_factory(item.arguments, epsilon=item.epsilon),
        epsilon=item.epsilon,
        min_propensity=item.min_propensity,
    )
    changes: dict[str, Any]
    try:
        found = features(events())
        names = found[:MAX_FEATURES]
        result = importance(events, candidate, names, should_stop=should_stop)
        st = result.stability
        pairs = len(result.scores) - len(names)
        skipped = f" (of {len(found)}; the first {MAX_FEATURES} by name)" if found != names else ""
        changes = {
            "status": "Succeeded",
            "description": f"{len(names)} features{skipped} and {pairs} interactions scored "
            f"on {result.events} events ({result.replays} replays)",
            "features": [_stored(s) for s in result.scores],
            "stability": None
            if st is None
            else wire.StoredStability(
                rank_correlation=st.rank_correlation,
                top_k_overlap=st.top_k_overlap,
                k=st.k,
                events=st.events,
            ),
        }
    except InterruptedError:
        raise
    except Exception as exc:
        changes = {"status": "Failed", "description": f"feature importance failed: {exc}"}
    if not should_stop() and store.get_job(wire.IMPORTANCE_KIND, item.id) is not None:
        store.save_job(wire.importance_record(msgspec.structs.replace(item, **changes)))
