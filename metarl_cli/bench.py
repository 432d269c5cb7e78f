"""Throughput benchmark: metarl's sharded runner against a PureJaxRL-style baseline.

The baseline is measured in the same run on the same trainer, the way PureJaxRL runs seeds:
`jit(vmap(train))` with initialisation inside the program, in a child process that sees one
device (a plain JAX process). It runs in a child because a vmapped orthogonal initialiser hangs
XLA:CPU in a process with several host devices (seen with Breakout, 2 seeds). Ratios against
it isolate what sharding and chunking buy. The persistent compilation cache is off in both.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import jax

from metarl_cli.config import build_config
from metarl_cli.envs import make_env
from metarl_cli.errors import ConfigError, MetarlError

# Modules, not names: tests replace `ppo.make_train` to prove that bad input never trains.
from metarl_cli.rl import parallel, ppo
from metarl_cli.rl.slots import Theta

CASES: list[tuple[str, int, float]] = [
    ("classic/cartpole", 1, 5e5),
    ("classic/cartpole", 8, 5e5),
    ("minatar/breakout", 1, 1e6),
    ("minatar/breakout", 2, 1e6),
]


@dataclass
class BenchRow:
    """One benchmark case: metarl's and the PureJaxRL baseline's compile and run times."""

    env_id: str
    num_envs: int
    seeds: int
    env_steps: int
    devices: int
    baseline_compile_s: float
    baseline_run_s: float
    baseline_steps_per_s: float
    metarl_compile_s: float
    metarl_run_s: float
    metarl_steps_per_s: float
    speedup: float  # metarl steps/s / baseline steps/s
    compile_ratio: float  # metarl compile / baseline compile (lower is better)


def _build(env_id: str, timesteps: float):
    cfg = build_config(env_id, timesteps=timesteps)
    return cfg, ppo.make_train(cfg, make_env(cfg))


def baseline_case(env_id: str, seeds: int, timesteps: float, repeat: int = 1) -> dict:
    """PureJaxRL's pattern in this process: returns compile and best run seconds."""
    _, trainer = _build(env_id, timesteps)
    theta = Theta()
    keys = jax.random.split(jax.random.key(0), seeds)
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(trainer, in_axes=(None, 0))).lower(theta, keys).compile()
    compile_s = time.perf_counter() - t0
    run_s = _best(lambda: compiled(theta, keys), repeat)
    return {"compile_s": compile_s, "run_s": run_s, "devices": len(jax.local_devices())}


def _baseline_in_child(env_id: str, seeds: int, timesteps: float, repeat: int) -> dict:
    env = dict(os.environ)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    env["XLA_FLAGS"] = " ".join(flags)
    env["METARL_CACHE_DIR"] = "off"
    args = [sys.executable, "-m", "metarl_cli.bench", env_id, str(seeds), str(timesteps)]
    proc = subprocess.run([*args, str(repeat)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MetarlError(f"baseline benchmark process failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_case(env_id: str, seeds: int, timesteps: float, repeat: int = 1) -> BenchRow:
    """Measures one (env, seeds) case with the preset config at `timesteps`."""
    base = _baseline_in_child(env_id, seeds, timesteps, repeat)
    cfg, trainer = _build(env_id, timesteps)
    theta = Theta()
    keys = jax.random.split(jax.random.key(0), seeds)
    total_steps = seeds * cfg.env_steps
    mesh = parallel.make_mesh(seeds)
    runner = parallel.ShardedRunner(trainer, mesh)
    _, first = runner(theta, keys)  # compiles init and run (overlapped)
    timed = [runner(theta, keys)[1] for _ in range(repeat)]
    ours_run = min(t.run_s + t.init_s for t in timed)
    ours_compile = first.compile_s - min(t.init_s for t in timed)  # minus init's execution
    return BenchRow(
        env_id=env_id,
        num_envs=cfg.num_envs,
        seeds=seeds,
        env_steps=total_steps,
        devices=mesh.devices.size,
        baseline_compile_s=base["compile_s"],
        baseline_run_s=base["run_s"],
        baseline_steps_per_s=total_steps / base["run_s"],
        metarl_compile_s=ours_compile,
        metarl_run_s=ours_run,
        metarl_steps_per_s=total_steps / ours_run,
        speedup=base["run_s"] / ours_run,
        compile_ratio=ours_compile / base["compile_s"],
    )


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(max(repeat, 0)):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best


def case_timesteps(steps: float, scale: float) -> int:
    """A case's budget at `scale`, a whole number of steps."""
    budget = steps * scale
    if not math.isfinite(budget):
        raise ConfigError(f"--scale {scale:g} makes a budget of {budget} steps; use a smaller one")
    return round(budget)


def run_bench(scale: float = 1.0, repeat: int = 1, on_case=None) -> list[dict]:
    """Runs every case at `scale` x its budget; returns rows as dicts."""
    rows = []
    for env_id, seeds, steps in CASES:
        if on_case:
            on_case(env_id, seeds)
        rows.append(asdict(bench_case(env_id, seeds, case_timesteps(steps, scale), repeat)))
    return rows


if __name__ == "__main__":  # the baseline's child process
    _env_id, _seeds, _steps, _repeat = sys.argv[1:5]
    print(json.dumps(baseline_case(_env_id, int(_seeds), float(_steps), int(_repeat))))
