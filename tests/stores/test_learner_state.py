"""The ``LearnerState`` contract: the learner's checkpoint."""

from __future__ import annotations

from bandit.events import Checkpoint, PendingRetrain
from bandit.store import LearnerState
from tests.stores.conftest import T0


def test_checkpoint_is_replaced_whole(store: LearnerState) -> None:
    assert store.load_checkpoint() is None
    first = Checkpoint(
        model=b"\x00m1", arguments="--cb_explore_adf", cursor=3, learned_count=3, updated_at=T0
    )
    store.save_checkpoint(first)
    assert store.load_checkpoint() == first
    second = Checkpoint(
        model=b"m2" * 1000, arguments="-q ::", cursor=9, learned_count=7, updated_at=T0 + 1
    )
    store.save_checkpoint(second)
    loaded = store.load_checkpoint()
    assert loaded == second and loaded is not None and loaded.model == b"m2" * 1000


def test_checkpoint_keeps_the_pending_retrain_until_a_checkpoint_clears_it(
    store: LearnerState,
) -> None:
    # Issue 17, defect 3: the retrain a reset owes must survive a crash with the reset.
    owed = PendingRetrain(generation=4, cursor=3248, since=T0 - 2 * 86400, settings="eps 0.3")
    reset = Checkpoint(
        model=b"fresh", arguments="a", cursor=3248, learned_count=0, updated_at=T0, retrain=owed
    )
    store.save_checkpoint(reset)
    assert store.load_checkpoint() == reset
    adopted = Checkpoint(model=b"m", arguments="a", cursor=3248, learned_count=3248, updated_at=T0)
    store.save_checkpoint(adopted)
    loaded = store.load_checkpoint()
    assert loaded == adopted and loaded is not None and loaded.retrain is None
