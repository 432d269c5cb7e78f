"""Throughput benchmark: metarl's sharded runner against a PureJaxRL-style baseline.

The baseline is measured in the same process on the same trainer: `jit(vmap(train))` on one
device, with initialisation inside the program, exactly how PureJaxRL runs seeds. Ratios
against it isolate what sharding and chunking buy. The persistent compilation cache is off so
compile times are real.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

CASES: list[tuple[str, int, float]] = [
    ("classic/cartpole", 1, 5e5),
    ("classic/cartpole", 8, 5e5),
    ("minatar/breakout", 1, 1e6),
    ("minatar/breakout", 2, 1e6),
]


@dataclass
class BenchRow:
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


def bench_case(env_id: str, seeds: int, timesteps: float, repeat: int = 1) -> BenchRow:
    """Measures one (env, seeds) case with the preset config at `timesteps`."""
    import jax

    from metarl_cli.config import build_config
    from metarl_cli.envs import make_env
    from metarl_cli.rl.parallel import ShardedRunner, make_mesh
    from metarl_cli.rl.ppo import make_train
    from metarl_cli.rl.slots import empty_theta

    cfg = build_config(env_id, timesteps=timesteps)
    trainer = make_train(cfg, make_env(cfg))
    theta = empty_theta()
    keys = jax.random.split(jax.random.key(0), seeds)
    total_steps = seeds * cfg.env_steps

    # Baseline: PureJaxRL's pattern, one device, init inside, vmapped seeds.
    device0 = jax.devices()[0]
    base_keys = jax.device_put(keys, device0)
    t0 = time.perf_counter()
    base = jax.jit(jax.vmap(trainer, in_axes=(None, 0))).lower(theta, base_keys).compile()
    base_compile = time.perf_counter() - t0
    base_run = _best(lambda: base(theta, base_keys), repeat)

    runner = ShardedRunner(trainer, make_mesh(seeds))
    _, first = runner(theta, keys)
    ours_run = min(first.run_s + first.init_s, _best(lambda: runner(theta, keys)[0], repeat - 1))
    return BenchRow(
        env_id=env_id,
        num_envs=cfg.num_envs,
        seeds=seeds,
        env_steps=total_steps,
        devices=runner.num_devices,
        baseline_compile_s=base_compile,
        baseline_run_s=base_run,
        baseline_steps_per_s=total_steps / base_run,
        metarl_compile_s=first.compile_s,
        metarl_run_s=ours_run,
        metarl_steps_per_s=total_steps / ours_run,
        speedup=base_run / ours_run,
        compile_ratio=first.compile_s / base_compile,
    )


def _best(fn: Callable[[], object], repeat: int) -> float:
    import jax

    best = float("inf")
    for _ in range(max(repeat, 0)):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best


def run_bench(scale: float = 1.0, repeat: int = 1, on_case=None) -> list[dict]:
    """Runs every case at `scale` x its budget; returns rows as dicts."""
    rows = []
    for env_id, seeds, steps in CASES:
        if on_case:
            on_case(env_id, seeds)
        rows.append(asdict(bench_case(env_id, seeds, steps * scale, repeat)))
    return rows
