"""docs/client.md names every operation, and both clients offer the same ones."""

from __future__ import annotations

import inspect
from pathlib import Path

from server.client import AsyncClient, Client

DOC = Path(__file__).resolve().parents[3] / "docs" / "client.md"


def operations(kind: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(kind).items()
        if not name.startswith("_") and callable(member)
    }


def test_both_clients_offer_the_same_operations_with_the_same_parameters() -> None:
    sync, aio = operations(Client), operations(AsyncClient)
    assert set(sync) == set(aio)
    for name, signature in sync.items():
        assert list(signature.parameters) == list(aio[name].parameters), name


def test_every_operation_is_in_the_docs() -> None:
    text = DOC.read_text()
    missing = [name for name in operations(Client) if f"`{name}(" not in text and name != "close"]
    assert not missing, f"docs/client.md does not describe {missing}"
