"""The asyncio client: one ``aiohttp`` session (a keep-alive connection pool) per client."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from bandit.config import LearningMode, ServiceConfiguration
from bandit.events import PolicySettings, RankRequest
from server.client import core
from server.client import types as t
from server.client.core import Call, Endpoint
from server.client.errors import ClientError, connection_error
from server.client.framing import CHUNK, ImportSource, LineSplitter, body_chunks
from server.client.retry import RetryPolicy

T = TypeVar("T")

_NO_ANSWER = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class AsyncClient:
    """banditd over HTTP, for asyncio; the same operations as :class:`server.client.Client`.

    Args:
        base_url: the server's root, ``http://127.0.0.1:8080``.
        key: sent as ``Ocp-Apim-Subscription-Key``.
        timeout: seconds a whole call (one try, the body included) may take; an export's
            stream is bounded per read instead.
        retry: when to retry (503, 429, and connection failures where the call is safe).
        rng: the retry jitter's source.
        connections: the most connections open at once.

    Use it as ``async with AsyncClient(url) as client:`` or call :meth:`close`.

    Raises (every operation):
        ClientError: an error answer after the retries, or no answer at all.
    """

    def __init__(
        self,
        base_url: str,
        *,
        key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        connections: int = 100,
    ) -> None:
        self.endpoint = Endpoint.parse(base_url)
        self.retry = retry or RetryPolicy()
        self._headers = core.default_headers(key)
        self._timeout = timeout
        self._rng = rng or random.Random()
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections (the next call opens others)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the Personalizer surface ----------------------------------------------------------------

    async def rank(self, request: RankRequest) -> t.RankResponse:
        """Rank ``request``'s actions (an empty ``event_id`` gets a fresh one)."""
        return await self._run(core.rank(request))

    async def reward(
        self, event_id: str, value: float, *, idempotency_key: str | None = None
    ) -> None:
        """Report ``value`` for ``event_id``, once however often it is retried."""
        await self._run(core.reward(event_id, value, idempotency_key))

    async def activate(self, event_id: str, *, idempotency_key: str | None = None) -> None:
        """Activate a deferred event."""
        await self._run(core.activate(event_id, idempotency_key))

    # -- administration --------------------------------------------------------------------------

    async def get_configuration(self) -> ServiceConfiguration:
        return await self._run(core.get_configuration())

    async def put_configuration(self, config: ServiceConfiguration) -> ServiceConfiguration:
        """Replace the service configuration; returns the one now in force."""
        return await self._run(core.put_configuration(config))

    async def get_policy(self) -> PolicySettings:
        return await self._run(core.get_policy())

    async def put_policy(self, policy: PolicySettings) -> PolicySettings:
        """Set the learning policy (resets and retrains the model)."""
        return await self._run(core.put_policy(policy))

    async def delete_policy(self) -> PolicySettings:
        """Reset the learning policy to the default, returned."""
        return await self._run(core.delete_policy())

    async def get_model(self, *, signed: bool = False) -> bytes:
        """The serving model's bytes (``signed``: an archive :meth:`put_model` takes)."""
        return await self._run(core.get_model(signed))

    async def put_model(self, archive: bytes) -> None:
        """Import a signed model archive."""
        await self._run(core.put_model(archive))

    async def delete_model(self) -> None:
        """Reset the model to a fresh one."""
        await self._run(core.delete_model())

    async def model_properties(self) -> t.ModelProperties:
        return await self._run(core.model_properties())

    async def list_models(self, *, counterfactual: bool = False) -> t.ModelList:
        return await self._run(core.list_models(counterfactual))

    async def activate_model(self, version: int) -> t.ModelActivation:
        """Roll back to stored model ``version`` (published again as a new version)."""
        return await self._run(core.activate_model(version))

    async def logs_properties(self) -> t.LogsProperties:
        return await self._run(core.logs_properties())

    async def delete_logs(self) -> None:
        """Delete every logged event the learner has learned."""
        await self._run(core.delete_logs())

    async def loop_status(self, *, history: bool = False) -> t.LoopStatus:
        return await self._run(core.loop_status(history))

    async def get_loop_configuration(self) -> dict[str, Any]:
        """The watch, guardrail and drift settings, as the server names them."""
        return await self._run(core.get_loop_configuration())

    async def put_loop_configuration(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some watch, guardrail or drift settings (stored); returns them all."""
        return await self._run(core.put_loop_configuration(changes))

    async def health(self) -> t.Health:
        """``/healthz``; an unavailable service is a :class:`Health` with ``ok`` false."""
        return await self._run(core.health())

    # -- logs ------------------------------------------------------------------------------------

    async def export_logs(
        self, *, start: datetime | None = None, end: datetime | None = None
    ) -> AsyncIterator[str]:
        """The DSJSON lines of the joined events decided in ``[start, end)``, read as they
        arrive (one partial line held at a time)."""
        call = core.export_logs(start, end)
        response = await self._open(call, None, streaming=True)
        splitter = LineSplitter()
        try:
            async for chunk in response.content.iter_chunked(CHUNK):
                for line in splitter.feed(chunk):
                    yield line
            for line in splitter.finish():
                yield line
        except _NO_ANSWER as exc:
            raise connection_error(exc, method=call.method, path=call.path) from exc
        finally:
            response.release()

    async def import_logs(
        self, source: ImportSource, *, mode: LearningMode | str = LearningMode.ONLINE
    ) -> t.ImportResult:
        """Store DSJSON lines as learned-from history, streamed from ``source`` (a path, a
        binary file, or lines); lines already stored are skipped. Not retried."""
        call = core.import_logs(mode)
        response = await self._open(call, body_chunks(source), streaming=True)
        return await self._answer(call, response)

    # -- transport -------------------------------------------------------------------------------

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._connections),
            )
        return self._session

    async def _open(
        self, call: Call[T], stream: Iterator[bytes] | None, *, streaming: bool
    ) -> aiohttp.ClientResponse:
        """Send ``call`` (retrying as :attr:`retry` allows); the successful answer is returned
        with its body unread (the caller releases it)."""
        session = self._session_now()
        if streaming:
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=self._timeout, sock_read=self._timeout
            )
        else:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            retry_after: float | None = None
            data = _chunks(stream) if stream is not None else call.body
            try:
                response = await session.request(
                    call.method,
                    self.endpoint.url(call.path),
                    data=data,
                    headers=call.headers,
                    timeout=timeout,
                )
                if response.status in call.expect:
                    return response
                try:
                    body = await response.read()
                finally:
                    response.release()
            except _NO_ANSWER as exc:
                failure: ClientError = connection_error(exc, method=call.method, path=call.path)
            else:
                failure = call.error(response.status, body, response.headers)
                status, retry_after = response.status, failure.retry_after
            wait = self.retry.delay(
                attempt=attempt,
                status=status,
                retry_after=retry_after,
                elapsed=loop.time() - started,
                safe=call.safe and stream is None,
                rng=self._rng,
            )
            if wait is None or stream is not None:
                raise failure
            await asyncio.sleep(wait)

    async def _run(self, call: Call[T]) -> T:
        return await self._answer(call, await self._open(call, None, streaming=False))

    async def _answer(self, call: Call[T], response: aiohttp.ClientResponse) -> T:
        """The decoded answer of ``call``, its body read to the end and the connection freed."""
        try:
            body = await response.read()
        except _NO_ANSWER as exc:
            raise connection_error(exc, method=call.method, path=call.path) from exc
        finally:
            response.release()
        return call.read(response.status, body)


async def _chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """An import body for aiohttp (sent chunked); each chunk is read between two sends."""
    for chunk in chunks:
        yield chunk
