"""Benchmark: wall time of PPO with each learned algorithm in its slot, against PPO-Adam.

Run on purpose (not collected by pytest): `python tests/benchmarks/learned_overhead.py
[--env minatar/breakout] [--timesteps 2e5] [--repeat 5] [--json]`. Every algorithm runs the
same trainer, env, budget and seed in this one process, compiled and warmed up once; then each
round times every algorithm once, in alternating order (forward, then reversed), and its ratio
to PPO-Adam is taken within the round, so load from other work shifts both sides alike. The
report is the median over rounds, next to the target with PASS/MISS.
Targets (issue 3): LPO <= 1.15x PPO, OPEN <= 2x PPO-Adam; OPEN-FF and No Features have none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import jax

from metarl_cli.config import build_config
from metarl_cli.envs import make_env
from metarl_cli.learned.base import ALGORITHMS, get_algorithm, slots_for
from metarl_cli.rl.ppo import make_train
from metarl_cli.rl.slots import Slots, empty_theta

TARGETS = {"lpo": 1.15, "open": 2.0}  # max wall time vs PPO-Adam (issue 3)


def compiled_run(cfg, slots, theta) -> Callable[[], float]:
    """Compiles and warms up one training run; returns a function that times one call."""
    trainer = make_train(cfg, make_env(cfg), slots)
    state = jax.jit(trainer.init)(theta, jax.random.key(0))
    run = jax.jit(trainer.run).lower(theta, state).compile()
    jax.block_until_ready(run(theta, state))  # warm-up

    def timed() -> float:
        t = time.perf_counter()
        jax.block_until_ready(run(theta, state))
        return time.perf_counter() - t

    return timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="minatar/breakout")
    parser.add_argument("--timesteps", default="2e5")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (median kept)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    cfg = build_config(args.env, timesteps=args.timesteps)
    get_algorithm("lpo")
    runs = {"ppo": compiled_run(cfg, Slots(), empty_theta())}
    for name in ALGORITHMS.names():
        alg = get_algorithm(name)
        arch = alg.default_architecture(cfg.suite)
        theta = {**empty_theta(), alg.slot: alg.init(jax.random.key(0), **arch)}
        runs[name] = compiled_run(cfg, slots_for(alg, cfg, arch), theta)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(max(1, args.repeat)):
        for name in list(runs) if r % 2 == 0 else list(reversed(runs)):
            times[name].append(runs[name]())
    report = {}
    for name, ts in times.items():
        ratio = statistics.median(t / p for t, p in zip(ts, times["ppo"], strict=True))
        target = TARGETS.get(name)
        verdict = None if target is None else ("PASS" if ratio <= target else "MISS")
        report[name] = {
            "run_s": round(statistics.median(ts), 3),
            "vs_ppo": round(ratio, 3),
            "vs_ppo_rounds": [round(t / p, 3) for t, p in zip(ts, times["ppo"], strict=True)],
            "target": target,
            "verdict": verdict,
        }
    if args.json:
        out = {"env": cfg.env_id, "env_steps": cfg.env_steps, "rounds": args.repeat}
        print(json.dumps({**out, "rows": report}, indent=2))
        return
    print(f"{cfg.env_id}, {cfg.env_steps:,} env steps, 1 seed, median of {args.repeat} rounds")
    print(f"{'algorithm':<10} {'run s':>8} {'x PPO':>7} {'target':>8}  verdict  rounds")
    for name, r in report.items():
        target = f"<= {r['target']:.2f}" if r["target"] is not None else "-"
        rounds = ", ".join(f"{x:.2f}" for x in r["vs_ppo_rounds"])
        print(
            f"{name:<10} {r['run_s']:>8.2f} {r['vs_ppo']:>6.2f}x {target:>8}  "
            f"{r['verdict'] or '-':<7}  {rounds}"
        )


if __name__ == "__main__":
    main()
