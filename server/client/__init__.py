"""banditd's own Python client, blocking (:class:`Client`) and asyncio (:class:`AsyncClient`).

Both speak the whole HTTP surface (rank, reward, activate, the administration operations, loop
status, health, DSJSON export and bulk import), take and return the project's own types, and
retry 503 and 429 answers (and connection failures where a call is safe to repeat) with
jittered exponential backoff that honours ``Retry-After``. A reward or activation carries one
``Idempotency-Key`` on every retry; a rank without an event id gets one made by the client.
Errors are :class:`ClientError`, carrying Personalizer's error body.

This package imports only ``bandit``'s pure types, never the server's runtime, so a simulator
or an application can use it without the service's dependencies.
"""

from __future__ import annotations

from server.client.aio import AsyncClient
from server.client.errors import ClientError
from server.client.framing import ImportSource
from server.client.retry import RetryPolicy
from server.client.sync import Client
from server.client.types import (
    Health,
    ImportResult,
    LearnerStatus,
    LogsProperties,
    LoopCounts,
    LoopStatus,
    ModelActivation,
    ModelList,
    ModelProperties,
    ModelVersion,
    RankedAction,
    RankResponse,
)

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Health",
    "ImportResult",
    "ImportSource",
    "LearnerStatus",
    "LogsProperties",
    "LoopCounts",
    "LoopStatus",
    "ModelActivation",
    "ModelList",
    "ModelProperties",
    "ModelVersion",
    "RankResponse",
    "RankedAction",
    "RetryPolicy",
]
