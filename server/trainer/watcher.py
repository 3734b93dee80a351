"""The loop watcher: scores newly joined events and keeps the watch, guardrail and drift state.

It reads ``store.joined_after(cursor, batch)`` with a cursor of its own (the learner's is not
touched) and reduces each event with the learned model current at its decision: when that model
served it, its logged pmf says what the model served; when the guardrail's baseline served it
(or this process cannot tell), the model's version is loaded from the store into a workspace of
the watcher's own and asked. It then updates
:class:`bandit.watch.Watch`, :class:`bandit.guardrail.Guardrail` and
:class:`bandit.drift.PageHinkley`. Every method here runs on the watcher's single worker thread;
the event loop reads only the immutable :class:`Report` published at the end of each round.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, replace

from bandit.config import LearningMode
from bandit.drift import DriftAlarm, PageHinkley, explains
from bandit.estimators import Estimate
from bandit.events import JoinedEvent, ModelRecord, RankRequest
from bandit.exploration import served_distribution
from bandit.guardrail import Guardrail, GuardrailState, Transition
from bandit.policy import Policy
from bandit.sequential import Moments
from bandit.store import WatchedLog
from bandit.watch import BASELINE, POLICY, Segment, Watch, WatchSnapshot, observe, summarize
from policies import make_factory
from server.trainer.runtime import Trainer
from server.trainer.watch_settings import WatcherSettings

log = logging.getLogger(__name__)

_POLICY_CACHE = 8
_VERSION_SCORES = 64
_REPLAY_EVENTS = 500
_SPAN_MARGIN = 2.0
"""Seconds around a guardrail change in which a decision may have been served either way."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionScore:
    """Progressive scores of one model version: the events decided while it was current."""

    version: int
    policy: Estimate
    baseline: Estimate
    improvement: Estimate


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """Everything the status endpoint and the metrics show, as of the end of one round."""

    at: float
    cursor: int
    seen: int
    lag: int
    snapshot: WatchSnapshot
    state: GuardrailState
    since: float
    reason: str
    trips: int
    recoveries: int
    transitions: tuple[Transition, ...]
    drift_up: float
    drift_down: float
    drift_mean: float
    alarms: tuple[DriftAlarm, ...]
    versions: dict[int, VersionScore]


@dataclass(frozen=True, slots=True, kw_only=True)
class Round:
    """What one round did: events scored, guardrail changes and drift alarms."""

    scored: int
    transitions: tuple[Transition, ...]
    alarms: tuple[DriftAlarm, ...]


def unknown_before(guardrail: Guardrail, started: float, *, known: bool = True) -> float:
    """Until when, before this process started at ``started``, it cannot tell whether the policy
    or the guardrail's baseline served a decision.

    The stored guardrail (restored into ``guardrail``) tells: if it never tripped, the policy
    served everything before (nothing is unknown, and the watcher scores those events from
    their logged pmf instead of loading each model version and asking it); if it tripped and
    recovered, the policy served since the last change (widened by the margin). While tripped,
    or when the stored state could not be read (``known`` false), everything before is unknown.
    """
    if not known or guardrail.tripped:
        return started
    if guardrail.trips == 0:
        return -math.inf
    return min(guardrail.since + _SPAN_MARGIN, started)


