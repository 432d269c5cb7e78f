"""`train_es`: meta-train a learned algorithm's neural kernel with ES on PPO returns.

Fitness of a candidate theta is the final return of a full PPO run with theta in the
algorithm's slot (mean over `num_rollouts` seeds shared by the whole population, normalised by
the env's PPO return and averaged over envs). An update rule (LPG) is black-box meta-trained the
same way on whole lifetimes of its own trainer, with its 64 x 20 rollouts
(`learned/trainers.py`). `plan_es` validates everything (algorithm, envs,
every `TrainConfig`, normalisers, the output path, the run dir, a resumed checkpoint's config)
before anything is written or compiled; `train_es` then runs `evolve` and writes the artefact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metarl_cli.config import TrainConfig, build_config
from metarl_cli.errors import ConfigError
from metarl_cli.meta.es.config import ESConfig
from metarl_cli.meta.es.loop import fitness_runs, score_key
from metarl_cli.meta.es.rundir import RunDir
from metarl_cli.meta.normalisers import check_normalisers, divisors
from metarl_cli.seeds import ES_FITNESS, SELECTION, record, run_key_data


@dataclass
class ESPlan:
    """A validated run: nothing has been written yet."""

    cfg: ESConfig
    algorithm: Any
    train_configs: dict[str, TrainConfig]
    output: Path
    run_dir: RunDir
    resume: bool
    force: bool
    resume_from: int  # generation of the checkpoint being resumed (0: a fresh start)


def plan_es(
    cfg: ESConfig,
    output: str | Path,
    *,
    run_dir: str | Path | None,
    resume: bool,
    force: bool,
    writes: bool = True,
) -> ESPlan:
    """Validates a run without writing or compiling anything.

    `cfg.algo` and `cfg.envs` must be canonical ids (see `get_algorithm`, `resolve_envs`).
    `writes=False`: a follower of a multi-process run, which never touches the output or the
    run dir (process 0 writes them, on its own host), so they are not checked.
    """
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.trainers import with_train_defaults

    algorithm = get_algorithm(cfg.algo)
    defaults = with_train_defaults(algorithm, None)  # LPG: its 64 x 20 rollouts
    configs = {
        env_id: build_config(
            env_id, timesteps=cfg.timesteps, overrides=cfg.overrides, file_values=defaults
        )
        for env_id in cfg.envs
    }
    check_normalisers({e: c.ppo_normaliser for e, c in configs.items()}, fix="train on it alone")
    # The seed and the last generation's fitness runs must fit the seed streams.
    per_generation = fitness_runs(cfg)  # num_rollouts, or per antithetic pair
    run_key_data(
        ES_FITNESS, cfg.seed, per_generation, start=(cfg.num_generations - 1) * per_generation
    )
    if not writes:
        path = Path(output)
        rd = RunDir(run_dir if run_dir is not None else path.with_suffix(".run"))
        return ESPlan(cfg, algorithm, configs, path, rd, resume, force, 0)
    output, rd = RunDir.for_output(output, run_dir, resume=resume, force=force)
    resume_from = 0
    if resume:
        saved = rd.read_saved()
        if saved is not None:
            from metarl_cli.meta.es.config import config_differences
            from metarl_cli.meta.rundir import refuse_changed_config

            saved_config, resume_from = saved
            refuse_changed_config(rd.path, config_differences(saved_config, cfg))
            if resume_from > cfg.num_generations:
                raise ConfigError(
                    f"the checkpoint in {rd.path} is at generation {resume_from}, past "
                    f"--num-generations {cfg.num_generations}; raise --num-generations"
                )
    return ESPlan(cfg, algorithm, configs, output, rd, resume, force, resume_from)


class RLProblem:
    """Fitness = normalised final PPO return, one sharded program per env.

    `returns` trains any subset of a population's runs, so that the processes of a
    multi-process run can each take a slice (`meta/es/multihost.py`); the periodic evaluation
    of the mean is the same runner on one member and the selection seeds.
    """

    def __init__(self, plan: ESPlan, devices: list | None = None) -> None:
        import jax

        from metarl_cli.envs import make_env
        from metarl_cli.learned.trainers import make_trainer
        from metarl_cli.meta.es.fitness import PopulationFitness

        cfg, alg = plan.cfg, plan.algorithm
        self.cfg = cfg
        self.template = alg.init(jax.random.key(0), **cfg.architecture)
        self.start = alg.initial_theta(jax.random.key(0), **cfg.architecture)
        self.fitness_fns = {
            env_id: PopulationFitness(
                make_trainer(alg, tc, make_env(tc), cfg.architecture),  # PPO, or LPG's own
                alg.slot,
                devices=devices,
                chunk=cfg.chunk,
            )
            for env_id, tc in plan.train_configs.items()
        }
        self.normalisers = {e: tc.ppo_normaliser for e, tc in plan.train_configs.items()}
        runs = cfg.popsize * cfg.num_rollouts
        self.env_steps_per_generation = runs * sum(
            tc.env_steps for tc in plan.train_configs.values()
        )

    def returns(self, population: Any, keys: Any, runs: np.ndarray) -> dict[str, np.ndarray]:
        """env id -> final returns [len(runs)] of runs `runs` (run i: member i // len(keys),
        key i % len(keys))."""
        return {e: fn.runs(population, keys, runs) for e, fn in self.fitness_fns.items()}

    def fitness(self, population: Any, keys: Any):
        import jax

        from metarl_cli.meta.es.fitness import combine_fitness

        popsize, rollouts = jax.tree.leaves(population)[0].shape[0], keys.shape[-1]
        every = self.returns(population, keys, np.arange(popsize * rollouts))
        shaped = {e: r.reshape(popsize, rollouts) for e, r in every.items()}
        return combine_fitness(shaped, self.normalisers)

    def eval_inputs(self, mean: Any) -> tuple[Any, Any]:
        """(the mean as a one-member population, the `eval_runs` keys of the selection
        stream): the periodic evaluation's runs."""
        import jax

        from metarl_cli.seeds import run_keys

        one = jax.tree.map(lambda x: np.asarray(x)[None], mean)
        return one, run_keys(SELECTION, self.cfg.seed, self.cfg.eval_runs)

    def eval_returns(self, mean: Any) -> dict[str, np.ndarray]:
        """env id -> final returns [eval_runs] of the mean on the selection seeds."""
        one, keys = self.eval_inputs(mean)
        return self.returns(one, keys, np.arange(self.cfg.eval_runs))


