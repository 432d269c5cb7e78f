"""The meta-gradient run directory: complete checkpoints, so a resumed run is bit-identical.

Layout of `RUN_DIR/`: `config.json` (the config, the agents' train config and agent settings),
`checkpoint.safetensors` (theta, the meta-optimiser's state and every agent's networks,
optimiser states, environments and lifetime counter, as tensors; the progress in the header),
`metrics.jsonl` (one line per meta-step; lines past the checkpoint are dropped on resume) and
`step_XXXXX.safetensors` (theta as an artefact at each checkpoint).

Keys are not stored: meta-step g uses `fold_in(key(seed, "steps"), g)`, so a resumed run draws
the keys an uninterrupted one would. The agents are most of a checkpoint's size (512 paper-sized
MLP agents with Adam on `all_shortlife`'s 3,201-dim observations: about 1.9 GB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl_cli.errors import ArtefactError
from metarl_cli.meta.metagrad.config import MetagradConfig
from metarl_cli.meta.rundir import (
    RunDirBase,
    config_differences,
    leaf_tensors,
    refuse_changed_config,
    restore_leaves,
)

PARTS = ("theta", "opt", "agents")


@dataclass
class Progress:
    """Host-side record of a run, saved with every checkpoint.

    Attributes:
        step: meta-steps completed.
        evals: periodic evaluations: {"step", "score", "returns"}.
        env_steps: env steps of the agents' rollouts so far.
        eval_env_steps: env steps of the periodic evaluations so far.
        wall_s: wall time of all sessions so far.
        last: the last meta-step's record.
    """

    step: int = 0
    evals: list[dict[str, Any]] = field(default_factory=list)
    env_steps: int = 0
    eval_env_steps: int = 0
    wall_s: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)


class RunDir(RunDirBase):
    """The meta-gradient run directory (module doc)."""

    FORMAT = "metarl-metagrad-checkpoint"
    VERSION = "1"
    HEADER_KEY = "progress"
    GLOBS = ("step_*.safetensors",)

    def periodic(self, step: int) -> Path:
        return self.path / f"step_{step:05d}.safetensors"

    def write_config(self, cfg: MetagradConfig, extra: dict[str, Any]) -> None:
        self.write_json("config.json", {"metagrad": cfg.model_dump(mode="json"), **extra})

    def save(self, cfg: MetagradConfig, parts: dict[str, list[Any]], progress: Progress) -> None:
        """Writes theta, the optimiser state and the agents (`parts`: leaves) atomically."""
        tensors: dict[str, np.ndarray] = {}
        shapes: dict[str, list[list[int]]] = {}
        for name in PARTS:
            t, shapes[name] = leaf_tensors(name, parts[name])
            tensors.update(t)
        state = {
            "config": cfg.model_dump(mode="json"),
            "step": progress.step,
            "evals": progress.evals,
            "env_steps": progress.env_steps,
            "eval_env_steps": progress.eval_env_steps,
            "wall_s": progress.wall_s,
            "last": progress.last,
            "shapes": shapes,
        }
        self.write_checkpoint(tensors, state)

    def read_saved(self) -> tuple[dict[str, Any], int] | None:
        """(config, meta-step) of the checkpoint; None when there is none."""
        loaded = self.read_checkpoint()
        return None if loaded is None else (loaded[1]["config"], int(loaded[1]["step"]))

    def load(
        self, cfg: MetagradConfig, templates: dict[str, list[Any]]
    ) -> tuple[dict[str, list[np.ndarray]], Progress] | None:
        """The checkpoint's leaves (checked against `templates`) and progress; None when there
        is no checkpoint.

        Raises:
            ConfigError: the checkpoint was made with a different config (differences listed).
            ArtefactError: the file is unreadable or its state does not fit the config.
        """
        loaded = self.read_checkpoint()
        if loaded is None:
            return None
        tensors, meta = loaded
        diffs = config_differences(meta["config"], cfg.model_dump(mode="json"), ("meta_steps",))
        refuse_changed_config(self.path, diffs)
        mismatch = ArtefactError(f"{self.checkpoint}: the saved state does not fit the config")
        parts = {
            name: restore_leaves(tensors, name, meta["shapes"][name], templates[name], mismatch)
            for name in PARTS
        }
        progress = Progress(
            step=int(meta["step"]),
            evals=list(meta["evals"]),
            env_steps=int(meta["env_steps"]),
            eval_env_steps=int(meta["eval_env_steps"]),
            wall_s=float(meta["wall_s"]),
            last=dict(meta["last"]),
        )
        return parts, progress

    def truncate_metrics(self, step: int) -> None:  # type: ignore[override]
        """Keeps only the metric lines of meta-steps up to `step` (atomically)."""
        super().truncate_metrics(lambda rec: rec["step"] <= step)
