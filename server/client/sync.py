"""The blocking client: stdlib ``http.client`` over one keep-alive connection.

One :class:`Client` is for one thread at a time (it holds one connection); give each thread
its own.
"""

from __future__ import annotations

import http.client
import random
import time
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from bandit.config import LearningMode, ServiceConfiguration
from bandit.events import PolicySettings, RankRequest
from server.client import core
from server.client import types as t
from server.client.core import Call, Endpoint
from server.client.errors import ClientError, connection_error
from server.client.framing import CHUNK, ImportSource, LineSplitter, body_chunks
from server.client.retry import RetryPolicy

T = TypeVar("T")

_NO_ANSWER = (OSError, http.client.HTTPException)
IDLE_RECONNECT = 15.0
"""Seconds after which an idle connection is replaced before the next call. Servers close idle
keep-alive connections (aiohttp after 75 s); a call sent on one they closed gets no answer,
and a call that is not safe to repeat would then fail for no fault of its own."""


class Client:
    """banditd over HTTP, blocking.

    Args:
        base_url: the server's root, ``http://127.0.0.1:8080``.
        key: sent as ``Ocp-Apim-Subscription-Key`` (a client key ranks, rewards and activates;
            the admin operations need an admin key).
        timeout: seconds to wait for a connection and for each read.
        retry: when to retry (503, 429, and connection failures where the call is safe).
        rng: the retry jitter's source (seed it for reproducible waits).

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
    ) -> None:
        self.endpoint = Endpoint.parse(base_url)
        self.retry = retry or RetryPolicy()
        self._headers = core.default_headers(key)
        self._timeout = timeout
        self._rng = rng or random.Random()
        self._connection: http.client.HTTPConnection | None = None
        self._used_at = 0.0

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (the next call opens another)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- the Personalizer surface ----------------------------------------------------------------

    def rank(self, request: RankRequest) -> t.RankResponse:
        """Rank ``request``'s actions (an empty ``event_id`` gets a fresh one)."""
        return self._run(core.rank(request))

    def reward(self, event_id: str, value: float, *, idempotency_key: str | None = None) -> None:
        """Report ``value`` for ``event_id``, once however often it is retried."""
        self._run(core.reward(event_id, value, idempotency_key))

    def activate(self, event_id: str, *, idempotency_key: str | None = None) -> None:
        """Activate a deferred event."""
        self._run(core.activate(event_id, idempotency_key))

    # -- administration --------------------------------------------------------------------------

    def get_configuration(self) -> ServiceConfiguration:
        return self._run(core.get_configuration())

    def put_configuration(self, config: ServiceConfiguration) -> ServiceConfiguration:
        """Replace the service configuration; returns the one now in force."""
        return self._run(core.put_configuration(config))

    def get_policy(self) -> PolicySettings:
        return self._run(core.get_policy())

    def put_policy(self, policy: PolicySettings) -> PolicySettings:
        """Set the learning policy (resets and retrains the model)."""
        return self._run(core.put_policy(policy))

    def delete_policy(self) -> PolicySettings:
        """Reset the learning policy to the default, returned."""
        return self._run(core.delete_policy())

    def get_model(self, *, signed: bool = False) -> bytes:
        """The serving model's bytes (``signed``: an archive :meth:`put_model` takes)."""
        return self._run(core.get_model(signed))

    def put_model(self, archive: bytes) -> None:
        """Import a signed model archive."""
        self._run(core.put_model(archive))

    def delete_model(self) -> None:
        """Reset the model to a fresh one."""
        self._run(core.delete_model())

    def model_properties(self) -> t.ModelProperties:
        return self._run(core.model_properties())

    def list_models(self, *, counterfactual: bool = False) -> t.ModelList:
        return self._run(core.list_models(counterfactual))

    def activate_model(self, version: int) -> t.ModelActivation:
        """Roll back to stored model ``version`` (published again as a new version)."""
        return self._run(core.activate_model(version))

    def logs_properties(self) -> t.LogsProperties:
        return self._run(core.logs_properties())

    def delete_logs(self) -> None:
        """Delete every logged event the learner has learned."""
        self._run(core.delete_logs())

    def loop_status(self, *, history: bool = False) -> t.LoopStatus:
        return self._run(core.loop_status(history))

    def get_loop_configuration(self) -> dict[str, Any]:
        """The watch, guardrail and drift settings, as the server names them."""
        return self._run(core.get_loop_configuration())

    def put_loop_configuration(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some watch, guardrail or drift settings (stored); returns them all."""
        return self._run(core.put_loop_configuration(changes))

    def health(self) -> t.Health:
        """``/healthz``; an unavailable service is a :class:`Health` with ``ok`` false."""
        return self._run(core.health())

    # -- logs ------------------------------------------------------------------------------------

    def export_logs(
        self, *, start: datetime | None = None, end: datetime | None = None
    ) -> Iterator[str]:
        """The DSJSON lines of the joined events decided in ``[start, end)``, read as they
        arrive (one partial line held at a time). Use the iterator up before the next call:
        it holds the connection."""
        call = core.export_logs(start, end)
        response = self._open(call, None)
        splitter = LineSplitter()
        try:
            while chunk := response.read1(CHUNK):
                yield from splitter.feed(chunk)
            yield from splitter.finish()
        except _NO_ANSWER as exc:
            self.close()
            raise connection_error(exc, method=call.method, path=call.path) from exc
        finally:
            if not response.isclosed():
                self.close()  # abandoned half-way: the rest of the answer is unread

    def import_logs(
        self, source: ImportSource, *, mode: LearningMode | str = LearningMode.ONLINE
    ) -> t.ImportResult:
        """Store DSJSON lines as learned-from history, streamed from ``source`` (a path, a
        binary file, or lines); lines already stored are skipped. Not retried."""
        call = core.import_logs(mode)
        response = self._open(call, body_chunks(source))
        body = response.read()
        return call.read(response.status, body)

    # -- transport -------------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        now = time.monotonic()
        if self._connection is not None and now - self._used_at > IDLE_RECONNECT:
            self.close()
        self._used_at = now
        if self._connection is None:
            e = self.endpoint
            kind = (
                http.client.HTTPSConnection if e.scheme == "https" else http.client.HTTPConnection
            )
            self._connection = kind(e.host, e.port, timeout=self._timeout)
        return self._connection

    def _send(
        self, call: Call[T], body: bytes | Iterator[bytes] | None
    ) -> http.client.HTTPResponse:
        connection = self._connect()
        headers = {**self._headers, **call.headers}
        chunked = body is not None and not isinstance(body, bytes)
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        connection.request(
            call.method,
            self.endpoint.path + call.path,
            body=body,
            headers=headers,
            encode_chunked=chunked,
        )
        return connection.getresponse()

    def _open(self, call: Call[T], stream: Iterator[bytes] | None) -> http.client.HTTPResponse:
        """Send ``call`` (retrying as :attr:`retry` allows) and return the successful answer
        with its body unread."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            retry_after: float | None = None
            try:
                response = self._send(call, stream if stream is not None else call.body)
            except _NO_ANSWER as exc:
                self.close()
                failure: ClientError = connection_error(exc, method=call.method, path=call.path)
            else:
                if response.status in call.expect:
                    return response
                try:
                    body = response.read()
                except _NO_ANSWER as exc:
                    self.close()
                    body = str(exc).encode()
                if response.will_close:
                    self.close()
                failure = call.error(response.status, body, response.headers)
                status, retry_after = response.status, failure.retry_after
            wait = self.retry.delay(
                attempt=attempt,
                status=status,
                retry_after=retry_after,
                elapsed=time.monotonic() - started,
                safe=call.safe and stream is None,
                rng=self._rng,
            )
            if wait is None or stream is not None:
                raise failure
            time.sleep(wait)

    def _run(self, call: Call[T]) -> T:
        response = self._open(call, None)
        try:
            body = response.read()
        except _NO_ANSWER as exc:
            self.close()
            raise connection_error(exc, method=call.method, path=call.path) from exc
        if response.will_close:
            self.close()
        return call.read(response.status, body)
