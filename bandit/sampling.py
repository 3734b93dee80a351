"""Seeded sampling: the draw for an event is a pure function of (seed, event id, pmf).

The same event id against the same distribution always gives the same action, so decisions can
be replayed and audited. The uniform variate comes from BLAKE2b, which is stable across
processes, platforms and Python versions (unlike ``hash``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def uniform(seed: int, event_id: str) -> float:
    """A variate in [0, 1) determined by ``seed`` and ``event_id``.

    >>> uniform(7, "ev-1") == uniform(7, "ev-1")
    True
    >>> 0.0 <= uniform(7, "ev-1") < 1.0
    True
    """
    digest = hashlib.blake2b(
        event_id.encode("utf-8"), digest_size=8, key=seed.to_bytes(16, "little", signed=True)
    ).digest()
    return (int.from_bytes(digest, "little") >> 11) / float(1 << 53)


def sample(pmf: Sequence[float], seed: int, event_id: str) -> int:
    """Draw an index from ``pmf`` by inverse CDF on :func:`uniform`.

    Only indices with positive probability can be drawn.

    >>> sample([0.0, 1.0, 0.0], 1, "any")
    1
    """
    u = uniform(seed, event_id) * sum(pmf)
    cumulative = 0.0
    last = -1
    for i, p in enumerate(pmf):
        if p <= 0.0:
            continue
        cumulative += p
        last = i
        if u < cumulative:
            return i
    if last < 0:
        raise ValueError("pmf has no positive entry")
    return last