def _manifest(plan: ESPlan, generation: int, **extra: Any):
    from metarl_cli.learned.io import learned_manifest

    cfg = plan.cfg
    config = {
        "es": cfg.model_dump(mode="json"),
        "train": {e: c.model_dump(mode="json") for e, c in plan.train_configs.items()},
        "fitness_seeds": record(ES_FITNESS, cfg.seed, fitness_runs(cfg)),
        **extra.pop("meta", {}),
    }
    if cfg.eval_runs:  # the periodic evaluations that --select best-eval chooses by
        config["selection_seeds"] = record(SELECTION, cfg.seed, cfg.eval_runs)
    return learned_manifest(
        plan.algorithm,
        "es",
        config,
        architecture=cfg.architecture,
        training_envs=cfg.envs,
        generation=generation,
        **extra,
    )


def _tree(theta: Any) -> dict[str, Any]:
    import jax

    return jax.tree.map(np.asarray, theta)


def _eval_score(returns: dict[str, np.ndarray], normalisers: dict[str, float | None]):
    """The evaluation record: per env the mean of the finite returns (as `metarl evaluate`
    summarises), the score the mean over envs of mean / normaliser."""
    per_env = {}
    for env_id, r in returns.items():
        v = np.asarray(r, np.float64).ravel()
        finite = v[np.isfinite(v)]
        per_env[env_id] = float(finite.mean()) if finite.size else float("nan")
    by = divisors({e: normalisers.get(e) for e in per_env})
    normalised = [per_env[e] / by[e] for e in per_env]
    return {"score": float(np.mean(normalised)), "per_env": per_env}


def _fitness_summary(progress: Any, chosen_eval: float | None) -> dict[str, float]:
    hist = progress.history
    means = [h["fitness_mean"] for h in hist]
    summary = {
        "generations": float(len(hist)),
        "first_pop_mean": means[0] if means else float("nan"),
        "final_pop_mean": means[-1] if means else float("nan"),
        "final_pop_best": hist[-1]["fitness_best"] if hist else float("nan"),
        "best_pop_mean": float(np.nanmax(means))
        if means and not np.all(np.isnan(means))
        else float("nan"),
        "failed_members_total": float(sum(h["failed"] for h in hist)),
    }
    if chosen_eval is not None:
        summary["chosen_eval_score"] = chosen_eval
    return summary


