"""The client's sans-IO core: each operation as a :class:`Call` (what to send, which statuses
mean success, whether it may be repeated, how to read the answer), the retry rule, and the
DSJSON line framing of export and import. The sync and async clients only move bytes.
"""

from __future__ import annotations

import json
import math
import os
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from bandit.config import LearningMode, ServiceConfiguration, to_wire
from bandit.events import PolicySettings, RankRequest
from server.client import types as t
from server.client.errors import ClientError, error_from_response

T = TypeVar("T")

KEY_HEADER = "Ocp-Apim-Subscription-Key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
JSON = "application/json"
NDJSON = "application/x-ndjson"
OCTETS = "application/octet-stream"
RETRY_STATUSES = frozenset({429, 503})
"""Answers that mean "not done, try again": too many requests, unavailable for now."""
CHUNK = 64 * 1024
"""Bytes read or sent at a time by export and import."""

ImportSource = str | os.PathLike[str] | IO[bytes] | Iterable[str | bytes]
"""What :meth:`Client.import_logs` reads: a file's path, a binary file, or lines."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Generic[T]):
    """One operation, built once and sent as often as the retry rule allows.

    Attributes:
        method: the HTTP method.
        path: path and query below the server's root (``/v1/rank``).
        body: the request body, or None.
        headers: headers beyond the key and the defaults (an ``Idempotency-Key`` made once
            here is therefore the same on every retry).
        expect: the statuses that mean success.
        safe: the call may be repeated when the connection failed before an answer (the
            server may have carried it out): true for reads, idempotent writes and writes that
            carry an id the server deduplicates on.
        decode: reads a successful answer's status and body.
    """

    method: str
    path: str
    expect: tuple[int, ...]
    decode: Callable[[int, bytes], T]
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    safe: bool = True

    def read(self, status: int, body: bytes) -> T:
        """The value of a successful answer.

        Raises:
            ClientError: the body is not what the operation answers (code ``InvalidResponse``):
                not banditd, or a version that answers differently.
        """
        try:
            return self.decode(status, body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ClientError(
                status=status,
                code="InvalidResponse",
                message=f"the answer is not what {self.method} {self.path} returns: {exc}",
                method=self.method,
                path=self.path,
            ) from exc

    def error(self, status: int, body: bytes, headers: Any) -> ClientError:
        """The error of an answer outside :attr:`expect` (``headers`` a mapping)."""
        return error_from_response(
            status,
            body,
            method=self.method,
            path=self.path,
            error_code=headers.get("x-ms-error-code"),
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )


# -- retries -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When to send a call again, and after how long.

    Attributes:
        attempts: tries in all, the first included (1: never retry).
        backoff: seconds of the first retry's wait; each further retry doubles it, up to
            ``max_backoff``; the wait is drawn uniformly from its upper half (jitter).
        max_backoff: the longest wait between two tries, in seconds, unless the server's
            ``Retry-After`` asks for more.
        max_total: seconds from the first try after which no retry starts (a ``Retry-After``
            that would pass it ends the call at once).
    """

    attempts: int = 5
    backoff: float = 0.2
    max_backoff: float = 10.0
    max_total: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not (self.backoff >= 0 and self.max_backoff >= 0 and self.max_total >= 0):
            raise ValueError("backoff, max_backoff and max_total must be ≥ 0")

    def delay(
        self,
        *,
        attempt: int,
        status: int | None,
        retry_after: float | None,
        elapsed: float,
        safe: bool,
        rng: random.Random,
    ) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None to give up.

        Args:
            attempt: tries made so far (≥ 1).
            status: the last answer's status, or None when the connection failed.
            retry_after: the last answer's ``Retry-After`` in seconds, if any.
            elapsed: seconds since the first try started.
            safe: the call may be repeated after a connection failure (:attr:`Call.safe`).
            rng: the jitter's source.

        >>> rule = RetryPolicy(attempts=3, backoff=1.0)
        >>> 0.5 <= rule.delay(attempt=1, status=503, retry_after=None, elapsed=0.0, safe=False,
        ...                   rng=random.Random(0)) <= 1.0
        True
        >>> rule.delay(attempt=1, status=503, retry_after=7.0, elapsed=0.0, safe=False,
        ...            rng=random.Random(0))
        7.0
        >>> rule.delay(attempt=3, status=503, retry_after=None, elapsed=0.0, safe=True,
        ...            rng=random.Random(0)) is None
        True
        """
        if attempt >= self.attempts:
            return None
        if status is None and not safe:
            return None
        if status is not None and status not in RETRY_STATUSES:
            return None
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        wait = ceiling / 2 + rng.uniform(0.0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, retry_after)
        if elapsed + wait > self.max_total:
            return None
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (the HTTP-date form is not read: None).

    >>> [parse_retry_after(v) for v in ("2", "0.5", "Wed, 21 Oct 2015 07:28:00 GMT", None)]
    [2.0, 0.5, None, None]
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# -- base URL ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where a server listens: ``scheme``, ``host``, ``port`` and the root ``path`` prefix."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, base_url: str) -> Endpoint:
        """Read ``http(s)://host[:port][/root]``.

        Raises:
            ValueError: not an http(s) URL with a host.

        >>> Endpoint.parse("http://127.0.0.1:8080/")
        Endpoint(scheme='http', host='127.0.0.1', port=8080, path='')
        """
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(scheme=parts.scheme, host=parts.hostname, port=port, path=parts.path.rstrip("/"))

    def url(self, path: str) -> str:
        """The absolute URL of a call's path."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}{path}"


