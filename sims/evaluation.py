"""Counterfactual evaluation of a policy on DSJSON logs, by progressive validation.

The logs are read here (``bandit`` does no I/O). Each logged event is first predicted by the
candidate policy — its probability of the logged action gives the importance weight — and only
then learned, so the candidate is always judged on data it has not seen, as it would have been
online. The reward model for DM and DR is equally progressive: the running mean reward of each
action id (the overall running mean for an id not seen yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bandit import estimators
from bandit.config import ServiceConfiguration
from bandit.dsjson import LoggedEvent, logged_to_joined, parse_logged
from bandit.estimators import Estimate
from bandit.evaluation import served_pmf
from policies import make_factory

ESTIMATORS = ("ips", "snips", "dm", "dr")


def read_logs(path: Path) -> list[LoggedEvent]:
    """Every labelled line of a DSJSON file; blank lines are skipped.

    Raises:
        ValueError: a line is not labelled DSJSON (the message names the line).
    """
    events = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                events.append(parse_logged(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: {exc}") from exc
    return events


@dataclass(frozen=True, slots=True, kw_only=True)
class Replay:
    """What progressive validation produced, padded to K = the most actions of any event.

    Attributes:
        rewards: logged rewards, shape (n,).
        logging: logged propensities of the logged actions, shape (n,).
        target: the candidate's probability of each logged action, shape (n,).
        target_pmf: the candidate's distribution per event, shape (n, K), 0 in padding.
        predicted: the reward model's predictions, shape (n, K).
        chosen: the logged action's column, shape (n,).
    """

    rewards: estimators.FloatArray
    logging: estimators.FloatArray
    target: estimators.FloatArray
    target_pmf: estimators.FloatArray
    predicted: estimators.FloatArray
    chosen: np.typing.NDArray[np.int64]


def replay(
    events: Sequence[LoggedEvent],
    policy: str,
    *,
    exploration: float | None = None,
    min_propensity: float = 0.01,
) -> Replay:
    """Progressive validation of ``policy`` (``uniform``, ``baseline`` or VW arguments).

    Args:
        events: the logged events, in log order.
        policy: the candidate's argument string.
        exploration: when given, the candidate's distribution goes through banditd's caps with
            this ε (what the service would serve in Online mode; the logged ``maxExploration``
            is not applied); when None it is used as the policy returns it, excluded actions
            masked out (:func:`bandit.evaluation.served_pmf`, as the server's evaluations do).
        min_propensity: the caps' requested floor.

    Raises:
        InvalidServiceConfiguration: ``exploration`` or ``min_propensity`` is outside [0, 1].
    """
    caps = (
        None
        if exploration is None
        else ServiceConfiguration(exploration_percentage=exploration, min_propensity=min_propensity)
    )
    learner = make_factory(policy, epsilon=0.2 if exploration is None else exploration)(None)
    n = len(events)
    k = max((len(e.request.actions) for e in events), default=1)
    target_pmf = np.zeros((n, k))
    predicted = np.zeros((n, k))
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    total = 0.0
    for i, event in enumerate(events):
        pmf = served_pmf(learner, event.request, caps)
        target_pmf[i, : len(pmf)] = pmf
        prior = total / i if i else 0.0
        for j, action in enumerate(event.request.actions):
            c = counts.get(action.id, 0)
            predicted[i, j] = sums[action.id] / c if c else prior
        if not event.skip_learn:
            learner.learn_one(logged_to_joined(event, seq=i + 1))
        chosen_id = event.request.actions[event.chosen_index].id
        sums[chosen_id] = sums.get(chosen_id, 0.0) + event.reward
        counts[chosen_id] = counts.get(chosen_id, 0) + 1
        total += event.reward
    chosen = np.asarray([e.chosen_index for e in events], dtype=np.int64)
    return Replay(
        rewards=np.asarray([e.reward for e in events], dtype=np.float64),
        logging=np.asarray([e.propensity for e in events], dtype=np.float64),
        target=target_pmf[np.arange(n), chosen] if n else np.zeros(0),
        target_pmf=target_pmf,
        predicted=predicted,
        chosen=chosen,
    )


def estimate(
    data: Replay,
    estimator: str = "ips",
    *,
    clip: float | None = None,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
    n_boot: int = 1000,
) -> Estimate:
    """Apply one of :data:`ESTIMATORS` to a replay."""
    weights = estimators.importance_weights(data.target, data.logging, clip)
    if estimator == "ips":
        return estimators.ips(data.rewards, weights, alpha=alpha, rng=rng, n_boot=n_boot)
    if estimator == "snips":
        return estimators.snips(data.rewards, weights, alpha=alpha, rng=rng, n_boot=n_boot)
    if estimator == "dm":
        return estimators.dm(data.target_pmf, data.predicted, alpha=alpha, rng=rng, n_boot=n_boot)
    if estimator == "dr":
        return estimators.dr(
            data.rewards,
            weights,
            data.target_pmf,
            data.predicted,
            data.chosen,
            alpha=alpha,
            rng=rng,
            n_boot=n_boot,
        )
    raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")


def write_logs(lines: Iterable[str], path: Path) -> Path:
    """Write DSJSON lines to ``path``, one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(line.rstrip("\n") + "\n")
    return path
