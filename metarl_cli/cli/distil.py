"""`metarl distil`: black-box distillation of a neural learned algorithm, with the checkpoint
chosen by RL return."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from metarl_cli.cli._options import ForceOpt, JsonOpt, OutputOpt, ResumeOpt, RunDirOpt, SeedOpt
from metarl_cli.cli._output import MAX_SIZE, BarReporter, err, out, print_json, resume_hint

TeacherOpt = Annotated[Path, typer.Argument(help="The neural artefact to distil.")]
SizeOpt = Annotated[
    str | None,
    typer.Option(help="same: the teacher's network; smaller: every width halved."),
]
HsizeOpt = Annotated[
    int | None,
    typer.Option(help="Explicit student width (recurrent OPEN: even, GRU hsize/2).", max=MAX_SIZE),
]
LrOpt = Annotated[
    list[float] | None,
    typer.Option(help="Adam learning rate; repeat for a sweep (default: sweep 0.1, 0.02, 0.001)."),
]
EpochsOpt = Annotated[int, typer.Option(help="Epochs per learning rate.")]
ItersOpt = Annotated[
    int,
    typer.Option(
        help="Adam steps per epoch (default: the original's 1e6 steps per lr over 10 "
        "epochs; --iters 1000 is a 100x cheaper run, see docs/distil.md)."
    ),
]
LrEndOpt = Annotated[
    float, typer.Option(help="Learning rate at the end of each run (the original's).")
]
BatchSizeOpt = Annotated[
    int, typer.Option(help="Synthetic points (OPEN: sequences) per step.", max=MAX_SIZE)
]
TestSizeOpt = Annotated[int, typer.Option(help="Points in the held-out set.", max=MAX_SIZE)]
RolloutOpt = Annotated[
    str | None,
    typer.Option(help="Recurrent OPEN: long (100-step) or short (20-step) sequences."),
]
TargetOpt = Annotated[
    str | None,
    typer.Option(help="LPO: value (the drift, default) or grad (d drift / d ratio)."),
]
EnvsOpt = Annotated[
    str | None,
    typer.Option("--envs", "-e", help="Evaluation envs (default: the teacher's)."),
]
NumRunsOpt = Annotated[
    int, typer.Option(help="RL seeds per env per evaluation (0: select by held-out loss).")
]
TimestepsOpt = Annotated[
    str | None, typer.Option("--timesteps", "-t", help="PPO budget per evaluation run.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override an evaluation config value: key=value."),
]
EvalEveryOpt = Annotated[int, typer.Option(help="Epochs between RL evaluations.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="One line per epoch; tracebacks.")
]


def distil(
    teacher: TeacherOpt,
    output: OutputOpt,
    size: SizeOpt = None,
    hsize: HsizeOpt = None,
    lr: LrOpt = None,
    epochs: EpochsOpt = 10,
    iters: ItersOpt = 100_000,
    lr_end: LrEndOpt = 1e-5,
    batch_size: BatchSizeOpt = 2048,
    test_size: TestSizeOpt = 10_000,
    rollout: RolloutOpt = None,
    target: TargetOpt = None,
    envs: EnvsOpt = None,
    num_runs: NumRunsOpt = 8,
    timesteps: TimestepsOpt = None,
    set_: SetOpt = None,
    eval_every: EvalEveryOpt = 1,
    seed: SeedOpt = 0,
    run_dir: RunDirOpt = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Distil TEACHER into a same-size or smaller network; write the best checkpoint in RL.

    The student is regressed on the teacher's outputs over synthetic inputs (no env samples);
    checkpoints are scored by PPO return on the teacher's training envs.

    Examples: `metarl distil lpo.safetensors --size same -o lpo-same.safetensors`;
    `metarl distil open.safetensors --size smaller --rollout short -o open-small.safetensors`.
    """
    from metarl_cli.config import parse_set
    from metarl_cli.envs import resolve_envs
    from metarl_cli.meta.distil.plan import plan_distil

    plan = plan_distil(
        teacher,
        output,
        size=size,
        hsize=hsize,
        lrs=lr or None,
        epochs=epochs,
        iters=iters,
        lr_end=lr_end,
        batch_size=batch_size,
        test_size=test_size,
        target=target,
        rollout=rollout,
        envs=None if envs is None else resolve_envs(envs),
        num_runs=num_runs,
        timesteps=timesteps,
        overrides=parse_set(set_ or []),
        eval_every=eval_every,
        seed=seed,
        run_dir=run_dir,
        resume=resume,
        force=force,
    )
    _run(plan, verbose=verbose, json_=json_)


def _run(plan: Any, *, verbose: bool, json_: bool) -> None:
    """Train, then print the chosen checkpoint."""
    from metarl_cli.meta.distil.train import distil as run
    from metarl_cli.rl.parallel import enable_compilation_cache

    enable_compilation_cache()
    _header(plan)
    reporter = _Reporter(plan, verbose=verbose)
    hint = shlex.join(["metarl", "distil", *_argv(plan), "--resume"])
    with resume_hint(lambda: hint), reporter:
        result = run(plan, on_event=reporter.event)
    manifest = result.manifest
    if json_:
        print_json(manifest.model_dump(mode="json"))
        return
    chosen = manifest.meta_learner.config["chosen"]
    teacher_score = manifest.meta_learner.config["teacher_rl_score"]
    score = "" if chosen["rl_score"] is None else f"RL score {chosen['rl_score']:.4g}"
    if teacher_score is not None:
        score += f" (teacher {teacher_score['score']:.4g})"
    out.print(
        f"wrote {plan.output}: lr {chosen['lr']}, epoch {chosen['epoch']} (by "
        f"{chosen['by'].replace('_', ' ')}); held-out relative L2 error {chosen['rel_l2']:.3g}"
        + (f"; {score}" if score else "")
    )


