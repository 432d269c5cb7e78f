"""`metarl train es`: meta-train a learned algorithm with evolution strategies."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer

from metarl_cli.cli._cluster import (
    CoordinatorOpt,
    NumProcessesOpt,
    PeerTimeoutOpt,
    ProcessIdOpt,
)
from metarl_cli.cli._options import (
    AlgoOpt,
    EnvsOpt,
    ForceOpt,
    JsonOpt,
    OutputOpt,
    ResumeOpt,
    RunDirOpt,
    SeedOpt,
    SetOpt,
)
from metarl_cli.cli._output import (
    MAX_SIZE,
    BarReporter,
    err,
    out,
    print_json,
    print_normaliser_notes,
    resume_hint,
)

if TYPE_CHECKING:
    from metarl_cli.meta.es.config import ESConfig, Strategy

app = typer.Typer(help="Meta-train a learned algorithm.", no_args_is_help=True)


NumGenerationsOpt = Annotated[int, typer.Option(help="Generations in total.")]
PopsizeOpt = Annotated[int, typer.Option(help="Population size (even for open_es).", max=MAX_SIZE)]
NumRolloutsOpt = Annotated[int, typer.Option(help="PPO seeds per member and env.")]
LrOpt = Annotated[float, typer.Option(help="Adam step size of the ES mean.")]
LrDecayOpt = Annotated[float, typer.Option(help="lr decay per generation.")]
LrLimitOpt = Annotated[float, typer.Option(help="Floor of the decayed lr.")]
NoiseLevelOpt = Annotated[float, typer.Option(help="Initial search sigma.")]
SigmaDecayOpt = Annotated[float, typer.Option(help="Sigma decay per generation.")]
SigmaLimitOpt = Annotated[float, typer.Option(help="Floor of the decayed sigma.")]
SaveEveryKOpt = Annotated[
    int, typer.Option(help="Generations between checkpoints and evaluations.")
]
EvalRunsOpt = Annotated[
    int, typer.Option(help="Seeds per env to evaluate the mean at checkpoints (0: none).")
]
HsizeOpt = Annotated[
    int | None,
    typer.Option(help="Hidden size (OPEN: GRU hsize/2); default Table 8.", max=MAX_SIZE),
]
TimestepsOpt = Annotated[
    str | None, typer.Option("--timesteps", "-t", help="PPO budget per run, e.g. 5e5.")
]
StrategyOpt = Annotated[str, typer.Option(help="evosax strategy: open_es, pgpe, snes, sep_cma_es.")]
ChunkOpt = Annotated[
    int | None,
    typer.Option(
        help="Population runs per device per call (default: all, vmapped; 1: one at a "
        "time, the same results on any device count; k: k vmapped, bounds memory).",
        max=MAX_SIZE,
    ),
]
SelectOpt = Annotated[
    str | None,
    typer.Option(
        help="Output candidate: best-eval (the mean with the best periodic evaluation on "
        "the training envs, the paper's) or final (the last mean) "
        "[default: best-eval, or final with --eval-runs 0]."
    ),
]
TaskSamplingOpt = Annotated[
    str,
    typer.Option(
        help="Fitness seeds: shared (every member the same, the paper's main runs) or "
        "antithetic (each ± pair its own: on a gridworld a level per pair, Supplement F)."
    ),
]
FitnessShapingOpt = Annotated[
    str,
    typer.Option(
        help="What OpenAI-ES is told: centered_rank (the paper's main runs) or identity "
        "(the fitness itself, Supplement F's gridworld runs)."
    ),
]
WandbOpt = Annotated[bool, typer.Option(help="Also log to Weights & Biases.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="One line per generation; tracebacks.")
]


@app.command("es")
def es(
    algo: AlgoOpt,
    envs: EnvsOpt,
    output: OutputOpt,
    num_generations: NumGenerationsOpt = 800,
    popsize: PopsizeOpt = 64,
    num_rollouts: NumRolloutsOpt = 1,
    lr: LrOpt = 3e-2,
    lr_decay: LrDecayOpt = 0.999,
    lr_limit: LrLimitOpt = 1e-3,
    noise_level: NoiseLevelOpt = 3e-2,
    sigma_decay: SigmaDecayOpt = 0.999,
    sigma_limit: SigmaLimitOpt = 1e-2,
    save_every_k: SaveEveryKOpt = 8,
    eval_runs: EvalRunsOpt = 8,
    hsize: HsizeOpt = None,
    timesteps: TimestepsOpt = None,
    seed: SeedOpt = 0,
    set_: SetOpt = None,
    strategy: StrategyOpt = "open_es",
    chunk: ChunkOpt = None,
    select: SelectOpt = None,
    task_sampling: TaskSamplingOpt = "shared",
    fitness_shaping: FitnessShapingOpt = "centered_rank",
    run_dir: RunDirOpt = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    wandb: WandbOpt = False,
    verbose: VerboseOpt = False,
    json_: JsonOpt = False,
    coordinator: CoordinatorOpt = None,
    num_processes: NumProcessesOpt = None,
    process_id: ProcessIdOpt = None,
    peer_timeout: PeerTimeoutOpt = 60,  # distributed.PEER_TIMEOUT_S
) -> None:
    """Evolve the meta-parameters of ALGO on PPO's final return (OpenAI-ES, Table 8)."""
    from metarl_cli.cli import _cluster

    where = _cluster.cluster(coordinator, num_processes, process_id, peer_timeout)
    if where is not None and not _cluster.in_worker():
        raise typer.Exit(_cluster.guard(where, verbose))
    cfg = _config(
        algo, envs, set_, wandb, hsize, timesteps, strategy, select,
        num_generations=num_generations, popsize=popsize, num_rollouts=num_rollouts, lr=lr,
        lr_decay=lr_decay, lr_limit=lr_limit, noise_level=noise_level,
        sigma_decay=sigma_decay, sigma_limit=sigma_limit, save_every_k=save_every_k,
        eval_runs=eval_runs, seed=seed, chunk=chunk, task_sampling=task_sampling,
        fitness_shaping=fitness_shaping,
    )  # fmt: skip
    from metarl_cli.meta.es.train import plan_es

    writes = where is None or where.is_leader
    plan = plan_es(cfg, output, run_dir=run_dir, resume=resume, force=force, writes=writes)
    if where is None:
        _run(plan, verbose=verbose, wandb=wandb, json_=json_)
        return

    def command(extra: list[str]) -> str:
        return _resume_command(plan, extra)

    def lead(peers: Any) -> None:
        resume = lambda: _cluster.resume_command(where, command)  # noqa: E731
        _run(plan, verbose=verbose, wandb=wandb, json_=json_, peers=peers, hint=resume)

    _cluster.run(plan, where, lead, command)


