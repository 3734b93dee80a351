"""``banditd simulate`` and ``banditd evaluate``: the command-line face of ``sims``.

Both are registered under the ``banditd.commands`` entry-point group and take their arguments
without the command name. ``--json`` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from bandit.errors import BanditError
from sims.evaluation import ESTIMATORS, estimate, read_logs, replay, write_logs
from sims.presets import PRESETS, PolicySpec, parse_policy
from sims.report import summarize, summary_dicts, text_table, write_results
from sims.runner import run_with_logs
from sims.scenarios import SCENARIOS, Scenario, load_toml
from sims.sweep import Job, plan, sweep

DEFAULT_POLICIES = ("default", "egreedy", "squarecb", "bag", "cover", "uniform", "oracle")


def simulate_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd simulate``."""
    p = argparse.ArgumentParser(
        prog="banditd simulate",
        description="Run policies on simulated scenarios (every policy × scenario × seed), "
        "write JSON, CSV, a table and PNG plots.",
    )
    p.add_argument("scenarios", nargs="*", help=f"named scenarios ({', '.join(SCENARIOS)})")
    p.add_argument("--config", type=Path, help="TOML file with [[scenario]] and [[policy]]")
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        help=f"a preset ({', '.join(PRESETS)}), 'name@ε', or VW arguments; repeatable",
    )
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 3)")
    p.add_argument("--rounds", type=int, help="override every scenario's number of rounds")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--out", type=Path, default=Path("sim-results"), help="output directory")
    p.add_argument("--window", type=int, default=100, help="rounds per point of reward plot")
    p.add_argument("--logs", action="store_true", help="also write each run's DSJSON logs")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--list", action="store_true", help="list scenarios and presets, then exit")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return p


def simulate_main(argv: list[str]) -> int:
    """Entry point of ``banditd simulate``; returns the exit status."""
    args = simulate_parser().parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"scenario {s.name:<14} {s.environment} {dict(s.params)} rounds={s.rounds}")
        for spec in PRESETS.values():
            print(f"policy   {spec.name:<14} ε={spec.exploration:g}  {spec.arguments}")
        return 0
    try:
        scenarios: list[Scenario] = [_scenario(name) for name in args.scenarios]
        policies: list[PolicySpec] = [parse_policy(p) for p in args.policy]
        seeds = args.seeds
        if args.config is not None:
            toml = load_toml(args.config)
            scenarios.extend(toml.scenarios)
            policies.extend(toml.policies)
            seeds = seeds or toml.seeds
    except (ValueError, OSError) as exc:
        print(f"banditd simulate: {exc}", file=sys.stderr)
        return 2
    scenarios = scenarios or list(SCENARIOS.values())
    policies = policies or [PRESETS[name] for name in DEFAULT_POLICIES]
    if args.rounds is not None:
        scenarios = [replace(s, rounds=args.rounds) for s in scenarios]
    jobs = plan(scenarios, policies, range(seeds or 3))
    results = sweep(jobs, workers=args.workers, progress=not args.no_progress)
    paths = {k: str(v) for k, v in write_results(results, args.out).items()}
    if not args.no_plots:
        # matplotlib loads only when plots are drawn (it costs a second of start-up).
        from sims.plots import plot_comparison, plot_regret, plot_rewards

        paths["reward_png"] = str(plot_rewards(results, args.out / "reward.png", args.window))
        paths["regret_png"] = str(plot_regret(results, args.out / "regret.png"))
        if {"uniform", "oracle"} <= {r.policy for r in results}:
            comparison = plot_comparison(summarize(results), args.out / "comparison.png")
            paths["comparison_png"] = str(comparison)
    if args.logs:
        _write_run_logs(jobs, args.out / "logs")
        paths["logs"] = str(args.out / "logs")
    summaries = summarize(results)
    if args.json:
        print(json.dumps({"summary": summary_dicts(summaries), "files": paths}))
    else:
        print(text_table(summaries))
        print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


def _scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def _write_run_logs(jobs: list[Job], directory: Path) -> None:
    for job in jobs:
        _, lines = run_with_logs(job.scenario, job.policy, job.seed)
        name = f"{job.scenario.name}-{job.policy.name}-{job.seed}.dsjson"
        write_logs(lines, directory / name.replace("/", "_").replace(" ", "_"))


def evaluate_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd evaluate``."""
    p = argparse.ArgumentParser(
        prog="banditd evaluate",
        description="Estimate a policy's mean reward on DSJSON logs by progressive validation.",
    )
    p.add_argument("--logs", type=Path, required=True, help="labelled DSJSON file")
    p.add_argument(
        "--policy", required=True, help="uniform, baseline, or a VW --cb_explore_adf string"
    )
    p.add_argument("--estimator", choices=ESTIMATORS, default="ips")
    p.add_argument("--clip", type=float, help="clip importance weights at this value")
    p.add_argument(
        "--exploration",
        type=float,
        help="serve the policy through banditd's caps with this ε (default: as the policy says)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="1 − interval coverage")
    p.add_argument(
        "--bootstrap", type=int, default=0, help="bootstrap resamples (0: normal interval)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def evaluate_main(argv: list[str]) -> int:
    """Entry point of ``banditd evaluate``; returns the exit status."""
    args = evaluate_parser().parse_args(argv)
    try:
        events = read_logs(args.logs)
        data = replay(events, args.policy, exploration=args.exploration)
        rng = np.random.default_rng(args.seed) if args.bootstrap > 0 else None
        result = estimate(
            data,
            args.estimator,
            clip=args.clip,
            alpha=args.alpha,
            rng=rng,
            n_boot=max(args.bootstrap, 1),
        )
    except (ValueError, OSError, BanditError) as exc:
        print(f"banditd evaluate: {exc}", file=sys.stderr)
        return 2
    out = {
        "estimate": result.estimate,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "ess": result.ess,
        "n": result.n,
        "std_error": result.std_error,
        "estimator": args.estimator,
        "policy": args.policy,
        "logged_reward": float(np.mean(data.rewards)) if result.n else None,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"{args.estimator.upper()} estimate of {args.policy!r} on {result.n} events: "
            f"{result.estimate:.4f} [{result.ci_low:.4f}, {result.ci_high:.4f}] "
            f"(ESS {result.ess:.1f}; logged policy {out['logged_reward']:.4f})"
        )
    return 0


def main() -> None:  # pragma: no cover - convenience for ``python -m sims.cli``
    command, *rest = sys.argv[1:] or ["simulate"]
    handler = {"simulate": simulate_main, "evaluate": evaluate_main}[command]
    raise SystemExit(handler(rest))


if __name__ == "__main__":  # pragma: no cover
    main()
