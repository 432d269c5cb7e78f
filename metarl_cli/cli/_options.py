"""Typer options that several commands declare with the same name and help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

AlgoOpt = Annotated[str, typer.Option("--algo", "-a", help="lpo, open, open_ff or nofeat.")]
EnvsOpt = Annotated[str, typer.Option("--envs", "-e", help="Comma-separated training envs.")]
ForceOpt = Annotated[
    bool, typer.Option(help="Overwrite the output and restart a non-empty run dir.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Artefact to write.")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue the run in --run-dir.")]
RunDirOpt = Annotated[
    Path | None, typer.Option(help="Checkpoints and metrics (default: OUTPUT.run/).")
]
SeedOpt = Annotated[int, typer.Option(help="Master seed.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a trainer config value: key=value (repeatable)."),
]