def _config(
    algo: str,
    envs: str,
    set_: list[str] | None,
    wandb: bool,
    hsize: int | None,
    timesteps: str | None,
    strategy: str,
    select: str | None,
    **settings: Any,
) -> ESConfig:
    """The ES config of the command line (pydantic validates the strategy and --select)."""
    from metarl_cli.config import parse_set
    from metarl_cli.envs import resolve_envs
    from metarl_cli.errors import ConfigError
    from metarl_cli.meta.es.config import ESConfig

    env_ids = resolve_envs(envs)
    overrides = parse_set(set_ or [])
    if wandb:
        try:
            import wandb as _wandb  # noqa: F401
        except ImportError:
            raise ConfigError("--wandb needs the wandb package: pip install wandb") from None
    from metarl_cli.learned.base import get_algorithm, resolve_architecture

    algorithm = get_algorithm(algo)
    suite = env_ids[0].split("/")[0]
    return ESConfig(
        algo=algorithm.name,
        envs=env_ids,
        architecture=resolve_architecture(algorithm, suite, hsize),
        timesteps=cast(Any, timesteps),  # text such as 5e5: ESConfig parses it
        overrides=overrides,
        strategy=cast("Strategy", strategy),
        select=cast(
            Literal["final", "best-eval"],
            select or ("best-eval" if settings["eval_runs"] else "final"),
        ),
        **settings,
    )


def _run(
    plan: Any, *, verbose: bool, wandb: bool, json_: bool, peers: Any = None, hint: Any = None
) -> None:
    from metarl_cli.meta.es.train import train_es
    from metarl_cli.rl.parallel import enable_compilation_cache

    enable_compilation_cache()
    _header(plan, peers.num_processes if peers is not None else 1)
    reporter = _Reporter(plan, verbose=verbose, wandb=wandb)
    with resume_hint(hint or (lambda: _resume_command(plan))), reporter:
        manifest, result = train_es(
            plan, on_generation=reporter.generation, on_event=reporter.event, peers=peers
        )
    if json_:
        print_json(manifest.model_dump(mode="json"))
        return
    p = result.progress
    summary = manifest.fitness_summary or {}
    out.print(
        f"wrote {plan.output} ({manifest.meta_learner.config['chosen']}, generation "
        f"{manifest.generation}; final population mean fitness "
        f"{summary.get('final_pop_mean', float('nan')):.4g}; {p.env_steps:,} env steps, "
        f"{p.wall_s:,.0f} s)"
    )


