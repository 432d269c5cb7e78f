"""Devices, meshes and the sharded multi-seed runner.

Independent runs (seeds; later population members) are sharded along the single mesh axis
"runs" with `shard_map`, never `pmap`; on each device they are processed in vmapped chunks of a
fixed size (`lax.map(..., batch_size=chunk)`). Because XLA's numerics depend on the batch shape
and RL amplifies the last bit, a fixed chunk makes every run's result independent of how many
devices there are: 8 seeds on 2 devices give exactly what they give on 1. The default chunk is 1
on CPU (vmapping seeds does not raise XLA:CPU throughput) and all of a device's runs on GPU/TPU.
Parameters are initialised outside the multi-device program: an orthogonal (QR) initialiser
vmapped inside a multi-device CPU program can deadlock. A run count that does not divide over
the devices is padded with extra runs whose results are dropped; fewer runs than devices use a
sub-mesh.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AXIS = "runs"


def expose_cpu_cores(env: dict[str, str] | None = None) -> bool:
    """Makes XLA:CPU expose every core as a device, unless the user set XLA_FLAGS.

    Must run before JAX is imported. Returns whether the flag was set.
    """
    env = os.environ if env is None else env
    if "XLA_FLAGS" in env:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={max(1, cores or 1)}"
    return True


def enable_compilation_cache(path: str | Path | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache (on by default; METARL_CACHE_DIR=off disables).

    Location: `path`, else $METARL_CACHE_DIR, else ~/.cache/metarl/jax.
    """
    import jax

    where = path or os.environ.get("METARL_CACHE_DIR") or Path.home() / ".cache/metarl/jax"
    if str(where).lower() in ("off", "none", "0", ""):
        return None
    where = Path(where).expanduser()
    where.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(where))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return where


def make_mesh(num_runs: int | None = None, devices: list | None = None):
    """A 1-D mesh over all devices (or the first `num_runs` when there are fewer runs)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    devices = list(devices if devices is not None else jax.devices())
    if num_runs is not None:
        devices = devices[: max(1, min(num_runs, len(devices)))]
    return Mesh(np.array(devices), (AXIS,))


@dataclass
class RunTimings:
    compile_s: float  # compiling (or loading from the persistent cache) the sharded run
    run_s: float  # executing it
    init_s: float = 0.0  # initialising parameters and envs (outside the sharded program)


class ShardedRunner:
    """Runs `trainer` for many keys at once, sharded over a mesh; compiled once per shape.

    Args:
        trainer: an object with `init(theta, key)` and `run(theta, state)`.
        mesh: the device mesh (default: all devices).
        chunk: runs vmapped together on a device (None: 1 on CPU, else all of them).
    """

    def __init__(self, trainer: Any, mesh: Any = None, chunk: int | None = None) -> None:
        import jax
        from jax.sharding import PartitionSpec as P

        self.trainer = trainer
        self.mesh = mesh if mesh is not None else make_mesh()
        self.num_devices = self.mesh.devices.size
        self.platform = self.mesh.devices.flat[0].platform
        self.chunk = chunk if chunk is not None else (1 if self.platform == "cpu" else None)
        # On one device, one run at a time: no multi-device program (the QR deadlock) and
        # init values that do not depend on how many runs there are.
        self._init = jax.jit(
            lambda theta, keys: jax.lax.map(lambda k: trainer.init(theta, k), keys)
        )

        def per_device(theta, states):
            n_local = jax.tree.leaves(states)[0].shape[0]
            size = self.chunk or n_local
            if size == 1:
                return jax.lax.map(lambda s: trainer.run(theta, s), states)
            return jax.lax.map(lambda s: trainer.run(theta, s), states, batch_size=size)

        self._run = jax.jit(
            jax.shard_map(
                per_device,
                mesh=self.mesh,
                in_specs=(P(), P(AXIS)),
                out_specs=P(AXIS),
                check_vma=False,
            )
        )
        self._compiled: dict[Any, Any] = {}

    def padded(self, n: int) -> int:
        """Runs actually computed for `n` requested (a multiple of devices x chunk)."""
        per = self.num_devices * (self.chunk or 1)
        return -(-n // per) * per

    def __call__(self, theta: Any, keys: Any, on_phase: Any = None) -> tuple[Any, RunTimings]:
        """Trains one run per key; returns host (numpy) outputs with a leading axis len(keys).

        `on_phase("compiling" | "running")`, if given, is called as each phase starts.
        """
        import jax
        import numpy as np
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        n = keys.shape[0]
        total = self.padded(n)
        if total > n:
            extra = jax.random.split(jax.random.fold_in(keys[0], 0x5EED), total - n)
            keys = jax.numpy.concatenate([keys, extra])
        t_init = time.perf_counter()
        states = jax.block_until_ready(self._init(theta, keys))
        init_s = time.perf_counter() - t_init
        states = jax.device_put(states, NamedSharding(self.mesh, P(AXIS)))
        theta = jax.device_put(theta, NamedSharding(self.mesh, P()))
        signature = jax.tree.map(lambda x: (x.shape, x.dtype), (theta, states))
        sig_key = str(jax.tree.structure(signature)) + str(jax.tree.leaves(signature))
        if on_phase:
            on_phase("compiling")
        t0 = time.perf_counter()
        compiled = self._compiled.get(sig_key)
        if compiled is None:
            compiled = self._run.lower(theta, states).compile()
            self._compiled[sig_key] = compiled
        if on_phase:
            on_phase("running")
        t1 = time.perf_counter()
        out = jax.block_until_ready(compiled(theta, states))
        t2 = time.perf_counter()
        out = jax.tree.map(lambda x: np.asarray(x)[:n], out)
        return out, RunTimings(compile_s=t1 - t0, run_s=t2 - t1, init_s=init_s)
