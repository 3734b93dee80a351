"""``banditd simulate`` and ``banditd evaluate``: the command-line face of ``sims``.

Both are registered under the ``banditd.commands`` entry-point group and take their arguments
without the command name. ``--json`` prints exactly one JSON object on stdout (for
``simulate``: ``summary``, ``files`` and the runs that ``failed``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np

from bandit.errors import BanditError
from sims.evaluation import ESTIMATORS, estimate, read_logs, replay, write_logs
from sims.presets import PRESETS, PolicySpec, parse_policy
from sims.remote import (
    DEFAULT_TIME_SCALE,
    SERVER_POLICY,
    Remote,
    RemoteError,
    check_remote,
    remote_runner,
    server_exploration,
)
from sims.report import summarize, summary_dicts, text_table, write_results
from sims.runner import run_with_logs
from sims.scenarios import SCENARIOS, Scenario, load_toml
from sims.sweep import Job, Outcome, plan, run_jobs

DEFAULT_POLICIES = ("default", "egreedy", "squarecb", "bag", "cover", "uniform", "oracle")


SIMULATE_EXAMPLES = """\
examples:
  banditd simulate --list
  banditd simulate linear --policy egreedy --policy squarecb@0.1 --rounds 500
  banditd simulate --config sweep.toml --seeds 5 --out results --json
  banditd simulate linear --policy "--cb_explore_adf --epsilon 0.1 -q ::" --no-plots
  banditd simulate linear --url http://127.0.0.1:8080 --policy egreedy --seeds 1
"""


def simulate_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd simulate``."""
    p = argparse.ArgumentParser(
        prog="banditd simulate",
        description="\n\n".join(
            textwrap.fill(paragraph, 79)
            for paragraph in (
                "Run policies on simulated scenarios (every policy × scenario × seed), write "
                "JSON, CSV, a table and PNG plots.",
                "Runs in process on a virtual clock, or with --url against a live banditd over "
                "HTTP. Policies and scenarios are checked before any run starts; a run that "
                "fails is reported in one line and the others' results are still written (exit "
                "status 1).",
            )
        ),
        epilog=SIMULATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenarios", nargs="*", help=f"named scenarios ({', '.join(SCENARIOS)})")
    p.add_argument("--config", type=Path, help="TOML file with [[scenario]] and [[policy]]")
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        help=f"a preset ({', '.join(PRESETS)}), 'name@ε', VW arguments starting with --, or "
        "the name of a [[policy]] in --config; repeatable (then only these run)",
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
    live = p.add_argument_group("against a live server")
    live.add_argument(
        "--url",
        help="run each scenario × seed against the banditd at URL (loopback only), one run "
        "at a time; each --policy is set on the server first, without --policy the server's "
        "own runs (labelled 'server')",
    )
    live.add_argument(
        "--key", help="admin key sent to the server (default: $BANDITD_ADMIN_KEY, if set)"
    )
    live.add_argument(
        "--time-scale",
        type=float,
        default=DEFAULT_TIME_SCALE,
        help=f"real seconds per virtual second (default {DEFAULT_TIME_SCALE:g}: the named "
        "scenarios' 5 s reward wait becomes the server's 1 s minimum)",
    )
    return p


def simulate_main(argv: list[str]) -> int:
    """Entry point of ``banditd simulate``; returns the exit status (1 when a run failed)."""
    args = simulate_parser().parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"scenario {s.name:<14} {s.environment} {dict(s.params)} rounds={s.rounds}")
        for spec in PRESETS.values():
            print(f"policy   {spec.name:<14} ε={spec.exploration:g}  {spec.arguments}")
        return 0
    try:
        scenarios, policies, seeds = _plan(args)
        remote = _remote(args, scenarios, policies)
    except (ValueError, OSError) as exc:
        print(f"banditd simulate: {exc}", file=sys.stderr)
        return 2
    jobs = plan(scenarios, policies, range(seeds))
    if remote is None:
        outcome = run_jobs(jobs, workers=args.workers, progress=not args.no_progress)
    else:
        try:
            exploration = server_exploration(remote)
        except RemoteError as exc:
            print(f"banditd simulate: {exc}", file=sys.stderr)
            return 1
        runner = remote_runner(remote, exploration=exploration)
        outcome = run_jobs(jobs, progress=not args.no_progress, runner=runner)
    for failure in outcome.failures:
        print(f"banditd simulate: {failure.line()}", file=sys.stderr)
    results = outcome.results
    if not results:
        if args.json:
            print(json.dumps({"summary": [], "files": {}, "failed": _failed(outcome)}))
        return 1
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
        broken = {id(f.job) for f in outcome.failures}
        _write_run_logs([j for j in jobs if id(j) not in broken], args.out / "logs")
        paths["logs"] = str(args.out / "logs")
    summaries = summarize(results)
    if args.json:
        summary = summary_dicts(summaries)
        print(json.dumps({"summary": summary, "files": paths, "failed": _failed(outcome)}))
    else:
        print(text_table(summaries))
        print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 1 if outcome.failures else 0


