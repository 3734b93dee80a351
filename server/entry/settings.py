"""Process settings, read once at the edge (CLI flags, a TOML file, environment variables).

Loop settings that clients can change (reward wait, exploration, …) live in the store as a
:class:`bandit.config.ServiceConfiguration`; these are the operator's.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8080


class SettingsError(ValueError):
    """Settings are missing, unreadable or unsafe; the message names the setting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How one banditd process runs.

    Attributes:
        db: path of the SQLite file.
        host: address to bind; a non-loopback one requires an API key.
        port: TCP port.
        client_keys: keys accepted for rank, reward and activate (up to two, for rotation).
        admin_keys: keys accepted for everything (configuration, models, logs).
        max_actions: most actions one rank request may offer.
        max_body_bytes: largest request body accepted.
        learn_interval: seconds the learner sleeps when it has nothing to do.
        learn_batch: joined events the learner takes at a time.
        checkpoint_interval: seconds between learner checkpoints (model + cursor); a crash
            redoes at most this much learning, never more or less than once per event.
        learn_share_under_load: while requests arrive at ``busy_requests_per_second`` or more,
            the learner and the watcher together work at most this share of the time (they
            share the interpreter with ranking); idle, they run at full speed.
        busy_requests_per_second: the request rate above which the learner yields.
        keep_models: published model versions kept for rollback.
        synchronous: SQLite ``synchronous`` pragma: FULL (durable on power loss) or NORMAL.
        model_signing_key: HMAC key that signs exported models and verifies imported ones;
            when empty a random key is generated once and kept in the store.
        retention_interval: seconds between runs of the log-retention job.
        max_model_bytes: largest model file accepted by a model import.
        header_timeout: seconds a client may take from the first byte of a request to the end
            of its headers; past it the server answers 408 and closes the connection.
        body_timeout: seconds a client may take to send a request's whole body once its
            headers are in, plus one second per ``body_min_rate`` bytes received; past it the
            request gets 408 and the connection is closed.
        body_min_rate: bytes per second a large body must keep up to extend its time.
        idle_timeout: seconds an open connection may sit between requests (or before its
            first) before the server closes it (HTTP keep-alive).
        max_connections: most connections served at once; one more is answered 503 and
            closed at once, so slow or idle clients cannot starve the process of descriptors.
        lock_timeout: seconds a write waits for the database's write lock (held by another
            process, say) before the request answers 503 with ``Retry-After``.
        retrain_events_per_second: most logged events a background retrain replays per
            second (0: as fast as it can), so a retrain leaves the machine to ranking.
        refresh_interval: seconds between an edge's looks at the store for a new model,
            configuration, policy or guardrail state (the period within which every edge
            serves what the trainer published or another edge changed).
        report_interval: seconds between the trainer's reports (status, metrics, learner
            figures) that edges serve.
        command_poll: seconds between the trainer's looks for admin changes to carry out.
        command_timeout: seconds an edge waits for the trainer to take (and again to finish)
            an admin change before answering 503.
        lease_ttl: seconds a trainer's lease lasts unrenewed (it renews every third); a
            standby takes over this long after the trainer died.
        workers: edge processes ``banditd serve`` runs on the one port (``--workers``).
        watch: the loop watcher's settings (the ``[watch]`` table; see
            :mod:`server.trainer.watch_settings`), validated when the app is built.
    """

    db: str = "banditd.db"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    client_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    max_actions: int = 50
    max_body_bytes: int = 1 << 20
    learn_interval: float = 0.2
    learn_batch: int = 128
    checkpoint_interval: float = 1.0
    learn_share_under_load: float = 0.15
    busy_requests_per_second: float = 200.0
    keep_models: int = 20
    synchronous: str = "FULL"
    model_signing_key: str = ""
    retention_interval: float = 3600.0
    max_model_bytes: int = 256 << 20
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    body_min_rate: int = 64 << 10
    idle_timeout: float = 75.0
    max_connections: int = 1024
    lock_timeout: float = 1.0
    retrain_events_per_second: float = 0.0
    refresh_interval: float = 0.5
    report_interval: float = 0.5
    command_poll: float = 0.1
    command_timeout: float = 30.0
    lease_ttl: float = 5.0
    workers: int = 1
    watch: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self.client_keys or self.admin_keys)

    def check(self) -> Settings:
        """Validate; refuse a non-loopback bind without a key."""
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be within 0..65535, got {self.port}.")
        if self.synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise SettingsError("synchronous must be FULL, NORMAL or EXTRA.")
        if len(self.client_keys) > 2 or len(self.admin_keys) > 2:
            raise SettingsError("at most two client keys and two admin keys may be valid at once.")
        if not self.auth_enabled and not is_loopback(self.host):
            raise SettingsError(
                f"refusing to bind {self.host!r} without an API key: anyone who can reach it "
                "could rank, reward and reconfigure. Set BANDITD_ADMIN_KEY (and optionally "
                "BANDITD_CLIENT_KEY) or admin_keys in the config file, or bind 127.0.0.1."
            )
        if not 0.01 <= self.learn_share_under_load <= 1.0:
            raise SettingsError("learn_share_under_load must be within [0.01, 1].")
        for name in ("refresh_interval", "report_interval", "command_poll"):
            if not 0 < getattr(self, name) <= 60:
                raise SettingsError(f"{name} must be within (0, 60] seconds.")
        if not self.command_timeout > 0:
            raise SettingsError("command_timeout must be above 0 seconds.")
        if not self.lease_ttl >= 1:
            raise SettingsError("lease_ttl must be at least 1 second.")
        if not 1 <= self.workers <= 64:
            raise SettingsError("workers must be within 1..64.")
        if not 1 <= self.max_actions <= 1000:
            raise SettingsError("max_actions must be within 1..1000.")
        if self.retention_interval <= 0 or self.max_model_bytes <= 0:
            raise SettingsError("retention_interval and max_model_bytes must be positive.")
        for name in ("header_timeout", "body_timeout", "idle_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SettingsError(f"{name} must be a number of seconds.")
            if not 0 < value <= 86400:
                raise SettingsError(f"{name} must be within (0, 86400] seconds.")
        for name in ("max_connections", "body_min_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(f"{name} must be a positive integer.")
        if self.max_connections > 1_000_000:
            raise SettingsError("max_connections must be within 1..1000000.")
        if not 0 <= self.lock_timeout <= 60:
            raise SettingsError("lock_timeout must be within [0, 60] seconds.")
        if self.retrain_events_per_second < 0:
            raise SettingsError("retrain_events_per_second must not be negative.")
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _keys(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [k for k in value.split(",") if k.strip()]
    if not isinstance(value, list) or not all(isinstance(k, str) and k.strip() for k in value):
        raise SettingsError(f"{name} must be a list of non-empty strings.")
    return tuple(k.strip() for k in value)


def load(
    *,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build settings from defaults, then a TOML file, then environment, then ``overrides``.

    Environment: ``BANDITD_CLIENT_KEY`` and ``BANDITD_ADMIN_KEY`` (comma-separated for two),
    ``BANDITD_MODEL_SIGNING_KEY``.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_file:
        try:
            values.update(tomllib.loads(Path(config_file).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {config_file!r}: {exc}") from exc
    if env.get("BANDITD_CLIENT_KEY"):
        values["client_keys"] = env["BANDITD_CLIENT_KEY"]
    if env.get("BANDITD_ADMIN_KEY"):
        values["admin_keys"] = env["BANDITD_ADMIN_KEY"]
    if env.get("BANDITD_MODEL_SIGNING_KEY"):
        values["model_signing_key"] = env["BANDITD_MODEL_SIGNING_KEY"]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in fields(Settings)} - {"extra"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}.")
    values["client_keys"] = _keys(values.get("client_keys"), "client_keys")
    values["admin_keys"] = _keys(values.get("admin_keys"), "admin_keys")
    try:
        settings = replace(Settings(), **values)
    except TypeError as exc:
        raise SettingsError(str(exc)) from exc
    return settings.check()
