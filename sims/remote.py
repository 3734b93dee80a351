"""A sweep's runs against a live banditd: ``banditd simulate --url``.

Each run first sets the server up for its job: the policy (``PUT /v1/configurations/policy``
with the spec's VW arguments; skipped for the server's own policy, labelled ``server``), the
scenario's service configuration scaled to the time scale (``PUT /v1/configurations/service``,
with ``modelRetrainDays`` 0 so a change does not retrain on earlier runs' logs) and a fresh
model (``DELETE /v1/model``), so runs start alike. Then :func:`sims.http_runner.run_http`
drives it. Runs are one after another: a server runs one policy at a time.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bandit.config import ServiceConfiguration, to_wire
from bandit.errors import BanditError
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

KEY_HEADER = "Ocp-Apim-Subscription-Key"
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

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request to ``{url}/v1{path}``; its JSON answer (None when empty).

        Raises:
            RemoteError: no answer, or a status other than 2xx (with the error body's message).
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url.rstrip("/") + "/v1" + path, data=data, method=method
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.key is not None:
            request.add_header(KEY_HEADER, self.key)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise RemoteError(f"{method} /v1{path} answered {exc.code}: {_message(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"cannot reach {self.url}: {reason}") from None
        return json.loads(text) if text else None


def _message(exc: urllib.error.HTTPError) -> str:
    """The message of a Personalizer error body, or the body's start."""
    text = exc.read().decode(errors="replace")
    try:
        error = json.loads(text)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return text[:200] or exc.reason


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
    body = remote.request("GET", "/configurations/service")
    return float(body["explorationPercentage"])


def remote_runner(remote: Remote, *, exploration: float) -> Callable[[Job], RunResult]:
    """A runner for :func:`sims.sweep.run_jobs` that sets the server up for each job, then
    drives it over HTTP.

    Args:
        remote: the server.
        exploration: the ε of runs of the server's own policy (label ``server``).
    """

    def run(job: Job) -> RunResult:
        own = job.policy.name == SERVER and job.policy.arguments == SERVER
        if not own:
            policy = {"name": job.policy.name[:256], "arguments": job.policy.arguments}
            remote.request("PUT", "/configurations/policy", policy)
        epsilon = exploration if own else job.policy.exploration
        remote.request("PUT", "/configurations/service", _configuration(job, epsilon, remote))
        remote.request("DELETE", "/model")
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


def _configuration(job: Job, epsilon: float, remote: Remote) -> dict[str, Any]:
    config: ServiceConfiguration = scaled_config(job.scenario, epsilon, remote.time_scale)
    return to_wire(config.replace(model_retrain_days=0))


SERVER_POLICY = PolicySpec(name=SERVER, arguments=SERVER)
"""The spec of the server's own policy, which :func:`remote_runner` leaves in place."""
