"""Benchmark: wall time of PPO with each learned algorithm in its slot, against PPO-Adam.

Run on purpose (not collected by pytest): `python tests/benchmarks/learned_overhead.py
[--env minatar/breakout] [--timesteps 2e5]`. Every algorithm runs the same trainer, env, budget
and seed in this one process, after a warm-up call, so the ratios compare like with like.
Targets (issue 3): LPO <= 1.15x PPO, OPEN <= 2x PPO-Adam.
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from metarl_cli.config import build_config
from metarl_cli.envs import make_env
from metarl_cli.learned.base import ALGORITHMS, get_algorithm, slots_for
from metarl_cli.rl.ppo import make_train
from metarl_cli.rl.slots import Slots, empty_theta


def time_run(cfg, slots, theta, repeat: int) -> float:
    trainer = make_train(cfg, make_env(cfg), slots)
    state = jax.jit(trainer.init)(theta, jax.random.key(0))
    run = jax.jit(trainer.run).lower(theta, state).compile()
    jax.block_until_ready(run(theta, state))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(run(theta, state))
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="minatar/breakout")
    parser.add_argument("--timesteps", default="2e5")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    cfg = build_config(args.env, timesteps=args.timesteps)
    get_algorithm("lpo")
    rows = {"ppo": time_run(cfg, Slots(), empty_theta(), args.repeat)}
    for name in ALGORITHMS.names():
        alg = get_algorithm(name)
        arch = alg.default_architecture(cfg.suite)
        theta = {**empty_theta(), alg.slot: alg.init(jax.random.key(0), **arch)}
        rows[name] = time_run(cfg, slots_for(alg, cfg, arch), theta, args.repeat)
    report = {
        name: {"run_s": round(s, 3), "vs_ppo": round(s / rows["ppo"], 2)}
        for name, s in rows.items()
    }
    print(json.dumps({"env": cfg.env_id, "env_steps": cfg.env_steps, "rows": report}, indent=2))


if __name__ == "__main__":
    main()
