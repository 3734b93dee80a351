"""What every route module shares: the app keys of the objects handlers call, the URL prefixes
Personalizer clients use, and JSON responses with Personalizer's content type.

The objects themselves are built and stored under these keys by :mod:`server.entry.app`, the
one module that assembles the application.
"""

from __future__ import annotations

from aiohttp import web

from server.api.schemas import dumps
from server.serving.service import Service
from server.trainer.control import LoopControl
from server.trainer.jobs import JobRunner
from server.trainer.observer import LoopObserver

SERVICE: web.AppKey[Service] = web.AppKey("service", Service)
CONTROL: web.AppKey[LoopControl] = web.AppKey("control", LoopControl)
JOBS: web.AppKey[JobRunner] = web.AppKey("jobs", JobRunner)
OBSERVER: web.AppKey[LoopObserver] = web.AppKey("observer", LoopObserver)

PREFIXES = (
    "/v1",
    "/personalizer/v1.0",
    "/personalizer/v1.1-preview.1",
    "/personalizer/v1.1-preview.2",
    "/personalizer/v1.1-preview.3",
    "/personalizer",
)
"""Every URL form Personalizer clients use; ``/personalizer`` takes any ``api-version``."""

_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def json_response(payload: object, status: int = 200) -> web.Response:
    """A JSON response with Personalizer's exact content type."""
    return web.Response(status=status, body=dumps(payload), headers=_JSON_HEADERS)
