"""`metarl inspect`: show an artefact's manifest and tensors.

Every string read from the file (code, expression, notes, names) is shown literally: it is
wrapped in `rich.text.Text`, so `[conceal]` or `[bold]` in a comment is not rich markup, and
control characters (ESC, CR, other C0/C1 codes, bidirectional overrides) are written as
visible escapes (`\\x1b`), so a kernel cannot hide or repaint lines of its own source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metarl_cli.cli._output import out, print_json

if TYPE_CHECKING:
    from rich.text import Text

    from metarl_cli.artefacts import Manifest

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional-text overrides.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_EXPLAINED = {"import": "imported", "llm": "discovered (LLM)"}
_METAGRAD_SETTINGS = (
    "num_agents", "meta_steps", "agent_updates", "lifetime_updates", "agent_preset",
    "value_baseline", "lpg_max_grad_norm",
)  # fmt: skip


def visible(text: Any) -> str:
    """`text` with control characters written as escapes (`\\x1b`, `\\u202e`)."""
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], str(text))


def literal(text: Any) -> Text:
    """`text` as rich renders it verbatim: no markup, no emoji codes, no control characters."""
    from rich.text import Text

    return Text(visible(text))


def provenance(manifest: Manifest) -> str:
    """Where the kernel came from: imported, discovered by an LLM, or meta-learned by NAME."""
    learner = manifest.meta_learner
    if learner is None:
        return "imported (no meta-learner recorded)"
    kind = _EXPLAINED.get(learner.name, f"meta-learned ({learner.name})")
    source = learner.config.get("source")
    return f"{kind}; source: {source}" if isinstance(source, str) and source else kind


def _update_rule_runs(algorithm: str) -> str:
    """How `evaluate` runs an update rule: its own trainer, at its own rollout sizes."""
    from metarl_cli.errors import UnknownNameError
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.trainers import train_defaults

    try:
        sizes = train_defaults(get_algorithm(algorithm))
    except UnknownNameError:
        return "its own trainer (algorithm unknown to this version)"
    shown = ", ".join(f"{k}={v}" for k, v in sizes.items()) or "the env's preset"
    return f"its own trainer (replaces PPO's update); by default {shown}"


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
                "provenance": provenance(manifest),
                "tensors": shapes,
                "file_sha256": artefact_digest(artefact),
            }
        )
        return
    from rich.table import Table

    table = Table(title=literal(artefact), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    m = manifest

    def row(field: str, value: Any) -> None:
        table.add_row(field, literal(value))

    row("algorithm", f"{m.algorithm} ({m.slot} slot, {m.form} form)")
    row("feature spec", f"v{m.feature_spec.version} {m.feature_spec.digest[:16]}")
    row("architecture", ", ".join(f"{k}={v}" for k, v in m.architecture.items()))
    row("provenance", provenance(m))
    row("meta-learner", m.meta_learner.name if m.meta_learner else "-")
    row("training envs", ", ".join(m.training_envs) or "-")
    if m.generation is not None:
        row("generation", m.generation)
    if m.fitness_summary:
        row("fitness", ", ".join(f"{k} {v:.4g}" for k, v in sorted(m.fitness_summary.items())))
    config = m.meta_learner.config if m.meta_learner else {}
    for key in ("chosen", "chosen_generation", "env_steps", "eval_env_steps", "wall_s"):
        if key in config and not isinstance(config[key], dict | list):
            row(key.replace("_", " "), config[key])
    settings = [k for k in _METAGRAD_SETTINGS if k in config]
    if settings:  # a meta-gradient run's scale and its recorded decisions (docs/lpg.md)
        row("settings", ", ".join(f"{k}={config[k]}" for k in settings))
    if m.slot == "update_rule":
        row("runs", _update_rule_runs(m.algorithm))
    row("parent", m.parent_digest or "-")
    params = sum(int(v.size) for v in flat.values())
    row("tensors", f"{len(flat)} tensors, {params:,} parameters")
    row("created", m.created.isoformat(timespec="seconds"))
    row("versions", ", ".join(f"{k} {v}" for k, v in m.versions.items()))
    if m.expression:
        row("expression", m.expression.strip())
    if m.source:
        row("source", m.source.strip())
    if m.notes:
        row("notes", m.notes)
    out.print(table)
