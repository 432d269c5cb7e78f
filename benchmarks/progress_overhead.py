"""What `metarl evaluate`'s progress bar costs: the same evaluation with and without it.

    FORCE_COLOR=1 .venv/bin/python benchmarks/progress_overhead.py [--env breakout]
        [--runs 4] [--timesteps 3e5] [--reps 5] 2>/dev/null

Runs `metarl_cli.evaluation.evaluate` (what `metarl evaluate` calls) on one env in three ways:
`plain`, without progress (`ShardedRunner`: one program per run); `segments`, the run in
host-side segments of about a second with a progress callback that does nothing
(`rl/progress.py`); `bar`, the segments with the CLI's bar (`cli/_progress.EvalProgress`, rich
drawing on stderr; FORCE_COLOR=1 makes rich draw as on a terminal). Compilation is warmed up
first and excluded: it compares `run_s`, the wall time of the runs, and reports the process's
CPU time per call too (less sensitive to other jobs; it includes the call's set-up: tracing,
loading the compiled programs from the cache, initialising the runs). Each repetition runs the
three in a rotated order (so a change of load during a repetition does not always hit the same
one) and prints their times; the end prints the median ratio to `plain` of the other two and
whether every final return was identical. The machine should be quiet: other jobs on the
cores change run times by more than the bar does.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys

from metarl_cli.rl.parallel import enable_compilation_cache, expose_cpu_cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="breakout")
    parser.add_argument("--target", default="ppo")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--timesteps", default="3e5")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    expose_cpu_cores()
    enable_compilation_cache()

    from metarl_cli.cli._progress import EvalProgress
    from metarl_cli.envs import resolve_envs
    from metarl_cli.evaluation import build_configs, evaluate

    env_ids = resolve_envs(args.env)
    common = dict(num_runs=args.runs, timesteps=args.timesteps)
    steps = {c.env_id: c.env_steps for c in build_configs(env_ids, timesteps=args.timesteps)}

    def plain():
        return evaluate(args.target, env_ids, **common)

    def segments():
        return evaluate(args.target, env_ids, on_progress=lambda env, f: None, **common)

    def bar():
        with EvalProgress(steps, args.runs) as b:
            return evaluate(
                args.target, env_ids, on_event=b.on_event, on_progress=b.on_progress, **common
            )

    ways = {"plain": plain, "segments": segments, "bar": bar}
    reference = {name: way() for name, way in ways.items()}  # compile, fill the cache
    returns = reference["plain"].envs[0].final_returns
    identical = all(r.envs[0].final_returns == returns for r in reference.values())
    times: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    total = sum(steps.values()) * args.runs
    names = list(ways)
    for rep in range(args.reps):
        order = names[rep % 3 :] + names[: rep % 3]
        for name in order:
            c0 = _cpu_s()
            result = ways[name]()
            cpu[name].append(_cpu_s() - c0)
            identical &= result.envs[0].final_returns == returns
            times[name].append(sum(e.run_s for e in result.envs))
        line = ", ".join(
            f"{n} {times[n][-1]:.2f} s ({total / times[n][-1]:,.0f} steps/s, "
            f"cpu {cpu[n][-1]:.1f} s)"
            for n in names
        )
        print(f"rep {rep} (order {'/'.join(order)}): {line}", flush=True)
    for name in ("segments", "bar"):
        for what, values in (("run wall", times), ("call cpu", cpu)):
            ratios = [t / p for t, p in zip(values[name], values["plain"], strict=True)]
            print(
                f"{name}/plain {what}: median {statistics.median(ratios):.4f} "
                f"(min {min(ratios):.4f}, max {max(ratios):.4f}) over {args.reps} repetitions"
            )
    print(
        f"{args.target} on {','.join(env_ids)}, {args.runs} runs x {args.timesteps} steps; "
        f"identical final returns in every run: {identical}"
    )
    sys.exit(0 if identical else 1)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
