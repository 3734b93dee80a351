"""The client's one error: a request banditd refused, or one that never got an answer."""

from __future__ import annotations

import json
from typing import Any


class ClientError(Exception):
    """banditd answered with an error status, or no answer came (``status`` is None).

    Attributes:
        status: the HTTP status, or None when the connection failed before an answer.
        code: Personalizer's high-level code (``BadRequest``, ``ResourceNotFound``, …); for a
            body that is not Personalizer's, ``HttpError``; with no answer, ``ConnectionFailed``.
        message: the server's message (or a description of what failed).
        target: the request field the error names, when the server names one.
        inner_code: the specific code (``innerError.code``, e.g. ``InvalidServiceConfiguration``),
            which is also the ``x-ms-error-code`` header.
        method: the request's method.
        path: the request's path and query.
        retry_after: the ``Retry-After`` the last answer carried, in seconds.
    """

    def __init__(
        self,
        *,
        status: int | None,
        code: str,
        message: str,
        method: str,
        path: str,
        target: str | None = None,
        inner_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.inner_code = inner_code
        self.method = method
        self.path = path
        self.retry_after = retry_after
        answer = f"answered {status} {inner_code or code}" if status is not None else "failed"
        super().__init__(f"{method} {path} {answer}: {message}")


def error_from_response(
    status: int,
    body: bytes,
    *,
    method: str,
    path: str,
    error_code: str | None = None,
    retry_after: float | None = None,
) -> ClientError:
    """The :class:`ClientError` of an error answer; ``body`` is read as Personalizer's
    ``{"error": {"code", "message", "target"?, "innerError": {"code"}}}`` when it is one,
    else quoted (200 characters at most). ``error_code`` is the ``x-ms-error-code`` header."""
    error: Any = None
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        decoded = None
    if isinstance(decoded, dict):
        error = decoded.get("error")
    if not isinstance(error, dict):
        text = body[:200].decode("utf-8", "replace").strip()
        return ClientError(
            status=status,
            code="HttpError",
            message=text or f"HTTP {status}",
            method=method,
            path=path,
            inner_code=error_code,
            retry_after=retry_after,
        )
    inner = error.get("innerError")
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    target = error.get("target")
    return ClientError(
        status=status,
        code=str(error.get("code") or "HttpError"),
        message=str(error.get("message") or f"HTTP {status}"),
        method=method,
        path=path,
        target=target if isinstance(target, str) else None,
        inner_code=str(inner_code) if inner_code is not None else error_code,
        retry_after=retry_after,
    )


def connection_error(exc: BaseException, *, method: str, path: str) -> ClientError:
    """The :class:`ClientError` of a request that got no answer."""
    return ClientError(
        status=None,
        code="ConnectionFailed",
        message=f"{type(exc).__name__}: {exc}".rstrip(": "),
        method=method,
        path=path,
    )
