"""What a serving process says about itself: one summary line when it starts listening, and
(with the ``access_log`` setting) one line per request.

Both go through :mod:`logging` (the summary to this module's logger, the access log to
``banditd.access``), so an operator can route or silence either.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from bandit.config import format_duration
from server.api.base import SERVICE

log = logging.getLogger(__name__)

ACCESS_LOG = logging.getLogger("banditd.access")
"""The logger of the access log (the ``access_log`` setting)."""


class AccessLog(AbstractAccessLogger):
    """One line per request: method, path, status, bytes sent (headers included) and duration
    (``POST /v1/rank 201 272 1.4ms``). The path leaves out the query string."""

    __slots__ = ()

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %d %.1fms",
            request.method,
            request.path,
            response.status,
            response.body_length,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def startup_summary(app: web.Application, url: str) -> str:
    """The one line an edge logs once it listens on ``url``: what it serves and how.

    The store is shown with any password masked; API keys only as on or off.
    """
    service = app[SERVICE]
    settings, config = service.settings, service.config
    location = settings.location
    roles = [
        role
        for role, keys in (("client", settings.client_keys), ("admin", settings.admin_keys))
        if keys
    ]
    keys = f"on ({' and '.join(roles)})" if roles else "off"
    policy = service.policy_settings
    return (
        f"banditd serving {url}: store {location.kind} {location.display}; "
        f"policy {policy.name} ({policy.arguments}); "
        f"rewardWaitTime {format_duration(config.reward_wait_time)}, "
        f"modelExportFrequency {format_duration(config.model_export_frequency)}; "
        f"learningMode {config.learning_mode.value}; API keys {keys}; "
        f"access log {'on' if settings.access_log else 'off'}"
    )


def log_startup(app: web.Application, url: str) -> None:
    """Log :func:`startup_summary` (at INFO)."""
    log.info("%s", startup_summary(app, url))
