"""The ES run directory: resumable checkpoints, metrics.jsonl, periodic artefacts.

Layout of `RUN_DIR/`:

* `config.json`: the ES config and each env's resolved `TrainConfig` (written at the start);
* `checkpoint.safetensors`: the complete ES state after the last saved generation: every leaf
  of the evosax state pytree (mean, sigma, Adam moments and step count, best-so-far, the
  generation counter) as tensors, and in the header the config, the generation, the fitness
  history, the periodic evaluations, env steps used and wall time. Written atomically, so a
  kill at any moment leaves the previous or the new checkpoint, never half of one;
* `metrics.jsonl`: one JSON line per generation (lines past the checkpoint are dropped on
  resume, as those generations are run again);
* `gen_XXXX.safetensors`: the mean after generation XXXX, as an artefact.

Keys are not stored: generation g uses `fold_in(key(seed), g)`, so a resumed run draws
exactly the keys an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from metarl_cli.errors import ArtefactError
from metarl_cli.meta.es.config import ESConfig, config_differences
from metarl_cli.meta.rundir import (
    CountedRunDir,
    RunProgress,
    leaf_tensors,
    refuse_changed_config,
    restore_leaves,
)


@dataclass
class Progress(RunProgress):
    """Host-side record of a run, saved with every checkpoint (`RunProgress` and these).

    Attributes:
        generation: generations completed.
        history: one summary dict per completed generation.
        best_eval_mean: the mean with the best periodic evaluation (flat vector), if any.
    """

    TENSORS: ClassVar[tuple[str, ...]] = ("best_eval_mean",)

    generation: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_eval_mean: np.ndarray | None = None


class RunDir(CountedRunDir):
    """The ES run directory (module doc)."""

    FORMAT = "metarl-es-checkpoint"
    VERSION = "1"
    GLOBS = ("gen_*.safetensors",)
    COUNTER = "generation"
    PERIODIC = "gen_{:04d}.safetensors"
    CONFIG_KEY = "es"

    def save(self, cfg: ESConfig, state_leaves: list[np.ndarray], progress: Progress) -> None:
        """Writes the checkpoint atomically."""
        tensors, shapes = leaf_tensors("state", state_leaves)
        self.save_progress(cfg, tensors, shapes, progress)

    def load(
        self, cfg: ESConfig, template_leaves: list[Any]
    ) -> tuple[list[np.ndarray], Progress] | None:
        """Reads the checkpoint for `cfg`; None when there is none.

        Raises:
            ConfigError: the checkpoint was made with a different config (differences listed).
            ArtefactError: the file is unreadable or its state does not fit the strategy.
        """
        loaded = self.read_checkpoint()
        if loaded is None:
            return None
        tensors, meta = loaded
        refuse_changed_config(self.path, config_differences(meta["config"], cfg))
        mismatch = ArtefactError(f"{self.checkpoint}: the ES state does not fit {cfg.strategy}")
        leaves = restore_leaves(tensors, "state", meta["shapes"], template_leaves, mismatch)
        return leaves, Progress.restore(meta, tensors)
