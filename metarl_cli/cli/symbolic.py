"""`metarl symbolic`: distil a neural learned algorithm into a symbolic program."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from metarl_cli.cli._options import ForceOpt, JsonOpt, ResumeOpt, SeedOpt
from metarl_cli.cli._output import MAX_SIZE, BarReporter, err, out, print_json, resume_hint

TeacherOpt = Annotated[Path, typer.Argument(help="A neural artefact (lpo, open_ff or nofeat).")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Symbolic artefact to write.")]
BackendOpt = Annotated[
    str,
    typer.Option(
        help="operon (offline, default) or pysr (needs Julia; untested: it has never run on "
        "metarl's test machines)."
    ),
]
GradLossOpt = Annotated[
    bool, typer.Option("--grad-loss", help="LPO: fit d drift / d r instead of the drift.")
]
RoundsOpt = Annotated[int, typer.Option(help="Search rounds, each ending in RL evaluation.")]
IterationsOpt = Annotated[int, typer.Option(help="Generations per round.")]
PopulationOpt = Annotated[
    int | None,
    typer.Option(help="Programs in the population (LPO 1000, else 5000).", max=MAX_SIZE),
]
NumPointsOpt = Annotated[
    int | None,
    typer.Option(help="Teacher data points (LPO grid 1024^2, else 1e6).", max=MAX_SIZE),
]
BatchSizeOpt = Annotated[int, typer.Option(help="Rows of teacher data per round.", max=MAX_SIZE)]
EnvsOpt = Annotated[
    str | None, typer.Option("--envs", "-e", help="RL evaluation envs (default: teacher's).")
]
NumRunsOpt = Annotated[
    int, typer.Option("--num-runs", "-n", help="RL seeds per env and round (0: none).")
]
TimestepsOpt = Annotated[
    str | None, typer.Option("--timesteps", "-t", help="RL budget per run, e.g. 5e5.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override an RL config value: key=value (repeatable)."),
]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="Backend threads (default: all cores).", max=4096)
]
RunDirOpt = Annotated[
    Path | None, typer.Option(help="State, Pareto fronts, metrics (default: OUTPUT.run/).")
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="One line per round; tracebacks.")
]


def symbolic(
    teacher: TeacherOpt,
    output: OutputOpt,
    backend: BackendOpt = "operon",
    grad_loss: GradLossOpt = False,
    rounds: RoundsOpt = 40,
    iterations: IterationsOpt = 10,
    population: PopulationOpt = None,
    num_points: NumPointsOpt = None,
    batch_size: BatchSizeOpt = 5000,
    envs: EnvsOpt = None,
    num_runs: NumRunsOpt = 8,
    timesteps: TimestepsOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = 0,
    threads: ThreadsOpt = None,
    run_dir: RunDirOpt = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Distil TEACHER into a symbolic program (paper §4.4, Table 10), the most accurate one.

    Example: `metarl symbolic lpo-ant.safetensors -o lpo-ant-sym.safetensors`; then
    `metarl inspect lpo-ant-sym.safetensors` shows the program.
    """
    from metarl_cli.config import build_config, parse_set
    from metarl_cli.meta.symbolic.backends import check_available
    from metarl_cli.meta.symbolic.data import load_teacher
    from metarl_cli.meta.symbolic.search import default_config, plan_symbolic

    check_available(backend)
    teach = load_teacher(teacher)
    if envs is not None:
        from metarl_cli.envs import resolve_envs

        env_ids = resolve_envs(envs)
    else:
        env_ids = list(teach.training_envs)
    overrides = parse_set(set_ or [])
    clip_eps = build_config(env_ids[0], overrides=overrides).clip_eps if env_ids else 0.2
    cfg = default_config(
        teach,
        backend=backend,
        rounds=rounds,
        iterations=iterations,
        population=population,
        num_points=num_points,
        batch_size=batch_size,
        grad_loss=grad_loss,
        clip_eps=clip_eps,
        envs=env_ids,
        num_runs=num_runs,
        timesteps=timesteps,
        overrides=overrides,
        seed=seed,
        threads=threads,
    )
    plan = plan_symbolic(cfg, teach, output, run_dir=run_dir, resume=resume, force=force)

    _run(plan, cfg, teach, verbose=verbose, json_=json_)


