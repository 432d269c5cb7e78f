"""`metarl train metagrad`: meta-train an update rule (LPG) with meta-gradients."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from metarl_cli.cli._options import (
    AlgoOpt,
    EnvsOpt,
    ForceOpt,
    JsonOpt,
    OutputOpt,
    ResumeOpt,
    RunDirOpt,
    SeedOpt,
)
from metarl_cli.cli._output import MAX_SIZE, BarReporter, err, out, print_json, resume_hint

# --preset: values for the flags not given (paper: Table 9; smoke: minutes on 2 CPU cores).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "smoke": dict(
        num_agents=8, meta_steps=20, lifetime=10, num_mini_batches=4, save_every_k=10,
        eval_runs=2,
    ),
}  # fmt: skip

PresetOpt = Annotated[
    str, typer.Option(help="Defaults for the flags not given: paper (Table 9) or smoke.")
]
NumAgentsOpt = Annotated[
    int | None, typer.Option(help="Agents trained in parallel [paper: 512].", max=MAX_SIZE)
]
MetaStepsOpt = Annotated[int | None, typer.Option(help="Meta-gradient steps [5000].")]
AgentUpdatesOpt = Annotated[
    int | None, typer.Option(help="Agent updates differentiated through per step [5].")
]
LrOpt = Annotated[float | None, typer.Option(help="Meta-optimiser Adam step size [1e-4].")]
MiniBatchesOpt = Annotated[
    int | None, typer.Option(help="Sequential chunks of agents (memory only) [64].")
]
AgentPresetOpt = Annotated[
    str | None, typer.Option(help="paper (MLP 32, Adam 1e-3), tabular (SGD 40) or minatar.")
]
ValueBaselineOpt = Annotated[
    str | None, typer.Option(help="trained, or frozen (the reference code's) [trained].")
]
ClipOpt = Annotated[
    float | None, typer.Option(help="Clip the meta-gradient's norm (Table 9: 0.55) [none].")
]
LifetimeOpt = Annotated[
    int | None, typer.Option(help="Agent updates per lifetime [the distribution's].")
]
HsizeOpt = Annotated[
    int | None, typer.Option(help="GRU width (embedding: hsize/16) [256].", max=MAX_SIZE)
]
SaveOpt = Annotated[int | None, typer.Option(help="Steps between checkpoints [50].")]
EvalRunsOpt = Annotated[int | None, typer.Option(help="Fresh agents per evaluation (0: none) [8].")]
NumEnvsOpt = Annotated[int | None, typer.Option(help="Envs per agent [64].")]
RematOpt = Annotated[
    bool | None, typer.Option(help="Recompute inner updates in the backward pass [on].")
]


def metagrad(
    algo: AlgoOpt,
    envs: EnvsOpt,
    output: OutputOpt,
    preset: PresetOpt = "paper",
    num_agents: NumAgentsOpt = None,
    meta_steps: MetaStepsOpt = None,
    agent_updates: AgentUpdatesOpt = None,
    lr: LrOpt = None,
    num_mini_batches: MiniBatchesOpt = None,
    agent_preset: AgentPresetOpt = None,
    value_baseline: ValueBaselineOpt = None,
    lpg_max_grad_norm: ClipOpt = None,
    lifetime: LifetimeOpt = None,
    hsize: HsizeOpt = None,
    num_envs: NumEnvsOpt = None,
    remat: RematOpt = None,
    save_every_k: SaveOpt = None,
    eval_runs: EvalRunsOpt = None,
    seed: SeedOpt = 0,
    run_dir: RunDirOpt = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Meta-train an update rule (LPG) by meta-gradients on a gridworld distribution."""
    from metarl_cli.envs import resolve_envs
    from metarl_cli.errors import ConfigError
    from metarl_cli.learned.base import get_algorithm, resolve_architecture
    from metarl_cli.meta.metagrad.config import MetagradConfig
    from metarl_cli.meta.metagrad.train import plan_metagrad

    if preset not in PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}; presets: {', '.join(PRESETS)}")
    given = dict(
        num_agents=num_agents, meta_steps=meta_steps, agent_updates=agent_updates, lr=lr,
        num_mini_batches=num_mini_batches, agent_preset=agent_preset,
        value_baseline=value_baseline, lpg_max_grad_norm=lpg_max_grad_norm, lifetime=lifetime,
        num_envs=num_envs, remat=remat, save_every_k=save_every_k, eval_runs=eval_runs,
    )  # fmt: skip
    values = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
    env_ids = resolve_envs(envs)
    if len(env_ids) != 1:
        raise ConfigError(f"metagrad meta-trains on one level distribution, got {len(env_ids)}")
    algorithm = get_algorithm(algo)
    cfg = MetagradConfig(
        algo=algorithm.name, envs=env_ids, seed=seed,
        architecture=resolve_architecture(algorithm, env_ids[0].split("/")[0], hsize), **values,
    )  # fmt: skip
    plan = plan_metagrad(cfg, output, run_dir=run_dir, resume=resume, force=force)
    _run(plan, json_=json_, command=_resume_command(preset, given, env_ids[0], plan))


