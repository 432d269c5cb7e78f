"""`metarl inspect`: show an artefact's manifest and tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metarl_cli.cli._output import out, print_json


def inspect(
    artefact: Annotated[Path, typer.Argument(help="A .safetensors artefact.")],
    json_: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Validate ARTEFACT and print its manifest (algorithm, slot, form, spec, provenance)."""
    from metarl_cli.artefacts import artefact_digest, flatten_tree, load_artefact

    manifest, tensors = load_artefact(artefact)
    flat = flatten_tree(tensors)
    shapes = {k: list(v.shape) for k, v in flat.items()}
    if json_:
        print_json(
            {
                "manifest": manifest.model_dump(mode="json"),
                "tensors": shapes,
                "file_sha256": artefact_digest(artefact),
            }
        )
        return
    from rich.table import Table

    table = Table(title=str(artefact), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    m = manifest
    table.add_row("algorithm", f"{m.algorithm} ({m.slot} slot, {m.form} form)")
    table.add_row("feature spec", f"v{m.feature_spec.version} {m.feature_spec.digest[:16]}")
    table.add_row("architecture", ", ".join(f"{k}={v}" for k, v in m.architecture.items()))
    table.add_row("meta-learner", m.meta_learner.name if m.meta_learner else "-")
    table.add_row("training envs", ", ".join(m.training_envs) or "-")
    if m.generation is not None:
        table.add_row("generation", str(m.generation))
    if m.fitness_summary:
        table.add_row(
            "fitness", ", ".join(f"{k} {v:.4g}" for k, v in sorted(m.fitness_summary.items()))
        )
    config = m.meta_learner.config if m.meta_learner else {}
    for key in ("chosen", "chosen_generation", "env_steps", "eval_env_steps", "wall_s"):
        if key in config and not isinstance(config[key], dict | list):
            table.add_row(key.replace("_", " "), str(config[key]))
    table.add_row("parent", m.parent_digest or "-")
    params = sum(int(v.size) for v in flat.values())
    table.add_row("tensors", f"{len(flat)} tensors, {params:,} parameters")
    table.add_row("created", m.created.isoformat(timespec="seconds"))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in m.versions.items()))
    if m.expression:
        table.add_row("expression", m.expression.strip())
    if m.source:
        table.add_row("source", m.source.strip())
    if m.notes:
        table.add_row("notes", m.notes)
    out.print(table)
