"""Resident memory of a long XLA:CPU loop on two host devices: one program, or one per device.

    .venv/bin/python benchmarks/multidevice_rss_growth.py
        [--mode shard_map|segments|per_device|one_device] [--width 512] [--iters 20000]

A `fori_loop` of `tanh(x @ w + 0.1)` over a `[1024, width]` block per device, the shape of a
training run's inner loop with a dense layer. `shard_map`: one jitted program over a mesh of
both devices (what `rl.parallel.ShardedRunner` runs). `per_device`: the same body jitted once
and dispatched to each device separately. `segments`: the `shard_map` program run as 40
executions of 1/40 of the loop each (what `rl.progress.ProgressRunner` does with a training
run). `one_device`: one device only. Prints the process's resident memory every 4 s while the
loop runs.

Measured here (jax 0.10.2, 2 cores): with `shard_map` RSS grows about 0.45 MiB/s for as long as
the loop runs (249 -> 347 MiB in 196 s), with or without `--xla_cpu_multi_thread_eigen=false`;
`per_device` and `one_device` stay flat (240-241 MiB and 238 MiB). But a real training run
(Breakout PPO, 2 seeds) grows as fast as one single-device program per device as in one
`shard_map` program: what matters is two executions running at once, and the memory comes back
when an execution ends. So `segments` stays flat, and training runs go in segments.
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import time


def _rss_mib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["shard_map", "segments", "per_device", "one_device"])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--iters", type=int, default=20000)
    args = parser.parse_args()
    mode = args.mode or "shard_map"
    devices = 1 if mode == "one_device" else 2
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    w = jnp.eye(args.width) * 0.5

    def body(x):
        return jax.lax.fori_loop(0, args.iters, lambda i, x: jnp.tanh(x @ w + 0.1), x)

    block = (1024, args.width)
    if mode == "per_device":
        f = jax.jit(body)
        outs = [f(jax.device_put(jnp.ones(block), d)) for d in jax.devices()]
    else:
        mesh = jax.make_mesh((devices,), ("r",))
        iters = args.iters // 40 if mode == "segments" else args.iters

        def loop(x):
            return jax.lax.fori_loop(0, iters, lambda i, x: jnp.tanh(x @ w + 0.1), x)

        f = jax.jit(jax.shard_map(jax.vmap(loop), mesh=mesh, in_specs=P("r"), out_specs=P("r")))
        outs = [f(jax.device_put(jnp.ones((devices, *block)), NamedSharding(mesh, P("r"))))]
        if mode == "segments":  # the rest as 39 more executions, dispatched as each ends
            start = last = time.time()
            for _ in range(39):
                outs = [f(outs[0])]
                while not outs[0].is_ready():
                    time.sleep(0.2)
                if time.time() - last >= 4:
                    print(f"{time.time() - start:6.0f} s  {_rss_mib()} MiB", flush=True)
                    last = time.time()
    t0 = time.time()
    while not all(o.is_ready() for o in outs):
        print(f"{time.time() - t0:6.0f} s  {_rss_mib()} MiB", flush=True)
        time.sleep(4)
    print(f"end      {_rss_mib()} MiB ({mode})")


if __name__ == "__main__":
    main()
