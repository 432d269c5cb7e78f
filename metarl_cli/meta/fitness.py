"""Population fitness: one full PPO run per (member, seed), sharded over devices.

`PopulationFitness(trainer, slot)` compiles one program per env: the population's candidate
thetas and the trainer states are laid out as one axis of `popsize x num_rollouts` runs,
sharded along the mesh axis "runs" with `shard_map`, and vmapped on each device. Every member
uses the same seeds (common random numbers), so members differ only in theta. Trainer states
are initialised outside the sharded program (see `rl/parallel.py`: a QR initialiser vmapped
inside a multi-device CPU program can deadlock). A run count that does not divide over the
devices is padded with copies of the first run, whose results are dropped.

`combine_fitness` turns per-env returns into one fitness per member as the original code does
(return / PPO normaliser, mean over envs), with failed runs (NaN or inf: a diverged run, or no
episode finished) set to the worst fitness instead of crashing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from metarl_cli.rl.parallel import AXIS, make_mesh
from metarl_cli.rl.slots import Theta

WORST_FITNESS = -1e6
"""The fitness of a member whose run failed: below any normalised return."""


def full_theta(slot: str, slot_theta: Any) -> Theta:
    """`Theta.for_slot(slot, slot_theta)` (kept for scripts that import it from here)."""
    return Theta.for_slot(slot, slot_theta)


class PopulationFitness:
    """Final returns of a population's PPO runs on one env.

    Args:
        trainer: a `Trainer` (`init(theta, key)`, `run(theta, state) -> TrainOutput`).
        slot: the slot the candidates fill ("drift" or "optimiser").
        devices: devices to shard over (default: all).
        chunk: runs vmapped together per device per call (None: all of a device's runs).
    """

    def __init__(
        self, trainer: Any, slot: str, devices: list | None = None, chunk: int | None = None
    ) -> None:
        self.trainer, self.slot, self.chunk = trainer, slot, chunk
        self.devices = list(devices if devices is not None else jax.devices())
        self._compiled: dict[Any, Any] = {}
        self.last_timings: dict[str, float] = {}

        def init_one(args):
            member, key = args
            return trainer.init(Theta.for_slot(slot, member), key)

        # lax.map: one run at a time on one device (no multi-device program, see above).
        self._init = jax.jit(lambda members, keys: jax.lax.map(init_one, (members, keys)))

        def per_device(members, states):
            def run_one(member, state):
                return trainer.run(Theta.for_slot(slot, member), state).final_return

            return jax.vmap(run_one)(members, states)

        self._per_device = per_device

    def _program(self, mesh):
        return jax.jit(
            jax.shard_map(
                self._per_device,
                mesh=mesh,
                in_specs=(P(AXIS), P(AXIS)),
                out_specs=P(AXIS),
                check_vma=False,
            )
        )

    def __call__(self, population: Any, keys: jax.Array) -> np.ndarray:
        """Returns final returns, shape [popsize, num_rollouts] (NaN where a run failed).

        Args:
            population: a pytree of candidate slot thetas with a leading [popsize] axis.
            keys: [num_rollouts] PRNG keys shared by every member.
        """
        popsize = jax.tree.leaves(population)[0].shape[0]
        rollouts = keys.shape[0]
        n = popsize * rollouts
        mesh = make_mesh(n, self.devices)
        num_devices = mesh.devices.size
        per_device = self.chunk if self.chunk is not None else -(-n // num_devices)
        group = per_device * num_devices
        total = -(-n // group) * group
        # Run i is member i // rollouts with seed i % rollouts; padding repeats run 0.
        member_idx = np.concatenate(
            [np.repeat(np.arange(popsize), rollouts), np.zeros(total - n, int)]
        )
        seed_idx = np.concatenate([np.tile(np.arange(rollouts), popsize), np.zeros(total - n, int)])
        members = jax.tree.map(lambda x: x[member_idx], population)
        run_keys = keys[seed_idx]
        sharded = NamedSharding(mesh, P(AXIS))

        t0 = time.perf_counter()
        sig = (group, num_devices, str(jax.tree.map(lambda x: (x.shape[1:], x.dtype), members)))
        compiled = self._compiled.get(sig)
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = None
            if compiled is None:
                # Compile the sharded program from shapes while init compiles and runs here.
                abstract = jax.eval_shape(self._init, members, run_keys)

                def shaped(a):
                    return jax.ShapeDtypeStruct((group, *a.shape[1:]), a.dtype, sharding=sharded)

                args = (jax.tree.map(shaped, members), jax.tree.map(shaped, abstract))
                future = pool.submit(lambda: self._program(mesh).lower(*args).compile())
            states = jax.block_until_ready(self._init(members, run_keys))
            if future is not None:
                compiled = self._compiled[sig] = future.result()
        t1 = time.perf_counter()
        outs = []
        for i in range(0, total, group):
            part = jax.tree.map(
                lambda x, i=i: jax.device_put(x[i : i + group], sharded), (members, states)
            )
            outs.append(compiled(*part))
        result = np.concatenate([np.asarray(o) for o in jax.block_until_ready(outs)])
        t2 = time.perf_counter()
        self.last_timings = {"setup_s": t1 - t0, "run_s": t2 - t1}
        return result[:n].reshape(popsize, rollouts)


@dataclass(frozen=True)
class CombinedFitness:
    """One generation's fitness.

    Attributes:
        fitness: [popsize] mean over envs of (mean return over rollouts) / normaliser, with
            failed members set to `WORST_FITNESS`; higher is better.
        raw_means: env id -> [popsize] mean raw return over rollouts (NaN where failed).
        failed: [popsize] bool, a member with a non-finite return on any env.
    """

    fitness: np.ndarray
    raw_means: dict[str, np.ndarray]
    failed: np.ndarray


def combine_fitness(
    returns: dict[str, np.ndarray], normalisers: dict[str, float | None]
) -> CombinedFitness:
    """Per-env returns [popsize, num_rollouts] -> one fitness per member (higher is better).

    Normalisers follow `meta/normalisers.py` (one env may have none; several must all have one).
    """
    from metarl_cli.meta.normalisers import divisors

    by = divisors({e: normalisers.get(e) for e in returns})
    raw_means, normalised = {}, []
    for env_id, r in returns.items():
        mean = np.asarray(r, np.float64).mean(axis=1)
        raw_means[env_id] = mean
        normalised.append(mean / by[env_id])
    stacked = np.stack(normalised)
    failed = ~np.isfinite(stacked).all(axis=0)
    fitness = np.where(failed, WORST_FITNESS, np.nan_to_num(stacked).mean(axis=0))
    return CombinedFitness(fitness=fitness, raw_means=raw_means, failed=failed)


def to_device_fitness(fitness: np.ndarray) -> jax.Array:
    """evosax minimises: the negated fitness, float32."""
    return jnp.asarray(-fitness, jnp.float32)
