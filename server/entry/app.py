"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bandit.store import Store
from server.api.edge import add_fallbacks, install_edge
from server.api.routes import SERVICE, add_routes
from server.entry.settings import Settings
from server.serving.service import Service
from stores.sqlite.store import SQLiteStore


def create_app(settings: Settings, store: Store | None = None) -> web.Application:
    """Build the app: open the store, start writer and learner on startup, stop them on cleanup.

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
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SERVICE] = service
    install_edge(app, settings, service.metrics)
    add_routes(app)
    add_fallbacks(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
