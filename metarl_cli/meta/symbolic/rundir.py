"""The symbolic distillation run directory: state, population, metrics, Pareto fronts.

`RUN_DIR/` holds `config.json`, `state.json` (rounds done, per-round history, the best program
so far), `population.json` (the backend's population after the last round, exactly), a line per
round in `metrics.jsonl`, the Pareto front (size vs L2) of every round in `pareto_XXXX.json`
(`pareto.json` is the latest) and the program evaluated in RL each round as
`round_XXXX.safetensors`. State files are written atomically after every round.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metarl_cli.errors import ArtefactError, MetarlError
from metarl_cli.fsutil import atomic_write_text

STATE_FORMAT = "metarl-symbolic-state"


class SymbolicRunDir:
    """`RUN_DIR/`: `config.json`, `state.json` (rounds done, history, best program),
    `population.json` (the backend's population after the last round), `metrics.jsonl` (a line
    per round), `pareto_XXXX.json` (+ `pareto.json`, the latest) and `round_XXXX.safetensors`
    (the program evaluated in RL that round)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def file(self, name: str) -> Path:
        return self.path / name

    def ours(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        fixed = [self.file(n) for n in ("config.json", "state.json", "population.json")]
        fixed += [self.file("metrics.jsonl"), self.file("pareto.json")]
        globbed = sorted(self.path.glob("pareto_*.json")) + sorted(self.path.glob("round_*"))
        return [p for p in fixed if p.exists()] + globbed

    def check(self, *, resume: bool, force: bool) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise MetarlError(f"run dir {self.path} is a file; pass another --run-dir")
        if not self.path.exists() and not self.path.parent.is_dir():
            raise MetarlError(f"cannot create run dir {self.path}: {self.path.parent} is missing")
        busy = self.path.is_dir() and any(self.path.iterdir())
        if busy and not resume and not force:
            raise MetarlError(
                f"run dir {self.path} is not empty; pass --resume to continue that run or "
                "--force to start over"
            )

    def prepare(self, *, resume: bool, force: bool) -> None:
        self.path.mkdir(exist_ok=True)
        if force and not resume:
            for p in self.ours():
                p.unlink()

    def read_state(self) -> dict[str, Any] | None:
        path = self.file("state.json")
        if not path.exists():
            return None
        try:
            state = json.loads(path.read_text())
            if state.get("format") != STATE_FORMAT:
                raise ValueError("not a symbolic distillation state")
            population = json.loads(self.file("population.json").read_text())
            if population.get("round") != state["round"]:
                raise ValueError("population.json is from another round")
        except (OSError, ValueError, KeyError) as e:
            raise ArtefactError(f"cannot resume from {self.path}: {e}") from None
        state["population"] = population["population"]
        return state

    def write_round(self, state: dict[str, Any], population: list[Any]) -> None:
        text = json.dumps({"round": state["round"], "population": population})
        atomic_write_text(self.file("population.json"), text, force=True)
        atomic_write_text(self.file("state.json"), json.dumps(state, indent=1), force=True)

    def truncate_metrics(self, rounds: int) -> None:
        path = self.file("metrics.jsonl")
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("round", rounds + 1) <= rounds:
                    kept.append(line)
            except json.JSONDecodeError:
                continue
        atomic_write_text(path, "".join(f"{x}\n" for x in kept), force=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.file("metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