def _steps(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def _duration(s: float) -> str:
    if s != s:  # NaN
        return "?"
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def _header(plan: Any, processes: int = 1) -> None:
    import jax

    cfg = plan.cfg
    steps = ", ".join(f"{e} {_steps(c.env_steps)}" for e, c in plan.train_configs.items())
    start = f"resuming at generation {plan.resume_from}" if plan.resume_from else "starting"
    each = f" in each of {processes} processes" if processes > 1 else ""
    err.print(
        f"ES ({cfg.strategy}) {cfg.algo} {cfg.architecture}: popsize {cfg.popsize} x "
        f"{cfg.num_rollouts} rollout(s), {cfg.num_generations} generations, steps/run {steps}, "
        f"{len(jax.local_devices())} device(s){each}; run dir {plan.run_dir.path}; {start}"
    )
    print_normaliser_notes(plan.train_configs.values())


def _line(r: dict[str, Any], total: int) -> str:
    return (
        f"gen {r['generation']}/{total}  best {r['fitness_best']:.4g}  mean "
        f"{r['fitness_mean']:.4g}  sigma {r['sigma']:.3g}  lr {r['lr']:.3g}  "
        f"{_steps(r['env_steps_per_s'])} steps/s  ETA {_duration(r['eta_s'])}"
        + (f"  [red]{r['failed']} failed[/]" if r["failed"] else "")
    )


class _Reporter(BarReporter):
    """Rich progress on stderr, a line per checkpoint (per generation with --verbose), wandb."""

    def __init__(self, plan: Any, *, verbose: bool, wandb: bool) -> None:
        self.plan, self.verbose, self.total = plan, verbose, plan.cfg.num_generations
        super().__init__("ES", self.total, plan.resume_from, "compiling")
        self.wandb = None
        if wandb:
            import wandb as wb

            self.wandb = wb.init(
                project="metarl",
                name=plan.output.stem,
                config=plan.cfg.model_dump(mode="json"),
                resume="allow",
            )

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        if self.wandb is not None:
            self.wandb.finish()

    def generation(self, r: dict[str, Any]) -> None:
        self.progress.update(
            self.task, completed=r["generation"], stats=_line(r, self.total).split("  ", 1)[1]
        )
        if self.verbose:
            self.progress.console.print(_line(r, self.total))
        if self.wandb is not None:
            flat = {k: v for k, v in r.items() if not isinstance(v, dict)}
            flat.update({f"{e}/return": v for e, v in r["returns"].items()})
            self.wandb.log(flat, step=r["generation"])

    def event(self, name: str, info: dict[str, Any]) -> None:
        if name == "building":
            self.progress.update(self.task, stats="compiling")
        elif name == "evaluating":
            self.progress.update(self.task, stats=f"evaluating generation {info['generation']}")
        elif name == "checkpoint":
            ev = info["eval"]
            score = (
                ""
                if ev is None
                else f"; eval score {ev['score']:.4g} "
                + json.dumps({k: round(v, 2) for k, v in ev["per_env"].items()})
            )
            hist = None if self.verbose else self.last_record()
            line = _line(hist, self.total) if hist else f"gen {info['generation']}"
            self.progress.console.print(f"{line}  [dim]checkpoint{score}[/]")
            if self.wandb is not None and ev is not None:
                self.wandb.log({"eval/score": ev["score"]}, step=info["generation"])

    def last_record(self) -> dict[str, Any] | None:
        try:
            lines = self.plan.run_dir.metrics.read_text().splitlines()
            return json.loads(lines[-1]) if lines else None
        except (OSError, json.JSONDecodeError):
            return None


_FLAG_SKIP = ("algo", "envs", "architecture", "overrides", "timesteps")


def _resume_command(plan: Any, extra: list[str] | None = None) -> str:
    """The command that continues this run (non-default settings spelled out, then `extra`)."""
    import shlex

    from metarl_cli.meta.es.config import ESConfig

    cfg = plan.cfg
    parts = ["metarl", "train", "es", "--algo", cfg.algo, "--envs", ",".join(cfg.envs)]
    parts += ["-o", str(plan.output), "--run-dir", str(plan.run_dir.path)]
    hsize = cfg.architecture.get("hidden", cfg.architecture.get("gru"))  # LPG: its GRU
    if hsize is not None:
        parts += ["--hsize", str(hsize)]
    if cfg.timesteps is not None:
        parts += ["--timesteps", str(cfg.timesteps)]
    for key, value in cfg.overrides.items():
        parts += ["--set", f"{key}={json.dumps(value)}"]
    for name, field in ESConfig.model_fields.items():
        value = getattr(cfg, name)
        if name in _FLAG_SKIP or value == field.default:
            continue
        parts += [f"--{name.replace('_', '-')}", str(value)]
    if plan.force:
        parts.append("--force")
    return shlex.join([*parts, *(extra or []), "--resume"])
