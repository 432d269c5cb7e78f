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
from typing import Any

import numpy as np

from metarl_cli.errors import ArtefactError
from metarl_cli.meta.metagrad.config import MetagradConfig
from metarl_cli.meta.rundir import (
    CountedRunDir,
    RunProgress,
    config_differences,
    leaf_tensors,
    refuse_changed_config,
    restore_leaves,
)

PARTS = ("theta", "opt", "agents")


@dataclass
class Progress(RunProgress):
    """Host-side record of a run, saved with every checkpoint (`RunProgress` and these).

    Attributes:
        step: meta-steps completed.
        last: the last meta-step's record.
    """

    step: int = 0
    last: dict[str, Any] = field(default_factory=dict)


class RunDir(CountedRunDir):
    """The meta-gradient run directory (module doc)."""

    FORMAT = "metarl-metagrad-checkpoint"
    VERSION = "1"
    GLOBS = ("step_*.safetensors",)
    COUNTER = "step"
    PERIODIC = "step_{:05d}.safetensors"
    CONFIG_KEY = "metagrad"

    def save(self, cfg: MetagradConfig, parts: dict[str, list[Any]], progress: Progress) -> None:
        """Writes theta, the optimiser state and the agents (`parts`: leaves) atomically."""
        tensors: dict[str, np.ndarray] = {}
        shapes: dict[str, list[list[int]]] = {}
        for name in PARTS:
            t, shapes[name] = leaf_tensors(name, parts[name])
            tensors.update(t)
        self.save_progress(cfg, tensors, shapes, progress)

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
        return parts, Progress.restore(meta, tensors)