def train_es(
    plan: ESPlan,
    *,
    on_generation: Callable[[dict[str, Any]], None] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    devices: list | None = None,
    peers: Any = None,
) -> tuple[Any, Any]:
    """Runs the planned ES meta-training and writes the artefact; returns (manifest, result).

    `on_event(name, info)` reports "building", "checkpoint" (generation, eval) and "done".
    `peers`: process 0's `distributed.Peers` in a multi-process run; the population and the
    periodic evaluations are then sliced over the processes (`meta/es/multihost.py`) and a
    checkpoint is written after every generation.
    """
    from metarl_cli.artefacts import save_artefact
    from metarl_cli.meta.es.loop import evolve

    cfg, rd = plan.cfg, plan.run_dir
    t_start = time.perf_counter()
    emit = on_event or (lambda name, info: None)
    rd.prepare(resume=plan.resume, force=plan.force)
    rd.write_config(
        cfg, {"train": {e: c.model_dump(mode="json") for e, c in plan.train_configs.items()}}
    )
    emit("building", {"resume_from": plan.resume_from})
    problem: Any = RLProblem(plan, devices=devices)
    if peers is not None:
        from metarl_cli.meta.es.multihost import LeaderProblem

        problem = LeaderProblem(problem, peers)
    result = evolve(
        cfg,
        problem,
        run_dir=rd,
        resume=plan.resume,
        on_generation=on_generation,
        on_checkpoint=_checkpointer(plan, problem, emit),
        checkpoint_every_generation=peers is not None,
    )
    progress = result.progress
    chosen, theta, generation, chosen_eval = _choose(cfg, result)
    manifest = save_artefact(
        plan.output,
        _tree(theta),
        _manifest(
            plan,
            generation,
            fitness_summary=_fitness_summary(progress, chosen_eval),
            meta=_output_meta(progress, chosen, generation),
            notes=f"ES ({cfg.strategy}) {chosen} after {progress.generation} generations",
        ),
        force=plan.force,
    )
    emit("done", {"seconds": time.perf_counter() - t_start})
    return manifest, result


def _checkpointer(
    plan: ESPlan, problem: Any, emit: Callable[[str, dict[str, Any]], None]
) -> Callable[[int, Any], dict[str, Any] | None]:
    """`evolve`'s `on_checkpoint`: writes the mean as a periodic artefact and, with
    `eval_runs`, evaluates it on the selection seed stream (through the fitness runner, so
    with `--chunk` and, in a multi-process run, sliced like a population)."""
    from metarl_cli.artefacts import save_artefact

    cfg, rd = plan.cfg, plan.run_dir
    eval_steps = cfg.eval_runs * sum(tc.env_steps for tc in plan.train_configs.values())

    def on_checkpoint(generation: int, mean: Any) -> dict[str, Any] | None:
        path = rd.periodic(generation)
        save_artefact(
            path,
            _tree(mean),
            _manifest(plan, generation, notes=f"ES mean after generation {generation}"),
            force=True,
        )
        evaluation = None
        if cfg.eval_runs:
            emit("evaluating", {"generation": generation})
            returns = problem.eval_returns(mean)
            evaluation = {**_eval_score(returns, problem.normalisers), "env_steps": eval_steps}
        emit("checkpoint", {"generation": generation, "eval": evaluation, "path": str(path)})
        return evaluation

    return on_checkpoint


def _choose(cfg: ESConfig, result: Any) -> tuple[str, Any, int, float | None]:
    """(what was chosen, its theta, its generation, its evaluation score if any)."""
    progress = result.progress
    chosen, theta, chosen_eval = "final-mean", result.mean, None
    generation = progress.generation
    if cfg.select == "best-eval" and progress.evals:
        best = max(progress.evals, key=score_key)
        chosen, theta = "best-eval-mean", result.best_eval_mean
        generation, chosen_eval = int(best["generation"]), float(best["score"])
    elif progress.evals and progress.evals[-1]["generation"] == progress.generation:
        chosen_eval = float(progress.evals[-1]["score"])
    return chosen, theta, generation, chosen_eval


def _output_meta(progress: Any, chosen: str, generation: int) -> dict[str, Any]:
    """The output manifest's run record: the choice, the budgets, the fitness history."""
    history = progress.history
    return {
        "chosen": chosen,
        "chosen_generation": generation,
        "env_steps": progress.env_steps,
        "eval_env_steps": progress.eval_env_steps,
        "wall_s": round(progress.wall_s, 3),
        "history": {
            "fitness_mean": [round(h["fitness_mean"], 6) for h in history],
            "fitness_best": [round(h["fitness_best"], 6) for h in history],
            "failed": [h["failed"] for h in history],
        },
        "evals": [{"generation": e["generation"], "score": e["score"]} for e in progress.evals],
    }