def _argv(plan: Any) -> list[str]:
    """The flags that reproduce this run (for the resume hint)."""
    from metarl_cli.meta.distil.config import PAPER_LRS

    cfg = plan.cfg
    args = [str(plan.teacher_path), "-o", str(plan.output)]
    args += ["--run-dir", str(plan.run_dir.path), "--size", cfg.size]
    if cfg.size == "hsize":
        args[-2:] = ["--hsize", str(cfg.student_architecture["hidden"])]
    if cfg.lrs != list(PAPER_LRS):
        for x in cfg.lrs:
            args += ["--lr", str(x)]
    args += ["--epochs", str(cfg.epochs), "--iters", str(cfg.iters)]
    args += ["--batch-size", str(cfg.batch_size), "--test-size", str(cfg.test_size)]
    if cfg.rollout:
        args += ["--rollout", cfg.rollout]
    if cfg.target:
        args += ["--target", cfg.target]
    if cfg.envs:
        args += ["--envs", ",".join(cfg.envs)]
    args += ["--num-runs", str(cfg.num_runs), "--eval-every", str(cfg.eval_every)]
    if cfg.timesteps is not None:
        args += ["--timesteps", str(cfg.timesteps)]
    for key, value in cfg.overrides.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return [*args, "--seed", str(cfg.seed)]


def _header(plan: Any) -> None:
    cfg = plan.cfg
    what = f"{cfg.algo} {cfg.teacher_architecture} -> {cfg.size} {cfg.student_architecture}"
    if cfg.rollout:
        what += f", {cfg.rollout} rollouts ({cfg.seq_len} steps)"
    if cfg.target:
        what += f", target {cfg.target}"
    evals = (
        f"{cfg.num_runs} RL seeds on {', '.join(cfg.envs)} every {cfg.eval_every} epoch(s)"
        if cfg.num_runs
        else "selection by held-out loss (no RL evaluation)"
    )
    start = (
        f"resuming at lr #{plan.resume_from[0]} epoch {plan.resume_from[1]}"
        if plan.resume_from
        else "starting"
    )
    err.print(
        f"distil {what}: lrs {cfg.lrs} x {cfg.epochs} epochs x {cfg.iters} steps of "
        f"{cfg.batch_size}; {evals}; run dir {plan.run_dir.path}; {start}"
    )


class _Reporter(BarReporter):
    """A rich progress bar over all steps of the sweep; a line per evaluated epoch."""

    def __init__(self, plan: Any, *, verbose: bool) -> None:
        self.cfg, self.verbose = plan.cfg, verbose
        per_lr = self.cfg.epochs * self.cfg.iters
        done = 0
        if plan.resume_from:
            done = plan.resume_from[0] * per_lr + plan.resume_from[1] * self.cfg.iters
        super().__init__("distil", per_lr * len(self.cfg.lrs), done, "compiling", eta=True)

    def _where(self, i: int, epoch: int) -> str:
        return f"lr {self.cfg.lrs[i]:g} epoch {epoch}/{self.cfg.epochs}"

    def event(self, name: str, info: dict[str, Any]) -> None:
        cfg = self.cfg
        if name == "scoring teacher":
            self.progress.update(self.task, stats="evaluating the teacher in RL")
        elif name == "teacher":
            self.progress.console.print(f"teacher RL score {info['score']:.4g} {info['per_env']}")
        elif name == "steps":
            i, epoch = info["lr_index"], info["epoch"]
            done = i * cfg.epochs * cfg.iters + (epoch - 1) * cfg.iters + info["done"]
            self.progress.update(self.task, completed=done, stats=self._where(i, epoch))
        elif name == "scoring":
            where = self._where(info["lr_index"], info["epoch"])
            self.progress.update(self.task, stats=f"{where}: evaluating in RL")
        elif name == "epoch":
            line = (
                f"{self._where(info['lr_index'], info['epoch'])}  loss {info['train_loss']:.3g}"
                f"  held-out {info['test_loss']:.3g} (rel L2 {info['rel_l2']:.3g})"
                f"  {info['steps_per_s']:.0f} steps/s"
            )
            if info["rl_score"] is not None:
                line += f"  RL score {info['rl_score']:.4g}"
            best = info["best"]
            if best:
                line += f"  [dim]best: lr {best['lr']:g} epoch {best['epoch']}[/]"
            if self.verbose or info["checkpoint"]:
                self.progress.console.print(line)
            if info["test_loss"] != info["test_loss"]:  # NaN
                lr = self.cfg.lrs[info["lr_index"]]
                self.progress.console.print(f"[red]lr {lr:g} diverged[/]: next learning rate")
