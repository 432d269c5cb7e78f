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

Every RL evaluation goes through `ShardedRunner`: `evaluate`, distillation and symbolic
selection, discover, and ES fitness (`per_run=True`: one θ per run, a population member each).
Parameters are initialised outside the multi-device program: an orthogonal (QR) initialiser
vmapped inside a multi-device CPU program can deadlock. A run count that does not divide into
whole groups is padded with copies of run 0 (its key, and its θ when θ is per run), whose
results are dropped; fewer runs than devices use a sub-mesh.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AXIS = "runs"


def expose_cpu_cores(env: dict[str, str] | None = None) -> bool:
    """Makes XLA:CPU expose every core as a device, unless the user set XLA_FLAGS.

    Must run before JAX is imported. Returns whether the flag was set.
    """
    target: MutableMapping[str, str] = os.environ if env is None else env
    if "XLA_FLAGS" in target:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    target["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={max(1, cores or 1)}"
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
    """A 1-D mesh over this process's devices (or the first `num_runs` when there are fewer
    runs). In a multi-process run each process shards its own runs over its own devices
    (`jax.local_devices()`; a global mesh would need cross-process programs)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    devices = list(devices if devices is not None else jax.local_devices())
    if num_runs is not None:
        devices = devices[: max(1, min(num_runs, len(devices)))]
    return Mesh(np.array(devices), (AXIS,))


@dataclass
class RunTimings:
    compile_s: float  # setup wall time: compiling init and run (overlapped) and running init
    run_s: float  # executing the run
    init_s: float = 0.0  # the init program alone (compile + run on a first call)


def check_chunk(chunk: int | None) -> None:
    """Refuses a `--chunk` below 1 (None is allowed: all of a device's runs at once)."""
    if chunk is not None and chunk < 1:
        from metarl_cli.errors import ConfigError

        raise ConfigError(f"--chunk must be at least 1, got {chunk}")


def _identity(out: Any) -> Any:
    return out


class ShardedRunner:
    """Runs `trainer` for many keys at once, sharded over a mesh; compiled once per shape.

    Args:
        trainer: an object with `init(theta, key)` and `run(theta, state)`.
        mesh: the device mesh (default: per call, `make_mesh(runs, devices)`, a sub-mesh when
            there are fewer runs than devices).
        chunk: runs per device per call of the compiled program (None: all of a device's runs,
            vmapped; 1: one after another, unbatched, results independent of the device count;
            k: k runs vmapped, bounded memory).
        devices: the devices of the default mesh (default: this process's own).
        output: applied to each run's `TrainOutput` inside the program (default: all of it);
            what it drops is never computed.
    """

    def __init__(
        self,
        trainer: Any,
        mesh: Any = None,
        chunk: int | None = None,
        *,
        devices: list | None = None,
        output: Any = None,
    ) -> None:
        import jax

        check_chunk(chunk)
        self.trainer, self.mesh, self.chunk = trainer, mesh, chunk
        self.devices = devices
        self._output = output or _identity
        # On one device, one run at a time: no multi-device program (the QR deadlock) and
        # init values that do not depend on how many runs there are.
        self._init = jax.jit(
            lambda theta, keys: jax.lax.map(lambda k: trainer.init(theta, k), keys)
        )
        self._init_per_run = jax.jit(
            lambda thetas, keys: jax.lax.map(lambda tk: trainer.init(*tk), (thetas, keys))
        )
        self._programs: dict[tuple[int, bool], Any] = {}
        self._compiled: dict[Any, Any] = {}

    def mesh_for(self, n: int) -> Any:
        """The mesh `n` runs are sharded over."""
        return self.mesh if self.mesh is not None else make_mesh(n, self.devices)

    def _program(self, mesh: Any, per_run: bool) -> Any:
        """The jitted sharded program for `mesh` (θ replicated, or sharded with the runs)."""
        import jax
        from jax.sharding import PartitionSpec as P

        key = (mesh.devices.size, per_run)
        if key not in self._programs:
            run, out = self.trainer.run, self._output

            def one(theta, state):
                return out(run(theta, state))

            def per_device(theta, states):
                if self.chunk == 1:  # unbatched: the same arithmetic on any mesh
                    if per_run:
                        return jax.lax.map(lambda ts: one(*ts), (theta, states))
                    return jax.lax.map(lambda s: one(theta, s), states)
                return jax.vmap(one, in_axes=(0 if per_run else None, 0))(theta, states)

            self._programs[key] = jax.jit(
                jax.shard_map(
                    per_device,
                    mesh=mesh,
                    in_specs=(P(AXIS) if per_run else P(), P(AXIS)),
                    out_specs=P(AXIS),
                    check_vma=False,
                )
            )
        return self._programs[key]

    def group_size(self, n: int) -> int:
        """Runs per call of the compiled program (a multiple of the device count)."""
        num_devices = self.mesh_for(n).devices.size
        per_device = self.chunk if self.chunk is not None else -(-n // num_devices)
        return per_device * num_devices

    def padded(self, n: int) -> int:
        """Runs actually computed for `n` requested (whole groups; extras are dropped)."""
        group = self.group_size(n)
        return -(-n // group) * group

    def __call__(
        self, theta: Any, keys: Any, on_phase: Any = None, *, per_run: bool = False
    ) -> tuple[Any, RunTimings]:
        """Trains one run per key; returns host (numpy) outputs with a leading axis len(keys).

        Args:
            theta: the trainer's θ, shared by every run; with `per_run`, one θ per run (a
                leading axis len(keys) on every leaf).
            keys: [runs] PRNG keys.
            on_phase: `on_phase("compiling" | "running")`, called as each phase starts.
        """
        import jax
        import numpy as np
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        n = keys.shape[0]
        mesh = self.mesh_for(n)
        total, group = self.padded(n), self.group_size(n)
        if total > n:  # padding: copies of run 0, dropped below
            pad = np.concatenate([np.arange(n), np.zeros(total - n, int)])
            keys = keys[pad]
            if per_run:
                theta = jax.tree.map(lambda x: x[pad], theta)
        replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
        init = self._init_per_run if per_run else self._init
        if not per_run:
            theta = jax.device_put(theta, replicated)

        def shaped(a: Any) -> Any:
            return jax.ShapeDtypeStruct((group, *a.shape[1:]), a.dtype, sharding=sharded)

        # Compile the sharded program from abstract shapes in a second thread while the init
        # program compiles and runs here: the two XLA compilations overlap on two cores.
        abstract = jax.tree.map(shaped, jax.eval_shape(init, theta, keys))
        theta_abstract = jax.tree.map(shaped, theta) if per_run else theta
        signature = jax.tree.map(lambda x: (x.shape, x.dtype), (theta_abstract, abstract))
        sig_key: tuple[Any, ...] = (mesh.devices.size, per_run, str(jax.tree.structure(signature)))
        sig_key += (str(jax.tree.leaves(signature)),)
        if on_phase:
            on_phase("compiling")
        t0 = time.perf_counter()
        compiled = self._compiled.get(sig_key)
        program = self._program(mesh, per_run)
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = None
            if compiled is None:
                future = pool.submit(lambda: program.lower(theta_abstract, abstract).compile())
            states = jax.block_until_ready(init(theta, keys))
            init_s = time.perf_counter() - t0
            if future is not None:
                compiled = self._compiled[sig_key] = future.result()

        def part(tree: Any, i: int) -> Any:
            return jax.device_put(jax.tree.map(lambda x: x[i : i + group], tree), sharded)

        groups = [
            (part(theta, i) if per_run else theta, part(states, i)) for i in range(0, total, group)
        ]
        if on_phase:
            on_phase("running")
        t1 = time.perf_counter()
        assert compiled is not None  # cached or just compiled
        outs = [jax.block_until_ready(compiled(*g)) for g in groups]
        t2 = time.perf_counter()
        out = jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs])[:n], *outs)
        # compile_s is the wall time of the overlapped setup (both compilations and the init
        # run); init_s is the init alone, which on later calls is just its execution.
        return out, RunTimings(compile_s=t1 - t0, run_s=t2 - t1, init_s=init_s)
