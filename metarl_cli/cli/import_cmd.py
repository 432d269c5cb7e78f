"""`metarl import`: turn an original checkpoint into a metarl artefact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metarl_cli.cli._output import out


def import_(
    algorithm: Annotated[str, typer.Argument(help="Algorithm of the checkpoint: open.")],
    checkpoint: Annotated[Path, typer.Argument(help="The original flat .npy file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Artefact to write.")],
    env: Annotated[
        list[str] | None, typer.Option("--env", help="Environment(s) it was trained on.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
) -> None:
    """Import a released OPEN optimiser (flat .npy, as in AlexGoldie/rl-learned-optimization)."""
    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.errors import ConfigError
    from metarl_cli.fsutil import check_writable

    if algorithm != "open":
        raise ConfigError(f"can import 'open' checkpoints only, not {algorithm!r}")
    check_writable(output, force=force)
    from metarl_cli.envs import resolve_envs
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_learned
    from metarl_cli.learned.open import import_open_npy

    theta, hidden, gru = import_open_npy(checkpoint)
    envs = resolve_envs(",".join(env)) if env else _guess_envs(checkpoint)
    manifest = save_learned(
        output,
        get_algorithm("open"),
        theta,
        architecture={"hidden": hidden, "gru": gru},
        meta_learner=MetaLearnerInfo(name="import", config={"source": str(checkpoint)}),
        training_envs=envs,
        notes=f"imported from {checkpoint.name}",
        force=force,
    )
    out.print(f"wrote {output} (open, hidden {hidden}, gru {gru}, envs {', '.join(envs) or '-'})")
    del manifest


def _guess_envs(checkpoint: Path) -> list[str]:
    """The released files are named <env>_OPEN.npy."""
    from metarl_cli.envs import ENVS

    stem = checkpoint.stem.lower().removesuffix("_open")
    return [ENVS.resolve(stem)] if stem in ENVS else []
