"""What `metarl evaluate`'s progress bar costs: the same evaluation with and without it.

    FORCE_COLOR=1 .venv/bin/python benchmarks/progress_overhead.py [--env breakout]
        [--runs 4] [--timesteps 3e5] [--reps 3] 2>/dev/null

Runs `metarl_cli.evaluation.evaluate` (what `metarl evaluate` calls) on one env, alternately
without progress (`ShardedRunner`: one program per run) and with the CLI's bar
(`cli/_progress.EvalProgress`: the run in host-side segments of about a second, rich drawing
on stderr; FORCE_COLOR=1 makes rich draw as on a terminal). Compilation is warmed up first and
excluded: it compares `run_s`, the wall time of the runs. Prints each pair, the median ratio
(bar / no bar) and whether the final returns were identical. The machine should be quiet:
other jobs on the cores change run times by more than the bar does.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from metarl_cli.rl.parallel import enable_compilation_cache, expose_cpu_cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="breakout")
    parser.add_argument("--target", default="ppo")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--timesteps", default="3e5")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    expose_cpu_cores()
    enable_compilation_cache()

    from metarl_cli.cli._progress import EvalProgress
    from metarl_cli.envs import resolve_envs
    from metarl_cli.evaluation import build_configs, evaluate

    env_ids = resolve_envs(args.env)
    common = dict(num_runs=args.runs, timesteps=args.timesteps)

    def plain():
        return evaluate(args.target, env_ids, **common)

    steps = {c.env_id: c.env_steps for c in build_configs(env_ids, timesteps=args.timesteps)}

    def with_bar():
        with EvalProgress(steps, args.runs) as bar:
            return evaluate(
                args.target, env_ids, on_event=bar.on_event, on_progress=bar.on_progress, **common
            )

    plain(), with_bar()  # compile both programs (and fill the cache)
    ratios, identical = [], True
    for rep in range(args.reps):
        a, b = plain(), with_bar()
        ra, rb = sum(e.run_s for e in a.envs), sum(e.run_s for e in b.envs)
        same = all(x.final_returns == y.final_returns for x, y in zip(a.envs, b.envs, strict=True))
        identical &= same
        ratios.append(rb / ra)
        steps = sum(e.env_steps_per_run for e in a.envs) * args.runs
        print(
            f"rep {rep}: no bar {ra:.2f} s ({steps / ra:,.0f} steps/s), bar {rb:.2f} s "
            f"({steps / rb:,.0f} steps/s), ratio {rb / ra:.4f}, identical returns {same}",
            flush=True,
        )
    print(
        f"median ratio bar/no bar {statistics.median(ratios):.4f} over {args.reps} pairs "
        f"({args.target} on {','.join(env_ids)}, {args.runs} runs x {args.timesteps} steps); "
        f"identical returns: {identical}"
    )
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
