"""`metarl evaluate`'s progress on stderr: a spinner while an environment compiles, then a bar
of env steps with steps/s and an ETA while its runs train, and a line per finished environment.

The bar advances as segments of the run finish on the host (`rl/progress.py`), about once a
second; it is transient (gone when the command ends) and, as rich does when stderr is not a
terminal, not animated in logs, where only the `done` lines appear.
"""

from __future__ import annotations

import time
from typing import Any

from metarl_cli.cli._output import err


def steps_text(n: float) -> str:
    """1.23M, 45.6k or 789."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def duration_text(seconds: float) -> str:
    """1h02m, 3m05s or 42s."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class EvalProgress:
    """Progress of an evaluation over `steps` ({env_id: env steps per run}) x `num_runs` runs;
    `on_event` and `on_progress` are `evaluation.evaluate`'s callbacks."""

    def __init__(self, steps: dict[str, int], num_runs: int) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        self.steps, self.num_runs, self.finished = steps, num_runs, 0
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            console=err,
            transient=True,
            refresh_per_second=4,  # the numbers change about once a second
        )
        self.task = self.progress.add_task("starting", total=None, stats="")
        self.started = time.monotonic()

    def __enter__(self) -> EvalProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def _where(self, env_id: str) -> str:
        return f"{env_id} ({self.finished + 1}/{len(self.steps)})"

    def on_event(self, env_id: str, phase: str) -> None:
        """A phase of one environment: compiling, running or done."""
        if phase == "done":
            self.finished += 1
            total, run_s = self.steps[env_id] * self.num_runs, time.monotonic() - self.started
            err.print(
                f"[green]done[/] {env_id} ({self.finished}/{len(self.steps)}): "
                f"{steps_text(total)} env steps in {duration_text(run_s)}, "
                f"{total / max(run_s, 1e-9):,.0f} steps/s"
            )
        elif phase == "running":
            self.started = time.monotonic()
            total = self.steps[env_id] * self.num_runs
            stats = f"0/{steps_text(total)} env steps"
            desc = f"running {self._where(env_id)}"
            self.progress.update(self.task, description=desc, total=total, completed=0, stats=stats)
        else:
            desc = f"{phase} {self._where(env_id)}"
            self.progress.update(self.task, description=desc, total=None, completed=0, stats="")

    def on_progress(self, env_id: str, fraction: float) -> None:
        """`fraction` of the environment's runs is done: env steps, steps/s and ETA."""
        total = self.steps[env_id] * self.num_runs
        done = fraction * total
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        stats = (
            f"{steps_text(done)}/{steps_text(total)} env steps  {rate:,.0f} steps/s  "
            f"ETA {duration_text(eta)}"
        )
        self.progress.update(self.task, completed=done, stats=stats)
