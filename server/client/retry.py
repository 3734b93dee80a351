"""When a call is sent again, and after how long: 503 and 429 answers (and failed connections,
for calls safe to repeat), with a jittered exponential backoff that honours ``Retry-After``."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

RETRY_STATUSES = frozenset({429, 503})
"""Answers that mean "not done, try again": too many requests, unavailable for now."""


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
