"""The aiohttp application: the one place it is assembled.

Builds the service objects (serving, loop control, jobs, the watcher), stores them under the
app keys of :mod:`server.api.base`, mounts every route module, and ties the objects' start and
stop to the app's lifecycle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bandit.store import Store
from server.api.admin import add_admin_routes
from server.api.base import CONTROL, JOBS, OBSERVER, SERVICE
from server.api.edge import add_fallbacks, install_edge
from server.api.evaluation_routes import add_evaluation_routes
from server.api.importance import add_importance_routes
from server.api.logs import add_log_routes
from server.api.multislot import add_multislot_routes
from server.api.observe import add_observe_routes
from server.api.openapi import add_openapi_route
from server.api.routes import add_routes
from server.entry.settings import Settings, SettingsError
from server.serving.service import Service
from server.trainer.control import LoopControl
from server.trainer.jobs import JobRunner
from server.trainer.observer import LoopObserver
from stores.sqlite.store import SQLiteStore


def create_app(settings: Settings, store: Store | None = None) -> web.Application:
    """Build the app: open the store, start writer, learner, jobs and watcher on startup, stop
    them on shutdown and cleanup.

    ``store`` defaults to the SQLite file ``settings.db``.
    """
    if store is None:
        store = SQLiteStore(
            settings.db,
            synchronous=settings.synchronous,
            background_checkpoint=1.0,
            lock_timeout=settings.lock_timeout,
        )
    service = Service(settings, store)
    control = LoopControl(service)
    jobs = JobRunner(store)
    try:
        observer = LoopObserver(service, settings.watch)
    except ValueError as exc:
        raise SettingsError(f"[watch] in the settings: {exc}.") from exc

    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SERVICE] = service
    app[CONTROL] = control
    app[JOBS] = jobs
    app[OBSERVER] = observer
    install_edge(app, settings, service.metrics)
    add_routes(app)
    add_admin_routes(app)
    add_evaluation_routes(app, control, jobs)
    add_importance_routes(app, control, jobs)
    add_log_routes(app)
    add_multislot_routes(app)
    add_openapi_route(app)
    add_observe_routes(app)
    add_fallbacks(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    async def start(_: web.Application) -> None:
        control.start()
        observer.start()

    async def stop(_: web.Application) -> None:
        await jobs.close()
        await control.close()
        await observer.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return app
