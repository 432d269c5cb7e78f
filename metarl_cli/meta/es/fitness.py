"""Population fitness: one full RL run per (member, seed), through the shared runner.

`PopulationFitness(trainer, slot)` lays a population's candidate thetas and the generation's
seeds out as one axis of `popsize x num_rollouts` runs (run i: member i // num_rollouts, seed
i % num_rollouts) and trains them with `rl/progress.py`'s `ProgressRunner` (a `ShardedRunner`
run in segments, which keeps memory flat) with one θ per run: the same sharding, `--chunk`
meaning, padding and compilation cache as `metarl evaluate`. By default every member uses the
same seeds (common random numbers), so members differ only in theta; with antithetic task
sampling each ± pair has seeds of its own (`loop.fitness_keys`).

`combine_fitness` turns per-env returns into one fitness per member as the original code does
(return / PPO normaliser, mean over envs), with failed runs (NaN or inf: a diverged run, or no
episode finished) set to the worst fitness instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.rl.progress import ProgressRunner
from metarl_cli.rl.slots import Theta

WORST_FITNESS = -1e6
"""The fitness of a member whose run failed: below any normalised return."""


def full_theta(slot: str, slot_theta: Any) -> Theta:
    """`Theta.for_slot(slot, slot_theta)` (kept for scripts that import it from here)."""
    return Theta.for_slot(slot, slot_theta)


def _final_return(out: Any) -> Any:
    return out.final_return


def run_keys_of(keys: jax.Array, runs: np.ndarray) -> jax.Array:
    """The keys of runs `runs` (run i: key i % num_rollouts of member i // num_rollouts's row
    when `keys` is [popsize, num_rollouts], of the shared [num_rollouts] otherwise)."""
    rollouts = keys.shape[-1]
    if keys.ndim == 2:
        return keys[runs // rollouts, runs % rollouts]
    return keys[runs % rollouts]


class PopulationFitness:
    """Final returns of a population's runs on one env (PPO, or an update rule's trainer).

    Args:
        trainer: a `Trainer` (`init(theta, key)`, `run(theta, state) -> TrainOutput`).
        slot: the slot the candidates fill ("drift", "optimiser", or "update_rule" for an
            update rule's own trainer, `learned/trainers.make_trainer`).
        devices: devices to shard over (default: this process's own).
        chunk: runs per device per call, as for `ShardedRunner` (None: all of a device's runs).
    """

    def __init__(
        self, trainer: Any, slot: str, devices: list | None = None, chunk: int | None = None
    ) -> None:
        self.slot = slot
        # In segments: memory stays flat over long runs (rl/progress.py).
        self.runner = ProgressRunner(trainer, chunk=chunk, devices=devices, output=_final_return)
        self.last_timings: dict[str, float] = {}

    def __call__(self, population: Any, keys: jax.Array) -> np.ndarray:
        """Returns final returns, shape [popsize, num_rollouts] (NaN where a run failed).

        Args:
            population: a pytree of candidate slot thetas with a leading [popsize] axis.
            keys: [num_rollouts] PRNG keys shared by every member, or [popsize, num_rollouts]
                keys of each member's own (antithetic task sampling).
        """
        popsize = jax.tree.leaves(population)[0].shape[0]
        rollouts = keys.shape[-1]
        return self.runs(population, keys, np.arange(popsize * rollouts)).reshape(popsize, rollouts)

    def runs(self, population: Any, keys: jax.Array, runs: np.ndarray) -> np.ndarray:
        """Final returns [len(runs)] of some of the population's runs (run i: member
        i // num_rollouts with key i % num_rollouts, of its own row when `keys` is
        [popsize, num_rollouts]), as a process of a multi-process run computes its slice.
        With `chunk=1` a run's result does not depend on which others run with it."""
        if len(runs) == 0:
            return np.zeros(0, np.float32)
        members = jax.tree.map(lambda x: x[runs // keys.shape[-1]], population)
        thetas = Theta.for_slot(self.slot, members)
        returns, timings = self.runner(thetas, run_keys_of(keys, runs), per_run=True)
        self.last_timings = {"setup_s": timings.compile_s, "run_s": timings.run_s}
        return np.asarray(returns)


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
