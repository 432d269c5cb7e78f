"""`metarl import`: turn an original checkpoint, a code file, an expression or one of the
paper's functions into a metarl artefact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metarl_cli.cli._output import out, print_json

TEXT_KINDS = ("code", "symbolic", "paper")


def _checkpoint_kinds() -> list[str]:
    """The algorithms whose foreign checkpoints `metarl import <id>` reads (OPEN's .npy)."""
    from metarl_cli.learned.base import algorithms

    return [a.name for a in algorithms() if a.checkpoint_format]


def import_(
    kind: Annotated[
        str,
        typer.Argument(
            help="open: a released OPEN .npy; code: a .py file; symbolic: an expression or a "
            "file holding one; paper: a function of the paper's Supplement C by name."
        ),
    ],
    source: Annotated[
        str | None, typer.Argument(help="The file, expression or paper function name.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Artefact to write.")
    ] = None,
    algo: Annotated[
        str | None,
        typer.Option("--algo", help="Algorithm the kernel belongs to (code, symbolic)."),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--envs",
            "--env",
            help="Environment(s) it was meta-trained on (comma-separated or repeated); "
            "released OPEN files: guessed from the name (multi_OPEN: MinAtar).",
        ),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the paper's functions (with `paper`).")
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print --list as JSON.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
    unsafe_no_sandbox: Annotated[
        bool,
        typer.Option(
            "--unsafe-no-sandbox",
            help="Export code even where the sandbox's confinement is unavailable (unsafe).",
        ),
    ] = False,
) -> None:
    """Write an artefact from an original OPEN checkpoint, code, an expression or the paper.

    Examples: `metarl import open asterix_OPEN.npy -o a.safetensors`;
    `metarl import code my_drift.py --algo lpo -o d.safetensors`;
    `metarl import symbolic "relu((r - 1) * A)" --algo lpo -o s.safetensors`;
    `metarl import paper log_poly_clip -o p.safetensors`; `metarl import paper --list`.

    Code is never run in this process: a sandboxed child checks it, traces it and exports it
    to StableHLO, which is what the artefact runs; the source is kept for reading.
    """
    from metarl_cli.errors import ConfigError

    checkpoint_kinds = _checkpoint_kinds()
    kinds = (*checkpoint_kinds, *TEXT_KINDS)
    if kind not in kinds:
        raise ConfigError(f"unknown import kind {kind!r}; choose one of: {', '.join(kinds)}")
    if kind == "paper" and list_:
        _list_paper(json_)
        return
    if source is None:
        raise ConfigError(f"`metarl import {kind}` needs a SOURCE argument")
    if output is None:
        raise ConfigError("missing option --output/-o: the artefact to write")
    from metarl_cli.fsutil import check_writable

    check_writable(output, force=force)
    envs = _envs(env)
    if kind in checkpoint_kinds:
        _import_checkpoint(kind, Path(source), output, envs, force)
    elif kind == "paper":
        _import_paper(source, output, envs, force, unsafe_no_sandbox)
    else:
        _import_text(kind, source, algo, output, envs, force, unsafe_no_sandbox)


def _envs(env: list[str] | None) -> list[str] | None:
    if not env:
        return None
    from metarl_cli.envs import resolve_envs

    return resolve_envs(",".join(env))


def _import_checkpoint(
    name: str, checkpoint: Path, output: Path, envs: list[str] | None, force: bool
) -> None:
    """A foreign checkpoint of algorithm `name` (`algorithm.import_checkpoint`)."""
    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.errors import ArtefactError
    from metarl_cli.fsutil import read_regular_file
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_learned

    algorithm = get_algorithm(name)
    label = algorithm.display_name
    # A FIFO would block np.load forever: check it is a regular, .npy-sized file first.
    what = f"{label} checkpoint"
    read_regular_file(checkpoint, what=what, max_bytes=1 << 26, error=ArtefactError)
    theta, architecture = algorithm.import_checkpoint(checkpoint)
    envs = envs if envs is not None else _guess_envs(checkpoint)
    # The released optimisers were meta-trained with ES (Goldie et al., 2024): in the paper's
    # figures they are the black-box learning entries, so they are recorded as such.
    origin = f"released {label} checkpoint, meta-trained with ES by its authors"
    save_learned(
        output,
        algorithm,
        theta,
        architecture=architecture,
        meta_learner=MetaLearnerInfo(
            name="es", config={"source": str(checkpoint), "imported": True, "origin": origin}
        ),
        training_envs=envs,
        notes=f"imported from {checkpoint.name}",
        force=force,
    )
    sizes = ", ".join(f"{k} {v}" for k, v in architecture.items())
    out.print(f"wrote {output} ({algorithm.name}, {sizes}, envs {', '.join(envs) or '-'})")


def _exported(algorithm, form: str, text: str, unsafe: bool):
    """A code kernel's verified StableHLO, exported in the sandbox (None for other forms)."""
    if form != "code":
        return None
    from metarl_cli.learned.base import check_form
    from metarl_cli.meta.llm.export import export_source

    check_form(algorithm, form, text)  # a parse: fail fast, before the child starts
    return export_source(algorithm, text, allow_unconfined=unsafe)


def _import_text(
    kind: str, source: str, algo: str | None, output: Path, envs, force: bool, unsafe: bool
) -> None:
    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.errors import ConfigError
    from metarl_cli.learned.base import algorithms, get_algorithm
    from metarl_cli.learned.io import save_kernel

    if algo is None:
        names = ", ".join(a.name for a in algorithms())
        raise ConfigError(f"`metarl import {kind}` needs --algo ({names})")
    algorithm = get_algorithm(algo)
    path = Path(source)
    if kind == "code" or (len(source) < 4096 and "\n" not in source and path.is_file()):
        from metarl_cli.fsutil import read_regular_file

        raw = read_regular_file(path, what=f"{kind} file", max_bytes=1 << 20, error=ConfigError)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"cannot read {source}: not UTF-8 text (a binary file?)") from None
        origin = str(path)
    else:
        text, origin = source, "command line"
    manifest = save_kernel(
        output,
        algorithm,
        kind,
        text,
        code=_exported(algorithm, kind, text, unsafe),
        meta_learner=MetaLearnerInfo(name="import", config={"source": origin}),
        training_envs=envs or [],
        force=force,
    )
    out.print(f"wrote {output} ({manifest.algorithm}, {kind} form, from {origin})")


