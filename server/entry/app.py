"""The aiohttp application and the roles' objects: the one place they are assembled.

:func:`create_app` builds an edge (the serving cache, the group-commit writer, the command
queue), stores its objects under the app keys of :mod:`server.api.base`, mounts every route
module and ties start and stop to the app's lifecycle. With ``with_trainer`` it also holds the
trainer role in the same process (what the in-process tests and ``--role all`` use): the two
still meet only in the store, through the same commands and reports as separate processes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bandit.state import read_loop_state
from bandit.store import Store
from server.api.admin import add_admin_routes
from server.api.base import COMMANDS, SERVICE
from server.api.connections import StartupError
from server.api.edge import add_fallbacks, install_edge
from server.api.evaluation_routes import add_evaluation_routes
from server.api.importance import add_importance_routes
from server.api.logs import add_log_routes
from server.api.multislot import add_multislot_routes
from server.api.observe import add_observe_routes
from server.api.openapi import add_openapi_route
from server.api.routes import add_routes
from server.entry.failures import is_postgres_failure
from server.entry.settings import Settings
from server.serving.commands import Commands
from server.serving.service import Service
from server.trainer.role import TrainerRole, holder_name, keep_lease
from stores.sqlite.store import SQLiteStore

log = logging.getLogger(__name__)

TRAINER: web.AppKey[TrainerRole] = web.AppKey("trainer", TrainerRole)
"""The trainer role of an app built ``with_trainer`` (no handler reads it; tests may)."""

READY_POLL = 0.2
"""Seconds between an edge's looks for the loop a trainer creates, while it waits to start."""


POSTGRES_EXTRA = "PostgreSQL stores need the postgres extra: pip install 'banditd[postgres]'"


def open_store(settings: Settings, *, create: bool = True) -> Store:
    """The store ``settings`` name (:attr:`Settings.location`): the SQLite file (created when
    missing, unless not ``create``) or the PostgreSQL database.

    Raises:
        StartupError: a PostgreSQL store without the ``postgres`` extra installed (one line
            saying what to install); or one that cannot be opened (its cause is psycopg's
            ``OperationalError``, or ``SchemaMismatch`` while the database needs
            ``banditd migrate``: :func:`server.entry.failures.startup_failure` tells which).
        FileNotFoundError: a missing SQLite file, when not ``create``.
        sqlite3.Error, OSError: an SQLite file that cannot be opened.
    """
    location = settings.location
    if location.kind == "sqlite":
        return SQLiteStore(
            location.target,
            synchronous=settings.synchronous,
            background_checkpoint=1.0,
            lock_timeout=settings.lock_timeout,
            create=create,
        )
    constructor = postgres_module("store").PostgresStore
    try:
        store: Store = constructor(location.target, lock_timeout=max(settings.lock_timeout, 1.0))
    except Exception as exc:
        if is_postgres_failure(exc) or is_postgres_failure(exc.__cause__):
            raise StartupError("cannot open the PostgreSQL store") from exc
        raise
    return store


def postgres_module(name: str) -> Any:
    """``stores.postgres.<name>``, imported only when a PostgreSQL store is named: psycopg is an
    optional extra, and SQLite users never load it.

    Raises:
        StartupError: psycopg, or the PostgreSQL store itself, is not installed.
    """
    try:
        return importlib.import_module(f"stores.postgres.{name}")
    except ImportError as exc:
        # psycopg missing, or installed without a libpq it can load (its message names it).
        missing = exc.name or ("psycopg" if "psycopg" in str(exc) else "")
        if missing.split(".")[0] == "psycopg":
            raise StartupError(POSTGRES_EXTRA) from None
        if missing.startswith("stores.postgres"):
            raise StartupError("this banditd has no PostgreSQL store (stores.postgres)") from None
        raise


def wait_until_ready(store: Store, timeout: float) -> None:
    """Block until a trainer has created the loop on ``store`` (seed, configuration, policy and
    a first model), or raise :class:`StartupError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    announced = False
    while read_loop_state(store) is None or store.latest_model() is None:
        if time.monotonic() >= deadline:
            raise StartupError(
                f"no trainer created the loop in this store within {timeout:g} s; start "
                "banditd train on the same store (banditd serve with no --role runs one)."
            )
        if not announced:
            log.info("waiting for a trainer to create the loop in this store")
            announced = True
        time.sleep(READY_POLL)


def create_app(
    settings: Settings, store: Store | None = None, *, with_trainer: bool = True
) -> web.Application:
    """Build the app: an edge, and with ``with_trainer`` the trainer role beside it.

    ``store`` defaults to the store ``settings`` name (:func:`open_store`). Without the trainer
    the store must hold a loop already (:func:`wait_until_ready`).
    """
    if store is None:
        store = open_store(settings)
    service_ref: list[Service] = []
    trainer: TrainerRole | None = None
    if with_trainer:
        holder, now = holder_name(), time.time()
        if not store.acquire_lease(holder, now, settings.lease_ttl):
            raise StartupError("another trainer holds this store's lease")
        store.fence(holder)
        trainer = TrainerRole(
            settings,
            store,
            holder=holder,
            under_load=lambda: bool(service_ref) and service_ref[0].under_load(),
        )
        trainer.trainer.lease_until = now + settings.lease_ttl
    service = Service(settings, store)
    service_ref.append(service)
    commands = Commands(
        store, clock=service.clock, timeout=settings.command_timeout, after=service.refresh
    )

    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SERVICE] = service
    app[COMMANDS] = commands
    if trainer is not None:
        app[TRAINER] = trainer
    install_edge(app, settings, service.metrics)
    add_routes(app)
    add_admin_routes(app)
    add_evaluation_routes(app, service, commands)
    add_importance_routes(app, service)
    add_log_routes(app)
    add_multislot_routes(app)
    add_openapi_route(app)
    add_observe_routes(app)
    add_fallbacks(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        lease: asyncio.Task[bool] | None = None
        released = asyncio.Event()
        if trainer is not None:
            await trainer.start()
            lease = asyncio.get_running_loop().create_task(keep_lease(trainer, released))
        try:
            yield
        finally:
            if trainer is not None and lease is not None:
                released.set()
                lost = await lease
                await trainer.stop()
                if not lost:
                    await asyncio.to_thread(store.release_lease, trainer.holder)
            await service.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
