"""Devices, meshes and the sharded multi-seed runner.

Independent runs (seeds; later population members) are sharded along the single mesh axis
"runs" with `shard_map`, never `pmap`. XLA's arithmetic depends on batch shapes and on the
program around them, and RL amplifies the last bit, so how runs are batched changes results:

* `chunk=None` (default): each device vmaps all of its runs in one program. Fastest (4 CartPole
  seeds vmapped per CPU device run 1.45x faster than one by one), but a seed's result can differ
  in the last bits, and then more, between device counts.
* `chunk=1`: each device runs its runs one after another, unbatched. The per-run arithmetic is
  then the same on any mesh: 8 seeds on 2 devices give bit-identical results to 1 device.
* `chunk=k`: the host feeds one compiled program k runs per device at a time (bounded memory).
Parameters are initialised outside the multi-device program: an orthogonal (QR) initialiser
vmapped inside a multi-device CPU program can deadlock. A run count that does not divide over
the devices is padded with extra runs whose results are dropped; fewer runs than devices use a
sub-mesh.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
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
    compile_s: float  # setup wall time: compiling init and run (overlapped) and running init
    run_s: float  # executing the run
    init_s: float = 0.0  # the init program alone (compile + run on a first call)


class ShardedRunner:
    """Runs `trainer` for many keys at once, sharded over a mesh; compiled once per shape.

    Args:
        trainer: an object with `init(theta, key)` and `run(theta, state)`.
        mesh: the device mesh (default: all devices).
        chunk: runs vmapped together on a device (None: all of a device's runs; 1: unbatched,
            results independent of the device count).
    """

    def __init__(self, trainer: Any, mesh: Any = None, chunk: int | None = None) -> None:
        import jax
        from jax.sharding import PartitionSpec as P

        self.trainer = trainer
        self.mesh = mesh if mesh is not None else make_mesh()
        self.num_devices = self.mesh.devices.size
        if chunk is not None and chunk < 1:
            from metarl_cli.errors import ConfigError

            raise ConfigError(f"--chunk must be at least 1, got {chunk}")
        self.chunk = chunk
        # On one device, one run at a time: no multi-device program (the QR deadlock) and
        # init values that do not depend on how many runs there are.
        self._init = jax.jit(
            lambda theta, keys: jax.lax.map(lambda k: trainer.init(theta, k), keys)
        )

        def per_device(theta, states):
            if self.chunk == 1:  # unbatched: the same arithmetic on any mesh
                return jax.lax.map(lambda s: trainer.run(theta, s), states)
            return jax.vmap(trainer.run, in_axes=(None, 0))(theta, states)

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

    def group_size(self, n: int) -> int:
        """Runs per call of the compiled program (a multiple of the device count)."""
        per_device = self.chunk if self.chunk is not None else -(-n // self.num_devices)
        return per_device * self.num_devices

    def padded(self, n: int) -> int:
        """Runs actually computed for `n` requested (whole groups; extras are dropped)."""
        group = self.group_size(n)
        return -(-n // group) * group

    def __call__(self, theta: Any, keys: Any, on_phase: Any = None) -> tuple[Any, RunTimings]:
        """Trains one run per key; returns host (numpy) outputs with a leading axis len(keys).

        `on_phase("compiling" | "running")`, if given, is called as each phase starts.
        """
        import jax
        import numpy as np
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        n = keys.shape[0]
        total, group = self.padded(n), self.group_size(n)
        if total > n:
            extra = jax.random.split(jax.random.fold_in(keys[0], 0x5EED), total - n)
            keys = jax.numpy.concatenate([keys, extra])
        replicated, sharded = NamedSharding(self.mesh, P()), NamedSharding(self.mesh, P(AXIS))
        theta = jax.device_put(theta, replicated)
        # Compile the sharded program from abstract shapes in a second thread while the init
        # program compiles and runs here: the two XLA compilations overlap on two cores.
        abstract = jax.eval_shape(self._init, theta, keys)
        abstract = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((group, *a.shape[1:]), a.dtype, sharding=sharded),
            abstract,
        )
        signature = jax.tree.map(lambda x: (x.shape, x.dtype), (theta, abstract))
        sig_key = str(jax.tree.structure(signature)) + str(jax.tree.leaves(signature))
        if on_phase:
            on_phase("compiling")
        t0 = time.perf_counter()
        compiled = self._compiled.get(sig_key)
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = None
            if compiled is None:
                future = pool.submit(lambda: self._run.lower(theta, abstract).compile())
            states = jax.block_until_ready(self._init(theta, keys))
            init_s = time.perf_counter() - t0
            if future is not None:
                compiled = self._compiled[sig_key] = future.result()
        groups = [
            jax.device_put(jax.tree.map(lambda x, i=i: x[i : i + group], states), sharded)
            for i in range(0, total, group)
        ]
        if on_phase:
            on_phase("running")
        t1 = time.perf_counter()
        outs = [jax.block_until_ready(compiled(theta, g)) for g in groups]
        t2 = time.perf_counter()
        out = jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs])[:n], *outs)
        # compile_s is the wall time of the overlapped setup (both compilations and the init
        # run); init_s is the init alone, which on later calls is just its execution.
        return out, RunTimings(compile_s=t1 - t0, run_s=t2 - t1, init_s=init_s)