def _failed(outcome: Outcome) -> list[dict[str, object]]:
    """The failed runs of ``outcome`` as JSON objects."""
    return [
        {
            "scenario": f.job.scenario.name,
            "policy": f.job.policy.name,
            "seed": f.job.seed,
            "message": f.message,
        }
        for f in outcome.failures
    ]


def _plan(args: argparse.Namespace) -> tuple[list[Scenario], list[PolicySpec], int]:
    """The scenarios, policies and number of seeds the arguments ask for, every one checked.

    Raises:
        ValueError: an unknown scenario or policy, or a policy VW refuses.
        OSError: the TOML file cannot be read.
    """
    scenarios: list[Scenario] = [_scenario(name) for name in args.scenarios]
    toml = load_toml(args.config) if args.config is not None else None
    named = {spec.name: spec for spec in toml.policies} if toml else {}
    policies: list[PolicySpec] = [parse_policy(p, named) for p in args.policy]
    seeds = args.seeds
    if toml is not None:
        scenarios.extend(toml.scenarios)
        seeds = seeds or toml.seeds
        if not policies:
            policies = list(toml.policies)
    scenarios = scenarios or list(SCENARIOS.values())
    if not policies:
        policies = [SERVER_POLICY] if args.url else [PRESETS[name] for name in DEFAULT_POLICIES]
    if args.rounds is not None:
        if args.rounds < 1:
            raise ValueError(f"--rounds must be ≥ 1, got {args.rounds}")
        scenarios = [replace(s, rounds=args.rounds) for s in scenarios]
    if seeds is not None and seeds < 1:
        raise ValueError(f"--seeds must be ≥ 1, got {seeds}")
    return scenarios, policies, seeds or 3


def _remote(
    args: argparse.Namespace, scenarios: list[Scenario], policies: list[PolicySpec]
) -> Remote | None:
    """The server ``--url`` names, checked against what is to run; None without ``--url``."""
    if args.url is None:
        return None
    if args.logs:
        raise ValueError("--logs runs in process; with --url, export the server's logs instead")
    key = args.key or (os.environ.get("BANDITD_ADMIN_KEY", "").split(",")[0].strip() or None)
    remote = Remote(url=args.url, key=key, time_scale=args.time_scale)
    check_remote(remote, scenarios, policies)
    return remote


def _scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def _write_run_logs(jobs: list[Job], directory: Path) -> None:
    for job in jobs:
        _, lines = run_with_logs(job.scenario, job.policy, job.seed)
        name = f"{job.scenario.name}-{job.policy.name}-{job.seed}.dsjson"
        write_logs(lines, directory / name.replace("/", "_").replace(" ", "_"))


EVALUATE_EXAMPLES = """\
examples:
  banditd evaluate --logs logs.dsjson --policy squarecb
  banditd evaluate --logs logs.dsjson --policy egreedy@0.1 --estimator snips --json
  banditd evaluate --logs logs.dsjson --policy "--cb_explore_adf --epsilon 0.1 -q ::"
  banditd evaluate --logs logs.dsjson --policy baseline --estimator dr --bootstrap 200
"""


def evaluate_parser() -> argparse.ArgumentParser:
    """Arguments of ``banditd evaluate``."""
    p = argparse.ArgumentParser(
        prog="banditd evaluate",
        description=textwrap.fill(
            "Estimate a policy's mean reward on DSJSON logs by progressive validation "
            "(predict each logged event, then learn it), with a confidence interval.",
            79,
        ),
        epilog=EVALUATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--logs", type=Path, required=True, help="labelled DSJSON file")
    p.add_argument(
        "--policy",
        required=True,
        help=f"a preset ({', '.join(n for n in PRESETS if n != 'oracle')}), 'name@ε', or a "
        "VW --cb_explore_adf string",
    )
    p.add_argument("--estimator", choices=ESTIMATORS, default="ips")
    p.add_argument("--clip", type=float, help="clip importance weights at this value")
    p.add_argument(
        "--exploration",
        type=float,
        help="serve the policy through banditd's caps with this ε (default: the ε of "
        "'name@ε', else as the policy says)",
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
        spec = parse_policy(args.policy)
        if spec.arguments == "oracle":
            raise ValueError("the oracle knows only simulated worlds; it cannot replay logs")
        exploration = args.exploration
        if exploration is None and "@" in args.policy:
            exploration = spec.exploration
        events = read_logs(args.logs)
        data = replay(events, spec.arguments, exploration=exploration)
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
