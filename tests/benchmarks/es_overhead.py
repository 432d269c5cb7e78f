"""Benchmark: the cost of ES on top of the trainer, device scaling and peak memory.

Run on purpose (not collected by pytest):

    python tests/benchmarks/es_overhead.py [--popsize 64] [--reps 3] [--breakout-timing-popsize 16]

Each measurement runs in its own child process, so that the device count can be set before
JAX starts (`--xla_force_host_platform_device_count`) and `ru_maxrss` is that child's peak.

* `time` children (per env and device count): one ES generation (ask, trainer init, the
  sharded population program, tell) and `ShardedRunner` training popsize x rollouts seeds of
  the same trainer with one shared theta (the trainer's own multi-seed throughput), both
  warmed up, then timed alternately `--reps` times; the minimum of each is reported, so that
  load from other processes affects both alike. `es/runner` is the ratio of wall times at the
  same total batch.
* `memory` children: the ES alone (compile + one generation); peak resident memory.

Budgets are cut (`--cartpole-steps`, `--breakout-steps`) so that a generation takes seconds;
memory does not depend on the budget (the run is a `scan`), only on envs x steps x runs per
device, which are the presets'. Breakout is timed with a smaller population (default 16) to
keep the run short; its memory is measured at `--popsize`. With very few updates the ES is
slightly favoured: its program returns only the final return, so XLA drops the last update's
(unused) gradient steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import resource

    import jax

    from metarl_cli.config import build_config
    from metarl_cli.envs import make_env
    from metarl_cli.learned.base import get_algorithm, slots_for
    from metarl_cli.meta.es.config import ESConfig
    from metarl_cli.meta.es.fitness import (
        PopulationFitness,
        combine_fitness,
        full_theta,
        to_device_fitness,
    )
    from metarl_cli.meta.es.strategies import init_state, make_strategy, strong
    from metarl_cli.rl.parallel import ShardedRunner, enable_compilation_cache
    from metarl_cli.rl.ppo import make_train

    enable_compilation_cache()
    alg = get_algorithm("lpo")
    arch = alg.default_architecture(args.env.split("/")[0])
    tc = build_config(args.env, timesteps=args.timesteps)
    trainer = make_train(tc, make_env(tc), slots_for(alg, tc, arch))
    cfg = ESConfig(algo="lpo", envs=[args.env], architecture=arch, popsize=args.popsize)
    template = alg.init(jax.random.key(0), **arch)
    runs = args.popsize * args.rollouts
    steps = runs * tc.env_steps

    es, params = make_strategy(cfg, template)
    fitness = PopulationFitness(trainer, alg.slot)
    es_state = [init_state(cfg, es, params, template, jax.random.key(1)), 0]

    def es_generation() -> float:
        state, g = es_state
        t = time.perf_counter()
        k_ask, k_fit, k_tell = jax.random.split(jax.random.fold_in(jax.random.key(2), g), 3)
        pop, asked = es.ask(k_ask, state, params)
        ret = fitness(pop, jax.random.split(k_fit, args.rollouts))
        fit = combine_fitness({args.env: ret}, {args.env: tc.ppo_normaliser})
        told, _ = es.tell(k_tell, pop, to_device_fitness(fit.fitness), asked, params)
        es_state[:] = [strong(told), g + 1]
        return time.perf_counter() - t

    runner = ShardedRunner(trainer)
    theta = full_theta(alg.slot, jax.tree.map(lambda x: x * 0, template))
    keys = jax.random.split(jax.random.key(3), runs)

    def runner_call() -> float:
        t = time.perf_counter()
        runner(theta, keys)
        return time.perf_counter() - t

    row = {"env": args.env, "mode": args.mode, "devices": len(jax.devices()), "runs": runs}
    row["env_steps_per_run"] = tc.env_steps
    if args.mode == "memory":
        row["first_generation_s"] = round(es_generation(), 2)
    else:
        row["es_first_s"] = round(es_generation(), 2)
        row["runner_first_s"] = round(runner_call(), 2)
        es_times, runner_times = [], []
        for _ in range(args.reps):
            es_times.append(es_generation())
            runner_times.append(runner_call())
        es_s, runner_s = min(es_times), min(runner_times)
        row.update(
            es_s=round(es_s, 3),
            runner_s=round(runner_s, 3),
            es_env_steps_per_s=round(steps / es_s),
            runner_env_steps_per_s=round(steps / runner_s),
            es_over_runner=round(es_s / runner_s, 3),
        )
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--env", default="classic/cartpole")
    parser.add_argument("--mode", choices=["time", "memory"], default="time")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--timesteps", default="5e4")
    parser.add_argument("--popsize", type=int, default=64)
    parser.add_argument("--rollouts", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cartpole-steps", default="5e4")
    parser.add_argument("--breakout-steps", default="65536")
    parser.add_argument("--breakout-timing-popsize", type=int, default=16)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    cp, bo = ("classic/cartpole", args.cartpole_steps), ("minatar/breakout", args.breakout_steps)
    pop, bo_pop = args.popsize, args.breakout_timing_popsize
    grid = [
        (*cp, 2, "time", pop), (*cp, 1, "time", pop), (*cp, 2, "memory", pop),
        (*bo, 2, "memory", pop), (*bo, 2, "time", bo_pop), (*bo, 1, "time", bo_pop),
    ]  # fmt: skip
    rows = []
    for env, steps, devices, mode, popsize in grid:
        cmd = [
            sys.executable, __file__, "--child", "--env", env, "--timesteps", str(steps),
            "--devices", str(devices), "--mode", mode, "--popsize", str(popsize),
            "--rollouts", str(args.rollouts), "--reps", str(args.reps),
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    timed = {(r["env"], r["devices"]): r for r in rows if r["mode"] == "time"}
    summary = {}
    for (env, devices), r in timed.items():
        if devices == 2 and (env, 1) in timed:
            one = timed[(env, 1)]
            summary[f"{env}: es 2 dev / 1 dev speed-up"] = round(one["es_s"] / r["es_s"], 2)
            summary[f"{env}: runner 2 dev / 1 dev speed-up"] = round(
                one["runner_s"] / r["runner_s"], 2
            )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
