"""Evolution strategies meta-training: the resumable host loop (ask -> fitness -> tell).

OpenAI-ES (Salimans et al., 2017, arXiv:1703.03864) as used by Goldie et al. (2025,
arXiv:2507.17668): the loop knows nothing of RL. A `Problem` gives the solution template, the
starting mean and `fitness(population, key)`; `evolve` asks the evosax strategy for a
population, scores it, tells the strategy, and every `save_every_k` generations writes a
checkpoint and calls `on_checkpoint` (the RL problem writes a periodic artefact and evaluates
the mean there).

Resuming is exact: generation g draws its keys from `fold_in(key(seed), g)` and its fitness
runs from block g of the `es_fitness` seed stream (`seeds.py`), not from a key chained
through the run, and the checkpoint holds the complete strategy state, so a run
resumed from generation k continues bit for bit as the uninterrupted run would (on the same
device count). On Ctrl-C the last completed generation is checkpointed and `Interrupted`
(`errors.py`) is raised.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.errors import ConfigError, Interrupted
from metarl_cli.meta.es.config import ESConfig
from metarl_cli.meta.es.fitness import CombinedFitness, to_device_fitness
from metarl_cli.meta.es.rundir import Progress, RunDir
from metarl_cli.meta.es.strategies import current_sigma, host_lr, init_state, make_strategy, strong
from metarl_cli.seeds import ES_FITNESS, run_keys


class Problem(Protocol):
    """What `evolve` optimises (higher fitness is better)."""

    template: Any  # a pytree shaped like one solution
    start: Any  # the search mean at generation 0, shaped like `template`
    env_steps_per_generation: int

    def fitness(self, population: Any, keys: jax.Array) -> CombinedFitness:
        """Scores a population (a pytree with a leading [popsize] axis) with the
        generation's run keys of the `es_fitness` stream (`seeds.py`): [num_rollouts] shared
        by every member, or [popsize, num_rollouts] per member (`fitness_keys`)."""
        ...


@dataclass
class ESResult:
    """The outcome of `evolve`.

    Attributes:
        mean: the final search mean, shaped like the template.
        state: the final strategy state.
        progress: generation count, fitness history, evaluations, env steps, wall time.
        best_eval_mean: the mean with the best periodic evaluation (template-shaped), if any.
    """

    mean: Any
    state: Any
    progress: Progress
    best_eval_mean: Any = None


def fitness_runs(cfg: ESConfig) -> int:
    """Keys of the `es_fitness` stream one generation draws: `num_rollouts` shared by every
    member, or `num_rollouts` per antithetic pair (`task_sampling="antithetic"`)."""
    pairs = cfg.popsize // 2 if cfg.task_sampling == "antithetic" else 1
    return pairs * cfg.num_rollouts


def fitness_keys(cfg: ESConfig, generation: int) -> jax.Array:
    """Generation `generation`'s run keys (block `generation` of the `es_fitness` stream):
    [num_rollouts] shared by the population, or, antithetic, [popsize, num_rollouts] where
    OpenAI-ES's pair i (members i and i + popsize/2) shares row i."""
    n = fitness_runs(cfg)
    keys = run_keys(ES_FITNESS, cfg.seed, n, start=generation * n)
    if cfg.task_sampling != "antithetic":
        return keys
    pairs = keys.reshape(cfg.popsize // 2, cfg.num_rollouts)
    return jnp.concatenate([pairs, pairs])


def told_fitness(cfg: ESConfig, fit: CombinedFitness) -> jax.Array:
    """What the strategy is told (evosax minimises). With identity shaping a failed member
    gets the generation's worst finite fitness: `WORST_FITNESS` would swamp the step."""
    fitness = fit.fitness
    if cfg.fitness_shaping == "identity" and fit.failed.any():
        ok = fitness[~fit.failed]
        fitness = np.where(fit.failed, ok.min() if ok.size else 0.0, fitness)
    return to_device_fitness(fitness)


def _stats(fit: CombinedFitness) -> dict[str, float]:
    ok = fit.fitness[~fit.failed]
    if ok.size == 0:
        nan = float("nan")
        return {"fitness_mean": nan, "fitness_best": nan, "fitness_worst": nan, "fitness_std": nan}
    return {
        "fitness_mean": float(ok.mean()),
        "fitness_best": float(ok.max()),
        "fitness_worst": float(ok.min()),
        "fitness_std": float(ok.std()),
    }


def _nanmean(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(finite.mean()) if finite.size else float("nan")


def score_key(evaluation: dict[str, Any]) -> float:
    """An evaluation's score for comparisons (NaN ranks last)."""
    s = evaluation["score"]
    return -math.inf if math.isnan(s) else s


def evolve(
    cfg: ESConfig,
    problem: Problem,
    *,
    run_dir: RunDir | None = None,
    resume: bool = False,
    on_generation: Callable[[dict[str, Any]], None] | None = None,
    on_checkpoint: Callable[[int, Any], dict[str, Any] | None] | None = None,
    checkpoint_every_generation: bool = False,
) -> ESResult:
    """Runs (or resumes) ES until `cfg.num_generations` generations are done.

    Args:
        cfg: the ES config.
        problem: the template and fitness function.
        run_dir: where checkpoints and metrics go (None: keep nothing on disk).
        resume: continue from the run dir's checkpoint if there is one.
        on_generation: called with each generation's metrics record.
        on_checkpoint: `on_checkpoint(generation, mean)` at each checkpoint; may return an
            evaluation `{"score": float, ...}` (higher is better) to record.
        checkpoint_every_generation: also save the state after the generations between
            `save_every_k` ones (no periodic artefact or evaluation there). A multi-process
            run does: a lost peer ends every process at once, and a resume then repeats at
            most the generation in flight.

    Raises:
        Interrupted: on Ctrl-C, after checkpointing the last completed generation.
        ConfigError: resuming with a different config, or past `num_generations`.
    """
    run = _Evolution(cfg, problem, run_dir, resume)
    try:
        for g in range(run.committed[1].generation, cfg.num_generations):
            record = run.generation(g)
            if run_dir is not None:
                run_dir.append_metrics(record)
            if on_generation:
                on_generation(record)
            if (g + 1) % cfg.save_every_k == 0 or g + 1 == cfg.num_generations:
                run.checkpoint_generation(g, on_checkpoint)
            elif checkpoint_every_generation:
                run.checkpoint(*run.committed)
    except KeyboardInterrupt:
        state, progress = run.committed
        run.checkpoint(state, progress)
        saved = f"checkpoint saved in {run_dir.path}" if run_dir is not None else "nothing saved"
        raise Interrupted(f"generation {progress.generation}", saved) from None
    return run.result()


class _Evolution:
    """The loop state of one `evolve` session.

    `committed` is the (strategy state, progress) pair of the last completed generation; it
    is replaced in one assignment, so Ctrl-C always sees a consistent pair.
    """

    def __init__(self, cfg: ESConfig, problem: Problem, run_dir: RunDir | None, resume: bool):
        from jax.flatten_util import ravel_pytree

        self.cfg, self.problem, self.run_dir = cfg, problem, run_dir
        self.es, self.params = make_strategy(cfg, problem.template)
        key_init, self.key_gens = jax.random.split(jax.random.key(cfg.seed))
        state = init_state(cfg, self.es, self.params, problem.start, key_init)
        leaves, treedef = jax.tree.flatten(state)
        _, self.unravel = ravel_pytree(problem.template)
        progress = Progress()
        if resume and run_dir is not None:
            loaded = run_dir.load(cfg, leaves)
            if loaded is not None:
                saved, progress = loaded
                state = strong(jax.tree.unflatten(treedef, [jnp.asarray(x) for x in saved]))
        if progress.generation > cfg.num_generations:
            raise ConfigError(
                f"the checkpoint is at generation {progress.generation}, past "
                f"--num-generations {cfg.num_generations}; raise --num-generations"
            )
        if run_dir is not None:
            run_dir.truncate_metrics(progress.generation)
        self.committed: tuple[Any, Progress] = (state, progress)
        self.wall_before, self.t_session = progress.wall_s, time.perf_counter()
        self.gen_times: list[float] = []

    def generation(self, g: int) -> dict[str, Any]:
        """Runs generation `g` (ask, fitness, tell), commits it and returns its record."""
        cfg, problem, es = self.cfg, self.problem, self.es
        state, progress = self.committed
        t0 = time.perf_counter()
        # The middle key is unused since fitness runs draw from the es_fitness stream;
        # the split stays 3-way so that ask and tell keep their keys.
        key_ask, _, key_tell = jax.random.split(jax.random.fold_in(self.key_gens, g), 3)
        sigma = current_sigma(state)
        population, asked = es.ask(key_ask, state, self.params)
        fit = problem.fitness(population, fitness_keys(cfg, g))
        told, _ = es.tell(key_tell, population, told_fitness(cfg, fit), asked, self.params)
        told = strong(told)
        dt = time.perf_counter() - t0
        self.gen_times.append(dt)
        steady = self.gen_times[1:] or self.gen_times  # a session's first generation compiles
        remaining = cfg.num_generations - g - 1
        record: dict[str, Any] = {
            "generation": g + 1,
            **_stats(fit),
            "failed": int(fit.failed.sum()),
            "returns": {e: _nanmean(r) for e, r in fit.raw_means.items()},
            "sigma": sigma,
            "lr": host_lr(cfg, g),
            "gen_s": dt,
            "env_steps": progress.env_steps + problem.env_steps_per_generation,
            "env_steps_per_s": problem.env_steps_per_generation / max(dt, 1e-9),
            "eta_s": remaining * float(np.mean(steady)),
            # A multi-process problem adds its exchange timings (`meta/es/multihost.py`).
            **getattr(problem, "fitness_timings", {}),
        }
        new_progress = dataclasses.replace(
            progress,
            generation=g + 1,
            history=[*progress.history, record],
            env_steps=record["env_steps"],
        )
        self.committed = (told, new_progress)
        return record

    def checkpoint_generation(
        self, g: int, on_checkpoint: Callable[[int, Any], dict[str, Any] | None] | None
    ) -> None:
        """Evaluates the mean after generation `g` (if asked to), then checkpoints."""
        state, progress = self.committed
        evaluation = on_checkpoint(g + 1, self.es.get_mean(state)) if on_checkpoint else None
        if evaluation is not None:
            best = max((score_key(e) for e in progress.evals), default=-math.inf)
            progress = dataclasses.replace(
                progress,
                evals=[*progress.evals, {"generation": g + 1, **evaluation}],
                eval_env_steps=progress.eval_env_steps + evaluation.get("env_steps", 0),
            )
            if score_key(evaluation) > best or progress.best_eval_mean is None:
                progress.best_eval_mean = np.asarray(state.mean)
            self.committed = (state, progress)
        self.checkpoint(*self.committed)

    def checkpoint(self, state: Any, progress: Progress) -> None:
        if self.run_dir is not None:
            progress.wall_s = self.wall_before + time.perf_counter() - self.t_session
            self.run_dir.save(self.cfg, [np.asarray(x) for x in jax.tree.leaves(state)], progress)

    def result(self) -> ESResult:
        state, progress = self.committed
        progress.wall_s = self.wall_before + time.perf_counter() - self.t_session
        best = (
            None
            if progress.best_eval_mean is None
            else self.unravel(jnp.asarray(progress.best_eval_mean))
        )
        return ESResult(
            mean=self.es.get_mean(state), state=state, progress=progress, best_eval_mean=best
        )
