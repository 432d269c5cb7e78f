"""The symbolic distillation run directory: state, population, metrics, Pareto fronts.

`RUN_DIR/` holds `config.json`, `state.json` (rounds done, per-round history, the best program
so far), `population.json` (the backend's population after the last round, exactly), a line per
round in `metrics.jsonl`, the Pareto front (size vs L2) of every round in `pareto_XXXX.json`
(`pareto.json` is the latest) and the program evaluated in RL each round as
`round_XXXX.safetensors`. State files are written atomically after every round.
"""

from __future__ import annotations

import json
from typing import Any

from metarl_cli.errors import ArtefactError
from metarl_cli.fsutil import atomic_write_text
from metarl_cli.meta.rundir import RunDirBase

STATE_FORMAT = "metarl-symbolic-state"


class SymbolicRunDir(RunDirBase):
    """`RUN_DIR/`: `config.json`, `state.json` (rounds done, history, best program),
    `population.json` (the backend's population after the last round), `metrics.jsonl` (a line
    per round), `pareto_XXXX.json` (+ `pareto.json`, the latest) and `round_XXXX.safetensors`
    (the program evaluated in RL that round)."""

    FIXED = ("config.json", "state.json", "population.json", "metrics.jsonl", "pareto.json")
    GLOBS = ("pareto_*.json", "round_*")

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

    def truncate_metrics(self, rounds: int) -> None:  # type: ignore[override]
        """Keeps only the metric lines of rounds up to `rounds` (atomically)."""
        super().truncate_metrics(lambda rec: rec["round"] <= rounds)
