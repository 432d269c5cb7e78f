"""`metarl evaluate`: meta-test a baseline or an artefact on environments x seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metarl_cli.cli._options import SeedOpt
from metarl_cli.cli._output import fmt, out, print_json
from metarl_cli.cli._progress import EvalProgress, steps_text

TargetOpt = Annotated[str, typer.Argument(help="Baseline name (ppo) or artefact file.")]
EnvsOpt = Annotated[
    str | None,
    typer.Option("--envs", "-e", help="Comma-separated env ids or aliases [cartpole]."),
]
SuiteOpt = Annotated[
    str | None,
    typer.Option(
        "--suite",
        "-s",
        help="A named env list instead of --envs: paper (the 10 meta-test envs), minatar, "
        "brax, classic, craftax.",
    ),
]
NumRunsOpt = Annotated[
    int, typer.Option("--num-runs", "-n", help="Seeds per env (the paper meta-tests on 16).")
]
TimestepsOpt = Annotated[
    str | None, typer.Option("--timesteps", "-t", help="Budget per run, e.g. 2e5.")
]
TimestepsScaleOpt = Annotated[
    float | None,
    typer.Option(
        "--timesteps-scale", help="Multiply each env's preset budget (e.g. 0.01 on a CPU)."
    ),
]
ChunkOpt = Annotated[
    int | None,
    typer.Option(
        help="Runs per device per call (default: all, vmapped; 1: one at a time, the "
        "same results on any device count; k: k vmapped, bounds memory)."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config value: key=value (repeatable)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="JSON or TOML file of overrides.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the result JSON here.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
AlgoOpt = Annotated[
    str | None,
    typer.Option("--algo", help="Refuse an artefact of any other algorithm (e.g. lpo)."),
]
StreamOpt = Annotated[
    str,
    typer.Option(
        "--stream",
        hidden=True,  # for audits: `selection` reproduces a meta-learner's selection score
        help="Seed stream: meta_test, or selection (the seeds meta-learners select with).",
    ),
]


def evaluate(
    target: TargetOpt,
    envs: EnvsOpt = None,
    suite: SuiteOpt = None,
    num_runs: NumRunsOpt = 16,
    timesteps: TimestepsOpt = None,
    timesteps_scale: TimestepsScaleOpt = None,
    seed: SeedOpt = 0,
    chunk: ChunkOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
    algo: AlgoOpt = None,
    stream: StreamOpt = "meta_test",
) -> None:
    """Train with TARGET on each env for --num-runs seeds; report final returns (mean, IQM)."""
    from metarl_cli.config import parse_set, read_config_file
    from metarl_cli.envs import resolve_envs
    from metarl_cli.envs.registry import resolve_suite
    from metarl_cli.errors import ConfigError
    from metarl_cli.fsutil import check_writable
    from metarl_cli.rl.parallel import check_chunk

    if suite is not None and envs is not None:
        raise ConfigError("pass --suite or --envs, not both")
    if suite is not None:
        suite, env_ids = resolve_suite(suite)
    else:
        env_ids = resolve_envs("cartpole" if envs is None else envs)
    settings: dict[str, Any] = dict(  # what build_configs and the run both take
        timesteps=timesteps,
        timesteps_scale=timesteps_scale,
        overrides=parse_set(set_ or []),
        file_values=read_config_file(config) if config else None,
    )
    check_chunk(chunk)
    if output is not None:
        check_writable(output, force=force)  # fail now, not after the run

    from metarl_cli.evaluation import build_configs, target_train_defaults

    # Validate every config (and the scaled budgets) before any JAX work; the target's own
    # rollout sizes (LPG, A2C: 64 x 20) sit beneath --config and --set.
    configs = build_configs(env_ids, defaults=target_train_defaults(target, algo), **settings)

    steps = {c.env_id: c.env_steps for c in configs}
    result = _run(
        target, env_ids, steps, num_runs=num_runs, seed=seed, chunk=chunk,
        expect_algorithm=algo, suite=suite, stream=stream, **settings,
    )  # fmt: skip
    if output is not None:
        from metarl_cli.results import write_result

        write_result(result, output, force=force)
    if json_:
        print_json(result.model_dump(mode="json"))
        return
    _table(result)
    if output is not None:
        out.print(f"wrote {output}")


def _run(target: str, env_ids: list[str], steps: dict[str, int], **kwargs: Any) -> Any:
    """Evaluate with a progress bar (env steps, steps/s, ETA) and a line per finished env on
    stderr (`cli/_progress.py`)."""
    from metarl_cli.evaluation import evaluate as run_evaluation
    from metarl_cli.rl.parallel import enable_compilation_cache

    enable_compilation_cache()
    with EvalProgress(steps, kwargs["num_runs"]) as bar:
        return run_evaluation(
            target, env_ids, on_event=bar.on_event, on_progress=bar.on_progress, **kwargs
        )


def _table(result) -> None:
    from rich.table import Table

    where = f" on suite {result.suite}" if result.suite else ""
    table = Table(title=f"{result.target.name}: final return over {result.num_runs} run(s){where}")
    table.add_column("env", no_wrap=True)
    for col in ("steps", "mean", "IQM", "95% CI", "min", "max", "steps/s"):
        table.add_column(col, justify="right", no_wrap=True)
    for env in result.envs:
        s = env.summary
        ci = "" if s.iqm is None else f"{fmt(s.iqm_ci_low)}..{fmt(s.iqm_ci_high)}"
        table.add_row(
            env.env_id,
            steps_text(env.env_steps_per_run),
            fmt(s.mean),
            fmt(s.iqm),
            ci,
            fmt(s.min),
            fmt(s.max),
            f"{env.env_steps_per_s:,.0f}",
        )
    out.print(table)
    times = ", ".join(f"{e.env_id} {e.compile_s:.1f}s/{e.run_s:.1f}s" for e in result.envs)
    total = sum(e.compile_s + e.run_s for e in result.envs)
    out.print(f"compile/run: {times} (total {total:.1f}s)", style="dim")
    for e in result.envs:
        if any(e.diverged):
            out.print(
                f"[yellow]warning:[/] {sum(e.diverged)} of {len(e.diverged)} run(s) on "
                f"{e.env_id} diverged (NaN or infinite loss)"
            )
    missing = [
        e.env_id for e in result.envs if e.summary.n < result.num_runs and not any(e.diverged)
    ]
    if missing:
        out.print(
            f"[yellow]note:[/] no episode finished in the final window for some runs of "
            f"{', '.join(missing)}; raise --timesteps for a final return"
        )
