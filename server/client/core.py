"""The client's sans-IO core: each operation as a :class:`Call` (what to send, which statuses
mean success, whether it may be repeated, how to read the answer). The retry rule is
:mod:`server.client.retry`, the DSJSON line framing of export and import
:mod:`server.client.framing`; the sync and async clients only move bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from bandit.config import LearningMode, ServiceConfiguration, to_wire
from bandit.events import PolicySettings, RankRequest
from server.client import types as t
from server.client.errors import ClientError, error_from_response
from server.client.retry import parse_retry_after

T = TypeVar("T")

KEY_HEADER = "Ocp-Apim-Subscription-Key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
JSON = "application/json"
NDJSON = "application/x-ndjson"
OCTETS = "application/octet-stream"


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
