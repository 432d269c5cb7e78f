"""`metarl bench`: env-steps/s and compile time against a same-run PureJaxRL-style baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from metarl_cli.cli._output import err, out, print_json


def bench(
    scale: Annotated[
        float, typer.Option(help="Multiply every case's budget (e.g. 0.1 for a quick check).")
    ] = 1.0,
    repeat: Annotated[int, typer.Option(help="Timed repetitions (best is kept).")] = 1,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write rows as JSON.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
) -> None:
    """CartPole (4 envs; 1 and 8 seeds) and Breakout (64 envs; 1 and 2 seeds)."""
    from metarl_cli.errors import ConfigError
    from metarl_cli.fsutil import atomic_write_text, check_writable

    if not math.isfinite(scale) or scale <= 0 or repeat < 1:
        raise ConfigError("--scale must be a finite number > 0 and --repeat at least 1")
    if output is not None:
        check_writable(output, force=force)
    from metarl_cli.bench import CASES, case_timesteps, run_bench
    from metarl_cli.config import build_config

    for env_id, _, steps in CASES:  # every budget is valid before the first case runs
        build_config(env_id, timesteps=case_timesteps(steps, scale))

    rows = run_bench(
        scale, repeat, on_case=lambda e, s: err.print(f"benchmarking {e}, {s} seed(s)")
    )
    if output is not None:
        atomic_write_text(output, json.dumps(rows, indent=2) + "\n", force=force)
    if json_:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="metarl vs a PureJaxRL-style jit(vmap(train)), same run")
    table.add_column("env", no_wrap=True)
    for col in ("seeds", "devices", "base steps/s", "metarl steps/s", "speedup", "compile s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["env_id"].split("/")[-1],
            str(r["seeds"]),
            str(r["devices"]),
            f"{r['baseline_steps_per_s']:,.0f}",
            f"{r['metarl_steps_per_s']:,.0f}",
            f"{r['speedup']:.2f}x",
            f"{r['baseline_compile_s']:.1f} / {r['metarl_compile_s']:.1f}",
        )
    out.print(table)
    out.print("compile s: baseline / metarl (persistent cache off)", style="dim")
