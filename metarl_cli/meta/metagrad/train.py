"""`metarl train metagrad`: plan, then the meta-gradient loop with resume, then the artefact.

`plan_metagrad` validates everything (algorithm, environment, agent preset, sizes, the output
and run dir) before anything is compiled or written. `train_metagrad(plan)` runs the host loop:
one jitted meta-step per iteration (`step.py`), a metrics line per step, and at every
`save_every_k` steps a checkpoint, theta as a periodic artefact and an in-distribution
evaluation (fresh agents trained for one lifetime on the `selection` seed stream). Ctrl-C saves
the last completed step and raises `Interrupted`. The result is theta after the last step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from metarl_cli.artefacts import save_artefact
from metarl_cli.config import TrainConfig, build_config
from metarl_cli.envs import make_env
from metarl_cli.errors import ConfigError, Interrupted
from metarl_cli.learned.base import LearnedAlgorithm, get_algorithm
from metarl_cli.learned.io import learned_manifest
from metarl_cli.meta.metagrad.config import MetagradConfig
from metarl_cli.meta.metagrad.rundir import Progress, RunDir
from metarl_cli.meta.metagrad.step import (
    make_meta_step,
    meta_optimiser,
    shardings,
    usable_devices,
)
from metarl_cli.rl.lpg_agent import AgentConfig, LPGAgent, agent_for
from metarl_cli.rl.lpg_train import LPGTrainer
from metarl_cli.rl.parallel import ShardedRunner, make_mesh
from metarl_cli.seeds import SELECTION, run_keys

# The choices where the sources disagree, recorded in every artefact (config.py's doc).
DECISIONS = {
    "lpg_max_grad_norm": "None by default: the reference's Adam ignores Table 9's 0.55",
    "value_baseline": "trained by default; 'frozen' is the reference code's (its update is lost)",
    "agent_preset": "paper Tables 3/7 by default; 'tabular' is the reference's all_shortlife agent",
    "lpg_done_input": "d = terminated or truncated (the reference's); GAE bootstraps truncation",
}


@dataclass(frozen=True)
class MetagradPlan:
    """A checked meta-gradient run (the scaffold's fields plus what the loop needs)."""

    cfg: MetagradConfig
    output: Path
    run_dir: RunDir
    force: bool
    resume_from: int
    algorithm: Any
    train_config: TrainConfig  # one agent lifetime of rollouts on the env
    agent: AgentConfig
    lifetime: int


def lifetime_config(env_id: str, updates: int, num_envs: int, num_steps: int) -> TrainConfig:
    """A `TrainConfig` of `updates` rollouts of `num_envs` x `num_steps` on `env_id`."""
    return build_config(
        env_id,
        timesteps=updates * num_envs * num_steps,
        overrides={
            "num_envs": num_envs, "num_steps": num_steps, "num_minibatches": 1,
            "curve_points": min(20, updates),
        },
    )  # fmt: skip


def plan_metagrad(
    cfg: MetagradConfig, output: str | Path, *, run_dir: str | Path | None, resume: bool,
    force: bool,
) -> MetagradPlan:  # fmt: skip
    """Checks everything; writes, compiles and runs nothing."""
    algorithm = get_algorithm(cfg.algo)
    if algorithm.slot != "update_rule":
        raise ConfigError(
            f"metarl train metagrad meta-trains update rules; {algorithm.name} fills the "
            f"{algorithm.slot} slot: use metarl train es --algo {algorithm.name}"
        )
    lifetime = cfg.lifetime or _default_lifetime(cfg.env_id)
    agent = agent_for(cfg.env_id, cfg.agent_preset)
    train_config = lifetime_config(cfg.env_id, lifetime, cfg.num_envs, cfg.num_steps)
    # A resumed run rewrites its own output when it finishes.
    out, rd = RunDir.for_output(output, run_dir, resume=resume, force=force or resume)
    resume_from = 0
    if resume:
        saved = rd.read_saved()
        resume_from = 0 if saved is None else saved[1]
        if resume_from >= cfg.meta_steps:
            raise ConfigError(
                f"the run in {rd.path} already did {resume_from} meta-steps; raise --meta-steps"
            )
    return MetagradPlan(cfg, out, rd, force, resume_from, algorithm, train_config, agent, lifetime)


def _default_lifetime(env_id: str) -> int:
    if env_id.startswith("gridworld/"):
        from metarl_cli.envs.gridworld import DISTRIBUTIONS

        return DISTRIBUTIONS.get(env_id.split("/", 1)[1]).lifetime
    raise ConfigError(f"{env_id} has no default agent lifetime; pass --lifetime")


@dataclass
class MetagradResult:
    """The final theta and the run's progress."""

    theta: Any
    progress: Progress


# The compiled programs of a configuration, kept for later runs in this process (a resumed
# run, tests, a notebook): building and compiling them is most of a short run's time.
_PROGRAM_CACHE: dict[tuple, Any] = {}


def _programs(plan: MetagradPlan) -> tuple[LPGAgent, Any, Any, ShardedRunner, Any]:
    """(agent, jitted meta-step, jitted agent init, evaluation runner, mesh) for `plan`."""
    cfg = plan.cfg
    same = cfg.model_dump_json(exclude={"meta_steps", "save_every_k", "seed"})
    devices = usable_devices(cfg, jax.devices())
    key = (same, plan.agent, plan.lifetime, plan.train_config, tuple(d.id for d in devices))
    if key not in _PROGRAM_CACHE:
        rule = plan.algorithm.kernel(None, cfg.architecture)
        env = make_env(plan.train_config)
        agent = LPGAgent(plan.agent, env, rule, cfg.num_steps)
        mesh = make_mesh(devices=devices)
        meta_step = make_meta_step(cfg, agent, plan.lifetime, mesh)
        init = jax.jit(lambda keys: jax.lax.map(agent.init, keys))
        evaluator = LPGTrainer(plan.train_config, env, rule, plan.agent)
        runner = ShardedRunner(evaluator, make_mesh(max(cfg.eval_runs, 1)))
        _PROGRAM_CACHE.clear()  # one configuration at a time: programs hold device memory
        _PROGRAM_CACHE[key] = (agent, meta_step, init, runner, mesh)
    return _PROGRAM_CACHE[key]


class _Run:
    """The loop state of one `train_metagrad` session."""

    def __init__(self, plan: MetagradPlan, on_event: Callable[[str, dict], None]) -> None:
        cfg = self.cfg = plan.cfg
        self.plan, self.on_event = plan, on_event
        arch = cfg.architecture
        on_event("building", {})
        self.agent, self.meta_step, self.init_agents, self.runner, mesh = _programs(plan)
        root = jax.random.key(cfg.seed)
        self.step_key = jax.random.fold_in(root, 1)
        theta = plan.algorithm.init(jax.random.fold_in(root, 2), **arch)
        opt_state = meta_optimiser(cfg).init(theta)
        agents = self.init_agents(jax.random.split(jax.random.fold_in(root, 0), cfg.num_agents))
        self.state, self.progress = (theta, opt_state, agents), Progress()
        self.treedefs = [jax.tree.structure(x) for x in self.state]
        if plan.resume_from:
            self._restore()
        rep, shard = shardings(mesh)
        theta, opt_state, agents = self.state
        self.state = (
            jax.device_put(theta, rep), jax.device_put(opt_state, rep),
            jax.device_put(agents, shard),
        )  # fmt: skip

    def _restore(self) -> None:
        templates = {
            n: jax.tree.leaves(x)
            for n, x in zip(("theta", "opt", "agents"), self.state, strict=True)
        }
        loaded = self.plan.run_dir.load(self.cfg, templates)
        if loaded is None:
            return
        parts, self.progress = loaded
        self.state = tuple(
            jax.tree.unflatten(td, parts[n])
            for td, n in zip(self.treedefs, ("theta", "opt", "agents"), strict=True)
        )
        self.plan.run_dir.truncate_metrics(self.progress.step)

    def step(self, g: int) -> dict[str, Any]:
        cfg, t0 = self.cfg, time.perf_counter()
        theta, opt_state, agents = self.state
        theta, opt_state, agents, stats, grad_norm = self.meta_step(
            theta, opt_state, agents, jax.random.fold_in(self.step_key, g)
        )
        loss = float(np.mean(np.asarray(stats.loss)))  # waits for the step
        dt = time.perf_counter() - t0
        count = float(np.sum(np.asarray(stats.ep_count)))
        ret = float(np.sum(np.asarray(stats.ep_sum)) / count) if count else math.nan
        updates = cfg.num_agents * cfg.agent_updates
        steps = cfg.num_agents * (cfg.agent_updates + 1) * cfg.num_envs * cfg.num_steps
        p = self.progress
        self.state = (theta, opt_state, agents)
        p.step, p.env_steps, p.wall_s = g + 1, p.env_steps + steps, p.wall_s + dt
        record = {
            "step": g + 1, "meta_loss": loss, "agent_return": ret, "episodes": int(count),
            "entropy": float(np.mean(np.asarray(stats.entropy))), "grad_norm": float(grad_norm),
            "agent_updates_per_s": updates / dt, "env_steps_per_s": steps / dt,
            "env_steps": p.env_steps, "step_s": dt, "eta_s": dt * (cfg.meta_steps - g - 1),
        }  # fmt: skip
        p.last = record
        return record

    def evaluate(self) -> dict[str, Any] | None:
        cfg = self.cfg
        if not cfg.eval_runs:
            return None
        self.on_event("evaluating", {"step": self.progress.step})
        runner = self.runner
        keys = run_keys(SELECTION, cfg.seed, cfg.eval_runs)
        out, _ = runner(self.state[0], keys)
        returns = [float(x) for x in out.final_return]
        score = float(np.nanmean(returns)) if np.isfinite(returns).any() else math.nan
        self.progress.eval_env_steps += cfg.eval_runs * self.plan.train_config.env_steps
        record = {"step": self.progress.step, "score": score, "returns": returns}
        self.progress.evals.append(record)
        return record

    def checkpoint(self) -> None:
        rd, p = self.plan.run_dir, self.progress
        names = ("theta", "opt", "agents")
        parts = {
            n: [np.asarray(x) for x in jax.tree.leaves(s)]
            for n, s in zip(names, self.state, strict=True)
        }
        rd.save(self.cfg, parts, p)
        write_artefact(self.plan, rd.periodic(p.step), self.state[0], p, force=True)


def train_metagrad(
    plan: MetagradPlan,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> tuple[Any, MetagradResult]:
    """Runs the plan (module doc); returns (manifest, result)."""
    cfg, rd = plan.cfg, plan.run_dir
    rd.prepare(resume=bool(plan.resume_from), force=plan.force)
    rd.write_config(cfg, {"train": plan.train_config.model_dump(), "agent": vars(plan.agent)})
    run = _Run(plan, on_event or (lambda name, info: None))
    try:
        for g in range(run.progress.step, cfg.meta_steps):
            record = run.step(g)
            rd.append_metrics(record)
            if on_step:
                on_step(record)
            if (g + 1) % cfg.save_every_k == 0 or g + 1 == cfg.meta_steps:
                ev = run.evaluate()
                run.checkpoint()
                if on_event:
                    on_event("checkpoint", {"step": g + 1, "eval": ev})
    except KeyboardInterrupt:
        run.checkpoint()  # the last completed step (state and progress change together)
        raise Interrupted(
            f"meta-step {run.progress.step}", f"checkpoint saved in {rd.path}"
        ) from None
    manifest = write_artefact(plan, plan.output, run.state[0], run.progress, force=True)
    return manifest, MetagradResult(run.state[0], run.progress)


def write_artefact(plan: MetagradPlan, path: Path, theta: Any, p: Progress, *, force: bool):
    """theta as an artefact whose manifest names the meta-learner, its config and decisions."""
    alg: LearnedAlgorithm = plan.algorithm
    evals = [e["score"] for e in p.evals if math.isfinite(e["score"])]
    summary = {"meta_loss": p.last.get("meta_loss", math.nan)}
    summary["agent_return"] = p.last.get("agent_return", math.nan)
    if evals:
        summary |= {"eval_last": evals[-1], "eval_best": max(evals)}
    config = {
        **plan.cfg.model_dump(mode="json"), "lifetime_updates": plan.lifetime,
        "agent": {k: v for k, v in vars(plan.agent).items()}, "decisions": DECISIONS,
        "env_steps": p.env_steps, "eval_env_steps": p.eval_env_steps, "wall_s": p.wall_s,
        "evals": p.evals,
    }  # fmt: skip
    manifest = learned_manifest(
        alg, "metagrad", config, architecture=dict(plan.cfg.architecture),
        training_envs=plan.cfg.envs, generation=p.step, fitness_summary=summary,
    )  # fmt: skip
    return save_artefact(path, {k: v for k, v in theta.items()}, manifest, force=force)
