"""The DSJSON line framing of export (a byte stream cut into lines) and import (lines, a file
or a path sent as chunks)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

CHUNK = 64 * 1024
"""Bytes read or sent at a time by export and import."""

ImportSource = str | os.PathLike[str] | IO[bytes] | Iterable[str | bytes]
"""What :meth:`Client.import_logs` reads: a file's path, a binary file, or lines."""


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
