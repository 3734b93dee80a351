"""A sweep's runs against a live banditd: ``banditd simulate --url``.

Each run first sets the server up for its job: the policy (``PUT /v1/configurations/policy``
with the spec's VW arguments; skipped for the server's own policy, labelled ``server``), the
scenario's service configuration scaled to the time scale (``PUT /v1/configurations/service``,
with ``modelRetrainDays`` 0 so a change does not retrain on earlier runs' logs) and a fresh
model (``DELETE /v1/model``), so runs start alike. Then :func:`sims.http_runner.run_http`
drives it. Runs are one after another: a server runs one policy at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bandit.config import ServiceConfiguration
from bandit.errors import BanditError
from bandit.events import PolicySettings
from server.client import Client, ClientError
from server.client.core import KEY_HEADER
from sims.http_runner import check_loopback, run_http, scaled_config
from sims.presets import FIXED, PolicySpec
from sims.result import RunResult
from sims.scenarios import Scenario
from sims.sweep import Job

SERVER = "server"
"""Label of the runs of the policy the server already has (no ``--policy`` given)."""

DEFAULT_TIME_SCALE = 0.2
"""Real seconds per virtual second: the fastest at which the named scenarios' 5 s reward wait
stays at the server's 1 s minimum (a 3,000-round scenario then takes two minutes)."""

__all__ = ["KEY_HEADER", "Remote", "RemoteError", "check_remote", "remote_runner"]

REQUEST_TIMEOUT = 30.0
"""Seconds one set-up request may take."""
SLACK = 60.0
"""Seconds a run may take beyond its paced decisions and last reward window."""


class RemoteError(Exception):
    """A request to the server failed; the message says which and why, in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Remote:
    """The server a sweep runs against.

    Attributes:
        url: its root, e.g. ``http://127.0.0.1:8080`` (loopback only).
        key: the admin key sent with every request, or None.
        time_scale: real seconds per virtual second.
    """

    url: str
    key: str | None = None
    time_scale: float = DEFAULT_TIME_SCALE

    @contextmanager
    def client(self) -> Iterator[Client]:
        """banditd's client for this server, its errors turned into :class:`RemoteError`.

        Raises:
            RemoteError: no answer, or an error status (with the error body's message).
        """
        try:
            with Client(self.url, key=self.key, timeout=REQUEST_TIMEOUT) as client:
                yield client
        except ClientError as exc:
            if exc.status is None:
                raise RemoteError(f"cannot reach {self.url}: {exc.message}") from None
            raise RemoteError(
                f"{exc.method} {exc.path} answered {exc.status}: {exc.code}: {exc.message}"
            ) from None


def check_remote(remote: Remote, scenarios: list[Scenario], policies: list[PolicySpec]) -> None:
    """Refuse, before any run, what a live server cannot run.

    Raises:
        ValueError: a URL that is not loopback, a policy the policy API cannot take
            (``uniform``, ``baseline``, ``oracle``), or a time scale that brings a scenario's
            reward wait or export frequency below the server's minimum.
    """
    check_loopback(remote.url)
    if remote.time_scale <= 0:
        raise ValueError(f"--time-scale must be > 0, got {remote.time_scale:g}")
    for spec in policies:
        if spec.arguments.strip().lower() in FIXED:
            raise ValueError(
                f"policy {spec.name!r} cannot run on a server (its policy API takes VW "
                "arguments only); drop it or run without --url"
            )
    for scenario in scenarios:
        try:
            scaled_config(scenario, time_scale=remote.time_scale)
        except BanditError as exc:
            raise ValueError(
                f"--time-scale {remote.time_scale:g} is too fast for scenario "
                f"{scenario.name!r}: {exc.message}"
            ) from None


def server_exploration(remote: Remote) -> float:
    """The server's ``explorationPercentage`` (also a first check that it answers, with this
    key).

    Raises:
        RemoteError: the server does not answer, or refuses the key.
    """
    with remote.client() as client:
        return client.get_configuration().exploration_percentage


def remote_runner(remote: Remote, *, exploration: float) -> Callable[[Job], RunResult]:
    """A runner for :func:`sims.sweep.run_jobs` that sets the server up for each job, then
    drives it over HTTP.

    Args:
        remote: the server.
        exploration: the ε of runs of the server's own policy (label ``server``).
    """

    def run(job: Job) -> RunResult:
        own = job.policy.name == SERVER and job.policy.arguments == SERVER
        epsilon = exploration if own else job.policy.exploration
        with remote.client() as client:
            if not own:
                name = job.policy.name[:256]
                client.put_policy(PolicySettings(name=name, arguments=job.policy.arguments))
            client.put_configuration(_configuration(job, epsilon, remote))
            client.delete_model()
        scenario, scale = job.scenario, remote.time_scale
        bound = scenario.rounds * scenario.interval * scale
        bound += (scenario.reward_wait_time + scenario.model_export_frequency) * scale + SLACK
        return run_http(
            scenario,
            remote.url,
            seed=job.seed,
            policy=job.policy.name,
            key=remote.key,
            time_scale=scale,
            max_seconds=bound,
            run_id=uuid.uuid4().hex[:8] + "-",
        )

    return run


def _configuration(job: Job, epsilon: float, remote: Remote) -> ServiceConfiguration:
    config = scaled_config(job.scenario, epsilon, remote.time_scale)
    return config.replace(model_retrain_days=0)


SERVER_POLICY = PolicySpec(name=SERVER, arguments=SERVER)
"""The spec of the server's own policy, which :func:`remote_runner` leaves in place."""