def default_headers(key: str | None) -> dict[str, str]:
    """Headers every call carries: the key (when given) and the client's name."""
    headers = {"User-Agent": "banditd-client", "Accept": JSON}
    if key is not None:
        headers[KEY_HEADER] = key
    return headers


# -- operations ----------------------------------------------------------------------------------


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def _decoded(read: Callable[[Any], T]) -> Callable[[int, bytes], T]:
    def decode(status: int, body: bytes) -> T:
        del status
        return read(json.loads(body))

    return decode


def _nothing(status: int, body: bytes) -> None:
    del status, body


def _bytes(status: int, body: bytes) -> bytes:
    del status
    return body


def _event_path(event_id: str, what: str) -> str:
    return f"/v1/events/{quote(event_id, safe='')}/{what}"


def new_key() -> str:
    """A fresh random id (event ids, idempotency keys)."""
    return uuid.uuid4().hex


def rank_body(request: RankRequest) -> dict[str, Any]:
    """The Personalizer RankRequest body of ``request`` (``maxExploration`` only when set)."""
    body: dict[str, Any] = {
        "contextFeatures": list(request.context_features),
        "actions": [{"id": a.id, "features": list(a.features)} for a in request.actions],
        "excludedActions": list(request.excluded_action_ids),
        "eventId": request.event_id,
        "deferActivation": request.defer_activation,
    }
    if request.max_exploration is not None:
        body["maxExploration"] = request.max_exploration
    return body


def rank(request: RankRequest) -> Call[t.RankResponse]:
    """Rank; an empty ``event_id`` is replaced by a fresh one, so a retry after a lost answer
    gets the stored decision back instead of a second one."""
    body = rank_body(request)
    body["eventId"] = request.event_id or new_key()
    return Call(
        method="POST",
        path="/v1/rank",
        body=_json(body),
        headers={"Content-Type": JSON},
        expect=(201,),
        decode=_decoded(t.rank_response),
    )


def reward(event_id: str, value: float, idempotency_key: str | None = None) -> Call[None]:
    """Reward an event; the ``Idempotency-Key`` (made here unless given) makes retries apply
    it once."""
    return Call(
        method="POST",
        path=_event_path(event_id, "reward"),
        body=_json({"value": value}),
        headers={"Content-Type": JSON, IDEMPOTENCY_HEADER: idempotency_key or new_key()},
        expect=(204,),
        decode=_nothing,
    )