def _import_paper(name: str, output: Path, envs, force: bool, unsafe: bool) -> None:
    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_kernel
    from metarl_cli.learned.library import PAPER

    entry = PAPER.get(name)
    algorithm = get_algorithm(entry.algorithm)
    save_kernel(
        output,
        algorithm,
        entry.form,
        entry.text,
        code=_exported(algorithm, entry.form, entry.text, unsafe),
        meta_learner=MetaLearnerInfo(
            name="llm" if entry.form == "code" else "symbolic", config={"source": entry.origin}
        ),
        training_envs=envs if envs is not None else list(entry.training_envs),
        notes=f"{entry.origin}" + (f"; {entry.note}" if entry.note else ""),
        force=force,
    )
    out.print(f"wrote {output} ({entry.algorithm}, {entry.form} form: {entry.origin})")


def _list_paper(json_: bool) -> None:
    from metarl_cli.learned.library import PAPER

    rows = [PAPER.get(n) for n in PAPER.names()]
    if json_:
        print_json(
            [
                {"name": e.name, "algorithm": e.algorithm, "form": e.form, "origin": e.origin}
                for e in rows
            ]
        )
        return
    from rich.table import Table

    table = Table(title="Functions of the paper's Supplement C")
    for col in ("name", "algorithm", "form", "origin"):
        table.add_column(col)
    for e in rows:
        table.add_row(e.name, e.algorithm, e.form, e.origin)
    out.print(table)


def _guess_envs(checkpoint: Path) -> list[str]:
    """The released files are named <env>_OPEN.npy; multi_OPEN.npy was trained on MinAtar."""
    from metarl_cli.envs import ENVS
    from metarl_cli.envs.registry import SUITES

    stem = checkpoint.stem.lower().removesuffix("_open")
    if stem == "multi":
        return list(SUITES.get("minatar"))
    return [ENVS.resolve(stem)] if stem in ENVS else []