def _run(plan: Any, *, json_: bool, command: str) -> None:
    import jax

    from metarl_cli.meta.metagrad.train import train_metagrad
    from metarl_cli.rl.parallel import enable_compilation_cache

    enable_compilation_cache()
    cfg = plan.cfg
    start = f"resuming at step {plan.resume_from}" if plan.resume_from else "starting"
    err.print(
        f"metagrad {cfg.algo} {cfg.architecture} on {cfg.env_id}: {cfg.num_agents} agents x "
        f"{cfg.num_envs} envs x {cfg.num_steps} steps, K={cfg.agent_updates}, lifetime "
        f"{plan.lifetime} updates, {cfg.meta_steps} meta-steps, {len(jax.devices())} "
        f"device(s); run dir {plan.run_dir.path}; {start}"
    )
    reporter = _Reporter(cfg.meta_steps, plan.resume_from)
    with resume_hint(lambda: command), reporter:
        manifest, result = train_metagrad(plan, on_step=reporter.step, on_event=reporter.event)
    if json_:
        print_json(manifest.model_dump(mode="json"))
        return
    p = result.progress
    out.print(
        f"wrote {plan.output} (meta-step {p.step}; meta-loss {p.last.get('meta_loss', 0):.4g}, "
        f"agent return {p.last.get('agent_return', float('nan')):.3g}; {p.env_steps:,} env "
        f"steps, {p.wall_s:,.0f} s)"
    )


def _line(r: dict[str, Any], total: int) -> str:
    eta = int(r["eta_s"])
    return (
        f"step {r['step']}/{total}  meta-loss {r['meta_loss']:.4g}  return "
        f"{r['agent_return']:.3g}  {r['agent_updates_per_s']:.3g} agent-updates/s  "
        f"{r['env_steps_per_s']:.3g} steps/s  ETA {eta // 3600}h{eta % 3600 // 60:02d}m"
    )


class _Reporter(BarReporter):
    """A progress bar with the last step's figures; a line per checkpoint."""

    def __init__(self, total: int, done: int) -> None:
        self.total = total
        super().__init__("metagrad", total, done, "compiling", eta=True)

    def step(self, r: dict[str, Any]) -> None:
        self.progress.update(self.task, completed=r["step"], stats=_line(r, self.total)[5:])

    def event(self, name: str, info: dict[str, Any]) -> None:
        if name == "evaluating":
            self.progress.update(self.task, stats=f"evaluating at step {info['step']}")
        elif name == "checkpoint":
            ev = info["eval"]
            score = "" if ev is None else f"; eval return {ev['score']:.3g}"
            self.progress.console.print(f"step {info['step']}  [dim]checkpoint{score}[/]")


def _resume_command(preset: str, given: dict[str, Any], env_id: str, plan: Any) -> str:
    import shlex

    parts = ["metarl", "train", "metagrad", "--algo", plan.cfg.algo, "--envs", env_id]
    parts += ["-o", str(plan.output), "--run-dir", str(plan.run_dir.path), "--preset", preset]
    parts += ["--seed", str(plan.cfg.seed)]
    for key, value in given.items():
        if value is None:
            continue
        flag = f"--{key.replace('_', '-')}"
        parts += [flag if value is True else f"--no-{flag[2:]}"] if isinstance(value, bool) else [
            flag, str(value)
        ]  # fmt: skip
    if plan.force:
        parts.append("--force")
    return shlex.join([*parts, "--resume"])
