"""`metarl report`: the paper's statistics, figures and Table 1 from evaluation results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metarl_cli.cli._output import err, out, print_json


def report(
    results: Annotated[
        list[Path],
        typer.Argument(help="Result files of `metarl evaluate -o` (or directories of them)."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for the report (created).")
    ] = Path("report"),
    normalise_by: Annotated[
        str,
        typer.Option(
            "--normalise-by",
            help="Per-env normaliser: black-box (mean ES return, the paper's), ppo (PPO-Adam "
            "return), none, or auto (black-box when every study has an ES result, else ppo).",
        ),
    ] = "auto",
    reps: Annotated[
        int, typer.Option("--reps", help="Bootstrap resamples (rliable's default).")
    ] = 50_000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="Name a result in the figures: FILE=NAME (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite report files.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Write report.md, index.html, PNG/SVG figures and CSV/JSON tables for RESULTS."""
    from metarl_cli.errors import ConfigError

    if reps < 100:
        raise ConfigError(f"--reps must be at least 100, got {reps}")
    labels = {}
    for item in label or []:
        key, sep, name = item.partition("=")
        if not sep or not key.strip() or not name.strip():
            raise ConfigError(f"--label expects FILE=NAME, got {item!r}")
        labels[key.strip()] = name.strip()

    from metarl_cli.analysis.report import build_report, write_report

    with err.status("computing statistics and figures", spinner="dots"):
        rep = build_report(
            list(results), normalise_by=normalise_by, reps=reps, seed=seed, labels=labels
        )
    summary = write_report(rep, output, force=force)
    if json_:
        print_json(summary)
        return
    _print(summary, output)


def _print(summary: dict, output: Path) -> None:
    from rich.table import Table

    from metarl_cli.cli._output import fmt

    table = Table(title=f"IQM (normalise-by {summary['normalise_by']}) with 95% CIs")
    for col in ("study", "panel", "approach", "IQM", "95% CI"):
        table.add_column(col, justify="right" if col in ("IQM", "95% CI") else "left")
    for r in summary["aggregate"]:
        ci = "n/a" if r["ci_low"] is None else f"{fmt(r['ci_low'], 3)}..{fmt(r['ci_high'], 3)}"
        table.add_row(r["study"], r["panel"], r["approach"], fmt(r["iqm"], 3), ci)
    out.print(table)
    for note in summary["notes"]:
        out.print(f"[yellow]note:[/] {note}")
    out.print(
        f"wrote {output}/index.html, report.md, {len(summary['figures'])} figures (PNG + SVG), "
        "aggregate/per_env/table1 .csv/.json"
    )
