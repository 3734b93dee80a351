"""Signed model archives: what ``GET /model?signed=true`` returns and ``PUT /model`` accepts.

A zip holding ``model.vw`` (the VW model bytes), ``metadata.json`` (the learning policy the model
was trained with, its version and time) and ``signature`` (hex HMAC-SHA256 over both, with the
server's signing key). Import verifies the signature before VW ever sees the bytes, so only
models this server (or one sharing its key) exported can be loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import zipfile
from dataclasses import dataclass

from bandit.errors import InvalidModelImportFormat, InvalidModelImportSignature

FORMAT = "banditd-model/1"
_MODEL = "model.vw"
_METADATA = "metadata.json"
_SIGNATURE = "signature"
_MAX_METADATA = 64 << 10


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelMetadata:
    """What a signed archive says about its model."""

    name: str
    arguments: str
    version: int
    created_at: float


def _digest(key: bytes, model: bytes, metadata: bytes) -> str:
    mac = hmac.new(key, FORMAT.encode(), hashlib.sha256)
    mac.update(hashlib.sha256(model).digest())
    mac.update(hashlib.sha256(metadata).digest())
    return mac.hexdigest()


def sign(model: bytes, metadata: ModelMetadata, key: bytes) -> bytes:
    """A signed archive of ``model``.

    >>> archive = sign(b"vw", ModelMetadata(name="p", arguments="a", version=1, created_at=0), b"k")
    >>> verify(archive, b"k", max_bytes=1 << 20)[0]
    b'vw'
    """
    meta = json.dumps(
        {
            "format": FORMAT,
            "name": metadata.name,
            "arguments": metadata.arguments,
            "version": metadata.version,
            "createdAt": metadata.created_at,
        },
        sort_keys=True,
    ).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_MODEL, model)
        archive.writestr(_METADATA, meta)
        archive.writestr(_SIGNATURE, _digest(key, model, meta))
    return out.getvalue()


def _read(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        raise InvalidModelImportFormat(f"the model archive has no {name!r}.") from exc
    if info.file_size > limit:
        raise InvalidModelImportFormat(f"{name!r} in the model archive is too large.")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise InvalidModelImportFormat(f"{name!r} in the model archive is too large.")
    return data


def verify(data: bytes, key: bytes, *, max_bytes: int) -> tuple[bytes, ModelMetadata]:
    """The model bytes and metadata of a signed archive.

    Raises:
        InvalidModelImportFormat: not a zip, a member is missing or too large, or the metadata
            is malformed.
        InvalidModelImportSignature: the signature does not match (tampered, or another key).
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InvalidModelImportFormat(
            "the model must be a signed model archive as exported with GET /model?signed=true."
        ) from exc
    with archive:
        try:
            model = _read(archive, _MODEL, max_bytes)
            meta = _read(archive, _METADATA, _MAX_METADATA)
            signature = _read(archive, _SIGNATURE, 1024).decode("ascii", "replace").strip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InvalidModelImportFormat(f"the model archive is damaged: {exc}.") from exc
    if not hmac.compare_digest(signature.encode(), _digest(key, model, meta).encode()):
        raise InvalidModelImportSignature(
            "the model archive's signature does not match its content and this server's key."
        )
    try:
        fields = json.loads(meta)
        metadata = ModelMetadata(
            name=str(fields["name"]),
            arguments=str(fields["arguments"]),
            version=int(fields["version"]),
            created_at=float(fields["createdAt"]),
        )
        if fields.get("format") != FORMAT:
            raise ValueError(f"unknown format {fields.get('format')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidModelImportFormat(f"the model archive's metadata is invalid: {exc}.") from exc
    return model, metadata
