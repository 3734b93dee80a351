"""The loop's created-once state: its seed, and the configuration and policy it starts with.

The trainer creates it when it first starts on a store (:func:`ensure_loop_state`, each value
written only if absent, so even two trainers starting together agree on one seed); edges read it
(:func:`read_loop_state`) and wait until it is there.
"""

from __future__ import annotations

from dataclasses import dataclass

from bandit.config import ServiceConfiguration
from bandit.events import PolicySettings
from bandit.store import Store

SEED_KEY = "loop_seed"


@dataclass(frozen=True, slots=True)
class LoopState:
    """What a process of the loop starts from."""

    seed: int
    config: ServiceConfiguration
    policy: PolicySettings


def ensure_loop_state(store: Store, *, new_seed: int, default_policy: PolicySettings) -> LoopState:
    """The stored seed, configuration and policy, each stored first if the store has none.

    ``new_seed`` is the seed stored when there is none yet (the caller draws it); a store that
    has one keeps it. A missing configuration or policy is stored as the default: two processes
    doing so at once store the same value.
    """
    config = store.load_config()
    if config is None:
        config = ServiceConfiguration()
        store.save_config(config)
    policy = store.load_policy()
    if policy is None:
        policy = default_policy
        store.save_policy(policy)
    seed = int(store.set_meta_if_absent(SEED_KEY, str(new_seed)))
    return LoopState(seed=seed, config=config, policy=policy)


def read_loop_state(store: Store) -> LoopState | None:
    """The stored seed, configuration and policy, or None while any is missing (no trainer has
    started on this store yet)."""
    seed, config, policy = store.get_meta(SEED_KEY), store.load_config(), store.load_policy()
    if seed is None or config is None or policy is None:
        return None
    return LoopState(seed=int(seed), config=config, policy=policy)
