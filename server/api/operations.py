"""Declared operations: each route's method, path, handler, auth role and wire schemas.

Handlers decode bodies with :func:`decode` against the same ``msgspec`` types an
:class:`Operation` declares, and ``/openapi.json`` is generated from the declarations
(:mod:`server.api.openapi`), so the description cannot drift from what is validated.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec
from aiohttp import web

from bandit.errors import InvalidRequest
from server.api.base import PREFIXES
from server.api.edge import add_route

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
S = TypeVar("S")

JSON = "application/json"
OCTETS = "application/octet-stream"


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """One documented response: its status, description, body type and media type."""

    status: int
    description: str
    body: Any = None
    media: str = JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """A route mounted under every Personalizer URL form.

    Attributes:
        id: the operation id (unique); also names the aiohttp route.
        role: the auth role (the route-name part before the dot): ``rank``, ``reward`` and
            ``activate`` take a client key, the rest an admin key.
        method, path: HTTP method and path relative to the prefix (``/model``).
        handler: the aiohttp handler.
        summary: one line for the description.
        body: the request body type (a ``msgspec.Struct``, ``bytes`` for octet streams), or None.
        body_media: the request body's media type.
        query: documented query parameters: name → (schema type, required, description).
        responses: the documented success and error responses.
        prefixes: the URL prefixes it is mounted under (every form by default).
    """

    id: str
    role: str
    method: str
    path: str
    handler: Handler
    summary: str
    body: Any = None
    body_media: str = JSON
    query: dict[str, tuple[Any, bool, str]] = field(default_factory=dict)
    responses: tuple[Response, ...] = ()
    prefixes: tuple[str, ...] = PREFIXES


REGISTRY: list[Operation] = []
"""Every declared operation, in declaration order (read by :mod:`server.api.openapi`)."""


def declare(*operations: Operation) -> tuple[Operation, ...]:
    """Add operations to :data:`REGISTRY` (once per id) and return them."""
    known = {op.id for op in REGISTRY}
    REGISTRY.extend(op for op in operations if op.id not in known)
    return operations


def mount(app: web.Application, operations: tuple[Operation, ...]) -> None:
    """Add each operation's route under each of its prefixes."""
    for op in operations:
        for i, prefix in enumerate(PREFIXES):
            if prefix in op.prefixes:
                add_route(
                    app, op.method, prefix + op.path, op.handler, name=f"{op.role}.{op.id}.p{i}"
                )


def decode(body: bytes, kind: type[S], error: type[InvalidRequest]) -> S:
    """Decode and validate a JSON body as ``kind``; violations raise ``error`` (a 400) whose
    ``target`` is the top-level field at fault. A field ``kind`` does not define (when it
    forbids unknown fields) is named with the closest defined one; a value outside a field's
    enumeration is named with the values allowed."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = text.rsplit(" - at `$.", 1)
        target = path[1].rstrip("`").split("[", 1)[0].split(".", 1)[0] if len(path) == 2 else None
        unknown = _UNKNOWN_FIELD.fullmatch(text)
        if unknown is not None and target is None:
            raise error(_unknown_field(kind, unknown.group(1)), target=unknown.group(1)) from exc
        enum = _ENUM_VALUE.fullmatch(path[0])
        if enum is not None and target is not None and (allowed := _choices(kind, target)):
            message = f"{target} must be one of {', '.join(allowed)}; got {enum.group(1)}."
            raise error(message, target=target) from exc
        raise error(f"{text}.", target=target) from exc
    except msgspec.DecodeError as exc:
        raise error(f"the request body is not valid JSON: {exc}.") from exc


_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(.*)`")
_ENUM_VALUE = re.compile(r"Invalid enum value (.*)")


def _wire_names(kind: type[Any]) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(kind)]


def _unknown_field(kind: type[Any], name: str) -> str:
    """The message for a field ``kind`` does not define: the closest name it does, or all."""
    names = _wire_names(kind)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"the fields are {', '.join(names)}."
    return f"unknown field {name}; {hint}"


def _choices(kind: type[Any], name: str) -> tuple[str, ...]:
    """The values the enumerated top-level field ``name`` of ``kind`` allows, as declared
    (empty when it is not one)."""
    for f in msgspec.structs.fields(kind):
        if f.encode_name == name:
            return _literals(f.type)
    return ()


def _literals(kind: Any) -> tuple[str, ...]:
    if get_origin(kind) is Literal:
        return tuple(str(v) for v in get_args(kind))
    if get_origin(kind) in (Annotated, Union, types.UnionType):
        return tuple(v for arg in get_args(kind) for v in _literals(arg))
    return ()