def activate(event_id: str, idempotency_key: str | None = None) -> Call[None]:
    """Activate a deferred event (idempotent on the server; the key is sent all the same)."""
    return Call(
        method="POST",
        path=_event_path(event_id, "activate"),
        headers={IDEMPOTENCY_HEADER: idempotency_key or new_key()},
        expect=(204,),
        decode=_nothing,
    )


_CONFIG = "/v1/configurations/service"
_POLICY = "/v1/configurations/policy"
_LOOP = "/v1/loop/configuration"


def get_configuration() -> Call[ServiceConfiguration]:
    return Call(method="GET", path=_CONFIG, expect=(200,), decode=_decoded(t.service_configuration))


def put_configuration(config: ServiceConfiguration) -> Call[ServiceConfiguration]:
    """Replace the service configuration; answers the configuration now in force."""
    return Call(
        method="PUT",
        path=_CONFIG,
        body=_json(to_wire(config)),
        headers={"Content-Type": JSON},
        expect=(200,),
        decode=_decoded(t.service_configuration),
    )


def get_policy() -> Call[PolicySettings]:
    return Call(method="GET", path=_POLICY, expect=(200,), decode=_decoded(t.policy_settings))


def put_policy(policy: PolicySettings) -> Call[PolicySettings]:
    return Call(
        method="PUT",
        path=_POLICY,
        body=_json({"name": policy.name, "arguments": policy.arguments}),
        headers={"Content-Type": JSON},
        expect=(200,),
        decode=_decoded(t.policy_settings),
    )


def delete_policy() -> Call[PolicySettings]:
    """Reset the policy to the default; answers the default."""
    return Call(method="DELETE", path=_POLICY, expect=(200,), decode=_decoded(t.policy_settings))


def get_model(signed: bool = False) -> Call[bytes]:
    """The serving model's VW bytes, or (``signed``) an archive :func:`put_model` accepts."""
    path = "/v1/model" + ("?signed=true" if signed else "")
    return Call(method="GET", path=path, headers={"Accept": OCTETS}, expect=(200,), decode=_bytes)


def put_model(archive: bytes) -> Call[None]:
    return Call(
        method="PUT",
        path="/v1/model",
        body=archive,
        headers={"Content-Type": OCTETS},
        expect=(204,),
        decode=_nothing,
    )


def delete_model() -> Call[None]:
    return Call(method="DELETE", path="/v1/model", expect=(204,), decode=_nothing)


def model_properties() -> Call[t.ModelProperties]:
    return Call(
        method="GET",
        path="/v1/model/properties",
        expect=(200,),
        decode=_decoded(t.model_properties),
    )


def list_models(counterfactual: bool = False) -> Call[t.ModelList]:
    """Stored model versions; ``counterfactual`` also replays each on recent events (slower)."""
    path = "/v1/models?counterfactual=" + ("true" if counterfactual else "false")
    return Call(method="GET", path=path, expect=(200,), decode=_decoded(t.model_list))


def activate_model(version: int) -> Call[t.ModelActivation]:
    """Roll back to a stored version. Each call publishes a new version, so a call whose
    answer was lost is not repeated."""
    return Call(
        method="POST",
        path=f"/v1/models/{version}/activate",
        expect=(200,),
        decode=_decoded(t.model_activation),
        safe=False,
    )


def logs_properties() -> Call[t.LogsProperties]:
    return Call(
        method="GET", path="/v1/logs/properties", expect=(200,), decode=_decoded(t.logs_properties)
    )


def delete_logs() -> Call[None]:
    """Delete every logged event the learner has learned."""
    return Call(method="DELETE", path="/v1/logs", expect=(204,), decode=_nothing)


