"""What an inference explanation costs per rank: the policy's prediction alone against the
prediction plus :meth:`policies.vw.VWPolicy.explain` of the chosen action, on the workload's
rank bodies (10 actions of 10 features, 20 context features) and a model that has learned
from them.

Both loops run in this one process, alternately and on the same requests, so a busy machine
slows both alike; the report is the median over rounds of µs per rank.

Run: ``python -m bench.explain --rounds 5`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

from bandit.events import Decision, JoinedEvent, RankRequest
from bench.workload import Workload, encode_body, rank_bodies
from policies import DEFAULT_ARGUMENTS, VWPolicy
from server.api.schemas import parse_rank


def requests(n: int, seed: int = 1) -> list[RankRequest]:
    bodies = rank_bodies(Workload(n_bodies=n, seed=seed))
    return [parse_rank(encode_body(b, f"e{i}"), max_actions=50) for i, b in enumerate(bodies)]


def trained(arguments: str, training: list[RankRequest]) -> VWPolicy:
    rng = random.Random(3)
    policy = VWPolicy(arguments, epsilon=0.2)
    for seq, request in enumerate(training, 1):
        k = len(request.actions)
        chosen = rng.randrange(k)
        decision = Decision(
            event_id=request.event_id,
            timestamp=0.0,
            request=request,
            pmf=tuple(1.0 / k for _ in range(k)),
            chosen_index=chosen,
            model_version=1,
        )
        reward = 1.0 if chosen == seq % 3 else 0.0
        policy.learn_one(
            JoinedEvent(
                decision=decision,
                reward=reward,
                reward_count=1,
                defaulted=False,
                joined_at=0.0,
                seq=seq,
            )
        )
    return VWPolicy(arguments, epsilon=0.2, model=policy.to_bytes())


def measure(arguments: str, *, n: int = 200, rounds: int = 5) -> dict[str, Any]:
    policy = trained(arguments, requests(1000, seed=2))
    ranked = requests(n)
    policy.explain(ranked[0], 0)  # builds the explaining workspace, once per model

    def plain() -> float:
        start = time.perf_counter()
        for request in ranked:
            policy.predict_one(request)
        return (time.perf_counter() - start) / n * 1e6

    def explained() -> float:
        start = time.perf_counter()
        for request in ranked:
            pmf = policy.predict_one(request)
            policy.explain(request, max(range(len(pmf)), key=pmf.__getitem__))
        return (time.perf_counter() - start) / n * 1e6

    plain_us, explained_us = [], []
    for _ in range(rounds):
        plain_us.append(plain())
        explained_us.append(explained())
    sample = policy.explain(ranked[0], 0)
    return {
        "arguments": arguments,
        "requests": n,
        "rounds": rounds,
        "plain_us_per_rank": round(statistics.median(plain_us), 1),
        "explained_us_per_rank": round(statistics.median(explained_us), 1),
        "explanation_us": round(statistics.median(explained_us) - statistics.median(plain_us), 1),
        "features_in_an_explanation": len(sample.features) if sample else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--requests", type=int, default=200, help="requests per round")
    args = parser.parse_args(argv)
    results = [
        measure(a, n=args.requests, rounds=args.rounds)
        for a in (DEFAULT_ARGUMENTS, "--cb_explore_adf --epsilon 0.2 --cb_type mtr")
    ]
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
