"""The ``ModelRegistry`` contract: published serving models."""

from __future__ import annotations

from bandit.store import ModelRegistry
from tests.stores.conftest import T0


def test_published_versions_increase_and_pruning_keeps_the_newest(store: ModelRegistry) -> None:
    assert store.latest_model() is None and store.list_models() == []
    records = [
        store.publish_model(
            created_at=T0 + i,
            data=bytes([i]) * 8,
            arguments=f"a{i}",
            learned_count=10 * i,
            cursor=i,
            keep=3,
        )
        for i in range(5)
    ]
    assert [r.version for r in records] == [1, 2, 3, 4, 5]
    assert [m.version for m in store.list_models()] == [5, 4, 3]
    assert [(m.arguments, m.cursor, m.learned_count) for m in store.list_models()] == [
        ("a4", 4, 40),
        ("a3", 3, 30),
        ("a2", 2, 20),
    ]
    assert store.latest_model() == records[4]
    assert store.get_model(3) == records[2]
    assert store.get_model(3).data == bytes([2]) * 8  # type: ignore[union-attr]
    assert store.get_model(2) is None
    # pruned numbers are never reused, even when fewer are kept from now on
    again = store.publish_model(
        created_at=T0 + 9, data=b"x", arguments="", learned_count=0, cursor=0, keep=1
    )
    assert again.version == 6
    assert [m.version for m in store.list_models()] == [6]


def test_a_restored_version_records_what_it_restored(store: ModelRegistry) -> None:
    def publish(i: int) -> int:
        return store.publish_model(
            created_at=T0 + i, data=b"m", arguments="", learned_count=i, cursor=i, keep=3
        ).version

    first, second, third = publish(0), publish(1), publish(2)
    assert store.get_model(third).restored_from is None  # type: ignore[union-attr]
    store.mark_restored(third, first)
    assert store.get_model(third).restored_from == first  # type: ignore[union-attr]
    assert [(m.version, m.restored_from) for m in store.list_models()] == [
        (third, first),
        (second, None),
        (first, None),
    ]
    assert store.latest_model().restored_from == first  # type: ignore[union-attr]
    store.mark_restored(third + 10, first)  # not kept: nothing to mark
    publish(3)
    publish(4)
    assert [m.restored_from for m in store.list_models()] == [None, None, first]
