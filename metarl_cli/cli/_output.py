"""Shared rendering: rich console on stderr for progress, stdout for results and --json."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

MAX_SIZE = 2**31 - 1
"""The largest count a size option takes (`max=MAX_SIZE`): sizes become 32-bit JAX shapes."""

out = Console()
err = Console(stderr=True)
if not out.is_terminal:  # piped or captured: rich would assume 80 columns and squeeze tables
    out.width = 120


@contextmanager
def resume_hint(command: Callable[[], str]) -> Iterator[None]:
    """Gives an `errors.Interrupted` raised inside the command `command()` that resumes the
    run; `cli/app.py` prints it and exits 130."""
    from metarl_cli.errors import Interrupted

    try:
        yield
    except Interrupted as e:
        e.resume = command()
        raise


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (nothing else is printed there with --json)."""
    print(json.dumps(data, indent=2, default=str))


def fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


class BarReporter:
    """A transient rich progress bar on stderr (`label`, a bar, done/total, with `eta` the
    elapsed time and rich's estimate of the time left, a `stats` text), started and stopped as
    a context manager; meta-learners' reporters subclass it."""

    def __init__(
        self, label: str, total: int, completed: int, stats: str, *, eta: bool = False
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        times = [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()] if eta else []
        self.progress = Progress(
            TextColumn(f"[bold]{label}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            *times,
            TextColumn("{task.fields[stats]}"),
            console=err,
            transient=True,
        )
        self.task = self.progress.add_task(label, total=total, completed=completed, stats=stats)

    def __enter__(self) -> BarReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()


def print_normaliser_notes(configs: Any) -> None:
    """One stderr line per normaliser of these env configs that is a placeholder or missing
    (`config.normaliser_note`), so no score rests silently on one."""
    from metarl_cli.config import normaliser_note

    for c in configs:
        backend = c.brax_backend if c.env_id.startswith("brax/") else None
        for kind in ("ppo", "sgd"):
            note = normaliser_note(c.env_id, kind, backend)
            if note:
                err.print(f"note: {c.env_id} {kind.upper()} normaliser: {note}", markup=False)