class Watcher:
    """Watch, guardrail and drift state over the joined-event stream (worker thread only)."""

    def __init__(
        self,
        service: Trainer,
        settings: WatcherSettings,
        guardrail: Guardrail,
        *,
        history_known: bool = True,
    ) -> None:
        self.service = service
        self.store: WatchedLog = service.store
        self.settings = settings
        self.watch = Watch(settings.watch)
        self.guardrail = guardrail
        self.drift = PageHinkley(settings.drift)
        self.cursor = max(0, self.store.last_seq() - settings.watch.window)
        self.seen = 0
        self.alarms: deque[DriftAlarm] = deque(maxlen=20)
        self.recent: deque[JoinedEvent] = deque(maxlen=min(settings.watch.window, _REPLAY_EVENTS))
        self._versions: OrderedDict[int, Moments] = OrderedDict()
        self._policies: OrderedDict[tuple[int, str, float], Policy] = OrderedDict()
        self._unknown_before = unknown_before(guardrail, service.clock(), known=history_known)
        self.report = self._report(0.0)

    # -- scoring -----------------------------------------------------------------------------

    def policy_for(self, version: int) -> Policy | None:
        """The stored model ``version`` in a workspace of the watcher's own, or None if gone."""
        epsilon = self.service.config.exploration_percentage
        for key in list(self._policies):
            if key[0] == version and key[2] == epsilon:
                self._policies.move_to_end(key)
                return self._policies[key]
        record = self.store.get_model(version)
        if record is None:
            return None
        return self._load(record, epsilon)

    def _load(self, record: ModelRecord, epsilon: float) -> Policy | None:
        key = (record.version, record.arguments, epsilon)
        try:
            policy = make_factory(record.arguments, epsilon=epsilon)(record.data)
        except Exception:
            log.warning("watcher cannot load model v%d", record.version, exc_info=True)
            return None
        self._policies[key] = policy
        while len(self._policies) > _POLICY_CACHE:
            self._policies.popitem(last=False)
        return policy

    def served_pmf(self, policy: Policy, request: RankRequest) -> list[float]:
        """What ``policy`` serves for ``request`` under the current caps, as in Online mode
        whatever the loop's mode: the watch values the learned policy against the baseline."""
        capped = served_distribution(
            policy,
            request,
            self.service.config,
            mode=LearningMode.ONLINE,
            max_exploration=request.max_exploration,
        )
        return list(capped.pmf)

    def _policy_of(self, event: JoinedEvent) -> Policy | None:
        policy = self.policy_for(event.decision.model_version)
        if policy is None:  # pruned (or unloadable): the serving model stands in
            policy = self.policy_for(self.service.serving.version)
        return policy

    def _fallback_spans(self) -> list[tuple[float, float]]:
        """When the baseline served in this process (widened by a margin for in-flight ranks),
        and what the stored guardrail leaves unknown from before (:func:`unknown_before`)."""
        spans = [(-math.inf, self._unknown_before)]
        start: float | None = None
        for t in self.guardrail.history:
            if t.state is GuardrailState.TRIPPED:
                start = t.at
            elif start is not None:
                spans.append((start - _SPAN_MARGIN, t.at + _SPAN_MARGIN))
                start = None
        if self.guardrail.tripped:
            spans.append((self.guardrail.since - _SPAN_MARGIN, math.inf))
        return spans

    def _pmf_of(self, event: JoinedEvent, fallback: list[tuple[float, float]]) -> list[float]:
        """The learned policy's served pmf for ``event``: the logged one when the model itself
        served it (most events: no prediction needed), else the model's prediction."""
        decision = event.decision
        t = decision.timestamp
        if decision.learning_mode is LearningMode.ONLINE and not any(
            a <= t <= b for a, b in fallback
        ):
            return list(decision.pmf)
        policy = self._policy_of(event)
        return self.served_pmf(policy, decision.request) if policy else list(decision.pmf)

    def step(self, now: float, limit: int | None = None) -> Round:
        """Score up to ``limit`` (default ``settings.batch``) new joined events; check guardrail
        and drift."""
        # Raw features: the watcher only hands requests to the policy's predict (msgspec).
        events = self.store.joined_after(
            self.cursor, limit or self.settings.batch, raw_features=True
        )
        config = self.service.config
        low, span = config.reward_min, config.reward_max - config.reward_min
        transitions: list[Transition] = []
        alarms: list[DriftAlarm] = []
        fallback = self._fallback_spans()
        for event in events:
            obs = observe(event, self._pmf_of(event, fallback))
            self.watch.add(obs)
            self._version_moments(obs.model_version).add(obs.weights, obs.reward)
            self.recent.append(event)
            alarm = self.drift.update(
                min(max((event.reward - low) / span, 0.0), 1.0), seq=event.seq, at=now
            )
            if alarm is not None:
                alarm = self._explain(alarm, low, span)
                self.alarms.append(alarm)
                alarms.append(alarm)
            transition = self.guardrail.check(self.watch.improvement(), now, event.seq)
            if transition is not None:
                transitions.append(transition)
                fallback = self._fallback_spans()
            self.cursor = event.seq
            self.seen += 1
        self.report = self._report(now)
        return Round(scored=len(events), transitions=tuple(transitions), alarms=tuple(alarms))

    def _explain(self, alarm: DriftAlarm, low: float, span: float) -> DriftAlarm:
        """``alarm``, marked explained when the newer model that decided the events since the
        change, replayed on the recent events before it, predicts the new level
        (:func:`bandit.drift.explains`)."""
        events = list(self.recent)
        cut = len(events) - alarm.detected_after
        before, after = events[: max(cut, 0)], events[max(cut, 0) :]
        if cut <= 0 or not after:
            return alarm  # the change began before the recent events kept: nothing to replay

        def most(chunk: list[JoinedEvent]) -> int:
            versions = Counter(e.decision.model_version for e in chunk)
            return versions.most_common(1)[0][0]

        version_before, version_after = most(before), most(after)
        if version_after <= version_before:
            return alarm
        policy = self.policy_for(version_after)
        if policy is None:
            return alarm
        segment = Segment()
        for event in before:
            segment.add(observe(event, self.served_pmf(policy, event.decision.request)))
        replayed = summarize(segment, self.settings.watch.alpha, float(len(before))).policy
        value, lower, upper = (
            (x - low) / span for x in (replayed.estimate, replayed.ci_low, replayed.ci_high)
        )
        explained = explains(
            alarm,
            version_before=version_before,
            version_after=version_after,
            value=value,
            low=lower,
            high=upper,
        )
        return replace(
            alarm, explained_by=version_after if explained else None, counterfactual=value
        )

    def _version_moments(self, version: int) -> Moments:
        moments = self._versions.get(version)
        if moments is None:
            moments = self._versions[version] = Moments()
            while len(self._versions) > _VERSION_SCORES:
                self._versions.popitem(last=False)
        return moments

    # -- settings ----------------------------------------------------------------------------

    def configure(self, settings: WatcherSettings, now: float) -> Transition | None:
        """Adopt new settings; a new window size or α restarts the window, drift settings
        restart the drift test."""
        old, self.settings = self.settings, settings
        if settings.watch != old.watch:
            self.watch = Watch(settings.watch)
            self.recent = deque(self.recent, maxlen=min(settings.watch.window, _REPLAY_EVENTS))
        if settings.drift != old.drift:
            self.drift = PageHinkley(settings.drift)
        transition = self.guardrail.configure(settings.guardrail, now)
        self.report = self._report(now)
        return transition

    def release(self, now: float, reason: str) -> Transition | None:
        """Serve the policy again by hand, and start a fresh window for its evidence."""
        transition = self.guardrail.release(now, reason)
        self.watch.reset()
        self.report = self._report(now)
        return transition

    # -- reports -----------------------------------------------------------------------------

    def _report(self, now: float) -> Report:
        alpha, horizon = self.settings.watch.alpha, float(self.settings.watch.window)
        versions = {
            v: VersionScore(
                version=v,
                policy=m.estimate(POLICY, alpha, horizon),
                baseline=m.estimate(BASELINE, alpha, horizon),
                improvement=m.difference(POLICY, BASELINE, alpha, horizon),
            )
            for v, m in self._versions.items()
        }
        threshold = self.drift.settings.threshold
        return Report(
            at=now,
            cursor=self.cursor,
            seen=self.seen,
            lag=max(self.store.last_seq() - self.cursor, 0),
            snapshot=self.watch.snapshot(),
            state=self.guardrail.state,
            since=self.guardrail.since,
            reason=self.guardrail.reason,
            trips=self.guardrail.trips,
            recoveries=self.guardrail.recoveries,
            transitions=tuple(self.guardrail.history),
            drift_up=self.drift.statistic_up / threshold,
            drift_down=self.drift.statistic_down / threshold,
            drift_mean=self.drift.mean,
            alarms=tuple(self.alarms),
            versions=versions,
        )

    def replay(self, records: list[ModelRecord]) -> dict[int, WatchSnapshot]:
        """Each stored model scored counterfactually on the same recent events.

        Unlike the progressive scores (each version on the traffic it served), this compares
        versions on equal terms: how each would do on what the loop saw lately.
        """
        events = list(self.recent)
        out: dict[int, WatchSnapshot] = {}
        alpha, horizon = self.settings.watch.alpha, float(self.settings.watch.window)
        for record in records:
            policy = self.policy_for(record.version)
            if policy is None:
                continue
            segment = Segment()
            for event in events:
                segment.add(observe(event, self.served_pmf(policy, event.decision.request)))
            out[record.version] = summarize(segment, alpha, horizon)
        return out