def _run(plan: Any, cfg: Any, teach: Any, *, verbose: bool, json_: bool) -> None:
    """Search, then print the chosen program."""
    from metarl_cli.meta.symbolic.search import run_symbolic
    from metarl_cli.rl.parallel import enable_compilation_cache

    enable_compilation_cache()
    start = f"resuming after round {plan.resume_from}" if plan.resume_from else "starting"
    err.print(
        f"symbolic distillation of {teach.path.name} ({cfg.algo}, backend {cfg.backend}): "
        f"{cfg.rounds} rounds x {cfg.iterations} generations, population {cfg.population}, "
        f"max size {cfg.max_size}, batch {cfg.batch_size} of {cfg.num_points:,} points; "
        f"RL eval {cfg.num_runs} run(s) on {', '.join(cfg.envs) or '-'}; "
        f"run dir {plan.run_dir.path}; {start}"
    )
    reporter = _Reporter(plan, verbose=verbose)
    with resume_hint(lambda: _resume_command(plan)), reporter:
        manifest, result = run_symbolic(plan, on_event=reporter.event)
    if json_:
        print_json(manifest.model_dump(mode="json"))
        return
    best, info = result.best, manifest.meta_learner.config
    rl = f"; RL score {best['rl']['score']:.3g}" if "rl" in best else ""
    out.print(
        f"wrote {plan.output} (round {best['round']}, L2 {best['l2']:.4g}, size "
        f"{best['complexity']}{rl}; round trip max rel. error "
        f"{best['round_trip']['max_rel_error']:.2g})"
    )
    if result.student_problems:
        teacher_note = (
            "the teacher has the same problems"
            if set(result.student_problems) <= set(result.teacher_problems)
            else f"teacher: {'; '.join(result.teacher_problems) or 'valid'}"
        )
        err.print(f"[yellow]validity:[/] {'; '.join(result.student_problems)} ({teacher_note})")
    out.print(info["pretty"], markup=False, highlight=False)


class _Reporter(BarReporter):
    """A progress bar over rounds on stderr (generations of the current round in its text)."""

    def __init__(self, plan: Any, *, verbose: bool) -> None:
        self.plan, self.verbose = plan, verbose
        self.best: float | None = None
        super().__init__("symbolic", plan.cfg.rounds, plan.resume_from, "preparing", eta=True)

    def _best(self) -> str:
        return "" if self.best is None else f"  best L2 {self.best:.4g}"

    def event(self, name: str, info: dict[str, Any]) -> None:
        if name == "data":
            self.progress.update(self.task, stats=f"teacher data ({info['points']:,} points)")
        elif name == "round":
            self.progress.update(self.task, stats=f"round {info['round']}: searching{self._best()}")
        elif name == "generation":
            self.progress.update(
                self.task,
                stats=f"round {info['round']}: generation {info['generation']}/{info['of']}"
                + self._best(),
            )
        elif name == "evaluating":
            self.progress.update(self.task, stats=f"round {info['round']}: RL evaluation")
        elif name == "round_done":
            l2 = info.get("best_l2")
            if l2 is not None and (self.best is None or l2 < self.best):
                self.best = l2
            self.progress.update(self.task, completed=info["round"], stats=self._best().strip())
            if self.verbose:
                self.progress.console.print(_line(info))


def _line(r: dict[str, Any]) -> str:
    l2 = "none passed the round trip" if r["best_l2"] is None else f"L2 {r['best_l2']:.4g}"
    rl = f"  RL score {r['rl_score']:.3g}" if "rl_score" in r else ""
    bad = f"  [yellow]{'; '.join(r['validity'])}[/]" if r.get("validity") else ""
    return (
        f"round {r['round']}: {l2}  size {r['complexity']}  front {r['pareto_size']}  "
        f"search {r['search_s']:.1f}s{rl}{bad}"
    )


def _resume_command(plan: Any) -> str:
    cfg = plan.cfg
    parts = ["metarl", "symbolic", str(plan.teacher.path), "-o", str(plan.output)]
    parts += ["--run-dir", str(plan.run_dir.path), "--backend", cfg.backend]
    parts += ["--rounds", str(cfg.rounds), "--iterations", str(cfg.iterations)]
    parts += ["--population", str(cfg.population), "--num-points", str(cfg.num_points)]
    parts += ["--batch-size", str(cfg.batch_size), "--seed", str(cfg.seed)]
    parts += ["--num-runs", str(cfg.num_runs)]
    if cfg.envs:
        parts += ["--envs", ",".join(cfg.envs)]
    if cfg.timesteps is not None:
        parts += ["--timesteps", str(cfg.timesteps)]
    if cfg.grad_loss:
        parts.append("--grad-loss")
    for key, value in cfg.overrides.items():
        parts += ["--set", f"{key}={json.dumps(value)}"]
    if plan.force:
        parts.append("--force")
    return shlex.join([*parts, "--resume"])
