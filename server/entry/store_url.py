"""Store URLs (``--store``, ``banditd copy --from/--to``): which implementation, and where.

Two forms: ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` name an SQLite
file (three slashes, then the path); ``postgresql://…`` and ``postgres://…`` are libpq
connection URLs, handed to the PostgreSQL store as they are. A URL may carry a password, so
messages show :attr:`StoreURL.display`, where it is masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

StoreKind = Literal["sqlite", "postgresql"]

_MASK = "***"
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_PASSWORD_PARAMETER = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


class StoreURLError(ValueError):
    """A store URL banditd cannot use; the message says which forms it takes."""


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL.

    Attributes:
        kind: the implementation.
        target: the SQLite file's path, or the whole libpq URL (password and all).
    """

    kind: StoreKind
    target: str

    @property
    def display(self) -> str:
        """The URL for messages: an SQLite file's path, a PostgreSQL URL with its password
        masked (:func:`mask_password`)."""
        return self.target if self.kind == "sqlite" else mask_password(self.target)


def parse_store_url(text: str) -> StoreURL:
    """The store ``text`` names.

    >>> parse_store_url("sqlite:///data/banditd.db")
    StoreURL(kind='sqlite', target='data/banditd.db')
    >>> parse_store_url("sqlite:////var/lib/banditd.db")
    StoreURL(kind='sqlite', target='/var/lib/banditd.db')
    >>> parse_store_url("postgres://u:pw@db.internal/loop").kind
    'postgresql'
    >>> parse_store_url("sqlite://banditd.db")
    Traceback (most recent call last):
    ...
    server.entry.store_url.StoreURLError: store URL 'sqlite://banditd.db': an SQLite URL is \
sqlite:///relative/path.db or sqlite:////absolute/path.db (three slashes before the path)
    >>> parse_store_url("mysql://u:pw@h/db")
    Traceback (most recent call last):
    ...
    server.entry.store_url.StoreURLError: store URL 'mysql://u:***@h/db': unknown scheme \
'mysql'; use sqlite:///PATH or postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE
    """
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise StoreURLError(
                f"store URL {text!r}: an SQLite URL is sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db (three slashes before the path)"
            )
        return StoreURL("sqlite", rest[1:])
    if sep and scheme in _POSTGRES_SCHEMES:
        return StoreURL("postgresql", text)
    shown = mask_password(text) if sep else text
    raise StoreURLError(
        f"store URL {shown!r}: unknown scheme {scheme!r}; use sqlite:///PATH or "
        "postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE"
    )


def mask_password(url: str) -> str:
    """``url`` with any password in it (in the user part, or a ``password`` parameter) shown
    as ``***``.

    >>> mask_password("postgresql://loop:s3cr:t@db:5432/banditd")
    'postgresql://loop:***@db:5432/banditd'
    >>> mask_password("postgres://db/banditd?user=loop&password=s3cret&sslmode=require")
    'postgres://db/banditd?user=loop&password=***&sslmode=require'
    >>> mask_password("postgresql://loop@db/banditd")
    'postgresql://loop@db/banditd'
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # unbalanced brackets in the host: show no more than the scheme
        return url.partition("://")[0] + "://" + _MASK
    netloc = parts.netloc
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.partition(':')[0]}:{_MASK}@{host}"
    query = _PASSWORD_PARAMETER.sub(lambda m: m.group(1) + _MASK, parts.query)
    return parts._replace(netloc=netloc, query=query).geturl()


def redact(text: str, url: str) -> str:
    """``text`` (an error message, say) with the password of ``url`` masked wherever it
    appears, and ``url`` itself shown masked.

    >>> redact("bad: postgresql://u:pw1@h/d refused pw1", "postgresql://u:pw1@h/d")
    'bad: postgresql://u:***@h/d refused ***'
    """
    text = text.replace(url, mask_password(url))
    for password in _passwords(url):
        text = text.replace(password, _MASK)
    return text


def _passwords(url: str) -> list[str]:
    """The passwords ``url`` carries, longest first (so none is left half masked)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    found += [
        m.group(0).partition("=")[2]
        for m in re.finditer(r"(?:^|(?<=&))password=[^&]*", parts.query, re.IGNORECASE)
    ]
    found += [unquote(p) for p in found]  # as written, and as a server would echo it
    return sorted({p for p in found if p}, key=len, reverse=True)