def loop_status(history: bool = False) -> Call[t.LoopStatus]:
    """The loop's status; ``history`` adds the chart series to :attr:`LoopStatus.raw`."""
    path = "/v1/loop/status?history=" + ("true" if history else "false")
    return Call(method="GET", path=path, expect=(200,), decode=_decoded(t.loop_status))


def _mapping(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    return body


def get_loop_configuration() -> Call[dict[str, Any]]:
    """The watch, guardrail and drift settings (``window``, ``alpha``, ``guardrailEnabled``…)."""
    return Call(method="GET", path=_LOOP, expect=(200,), decode=_decoded(_mapping))


def put_loop_configuration(changes: dict[str, Any]) -> Call[dict[str, Any]]:
    """Change some watch, guardrail or drift settings; answers them all."""
    return Call(
        method="PUT",
        path=_LOOP,
        body=_json(changes),
        headers={"Content-Type": JSON},
        expect=(200,),
        decode=_decoded(_mapping),
    )


def health() -> Call[t.Health]:
    """Liveness: 503 (store writes failing) is an answer here, not an error."""
    return Call(method="GET", path="/healthz", expect=(200, 503), decode=_decoded(t.health))


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def export_logs(start: datetime | None = None, end: datetime | None = None) -> Call[None]:
    """Stream the joined events decided in ``[start, end)``; the body is read by
    :class:`LineSplitter`, not by ``decode``. Aware datetimes; naive ones are read as local."""
    query = {}
    if start is not None:
        query["from"] = _iso(start.astimezone())
    if end is not None:
        query["to"] = _iso(end.astimezone())
    path = "/v1/logs/export" + (f"?{urlencode(query)}" if query else "")
    return Call(method="GET", path=path, headers={"Accept": NDJSON}, expect=(200,), decode=_nothing)


def import_logs(mode: LearningMode | str = LearningMode.ONLINE) -> Call[t.ImportResult]:
    """Bulk import; the body is streamed from :func:`body_chunks`, so the call is sent once
    (a consumed stream cannot be sent again)."""
    return Call(
        method="POST",
        path="/v1/logs/import?" + urlencode({"mode": LearningMode(mode).value}),
        headers={"Content-Type": NDJSON},
        expect=(200,),
        decode=_decoded(t.import_result),
        safe=False,
    )


# -- DSJSON line framing -------------------------------------------------------------------------


class LineSplitter:
    """Cuts a byte stream into its lines, holding at most one partial line.

    >>> s = LineSplitter()
    >>> s.feed(b'{"a":1}\\n{"b"'), s.feed(b':2}\\n\\n{"c":3}'), s.finish()
    (['{"a":1}'], ['{"b":2}'], ['{"c":3}'])
    """

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, chunk: bytes) -> list[str]:
        """The lines ``chunk`` completes (blank lines dropped, no newline)."""
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return [line.decode() for line in lines if line.strip()]

    def finish(self) -> list[str]:
        """The last line, when the stream did not end with a newline."""
        rest, self._partial = self._partial, b""
        return [rest.decode()] if rest.strip() else []


def body_chunks(source: ImportSource, size: int = CHUNK) -> Iterator[bytes]:
    """The import body of ``source`` in chunks of about ``size`` bytes, read as they are sent.

    A path or a binary file is sent as it is; lines (``str`` or ``bytes``) get a newline each
    when they lack one.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:
            yield from _file_chunks(file, size)
        return
    if hasattr(source, "read"):
        yield from _file_chunks(source, size)
        return
    buffer = bytearray()
    for line in source:
        data = line.encode() if isinstance(line, str) else bytes(line)
        buffer += data
        if not data.endswith(b"\n"):
            buffer += b"\n"
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _file_chunks(file: Any, size: int) -> Iterator[bytes]:
    while True:
        data = file.read(size)
        if not data:
            return
        yield data.encode() if isinstance(data, str) else data
