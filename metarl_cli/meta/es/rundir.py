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
from pathlib import Path
from typing import Any

import numpy as np

from metarl_cli.errors import ArtefactError
from metarl_cli.meta.es.config import ESConfig, config_differences
from metarl_cli.meta.rundir import RunDirBase, refuse_changed_config, restore_leaves


@dataclass
class Progress:
    """Host-side record of a run, saved with every checkpoint.

    Attributes:
        generation: generations completed.
        history: one summary dict per completed generation.
        evals: periodic evaluations: {"generation", "score", "per_env"}.
        env_steps: PPO env steps used by fitness evaluation so far.
        eval_env_steps: env steps used by periodic evaluations so far.
        wall_s: wall time of all sessions so far.
        best_eval_mean: the mean with the best periodic evaluation (flat vector), if any.
    """

    generation: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    env_steps: int = 0
    eval_env_steps: int = 0
    wall_s: float = 0.0
    best_eval_mean: np.ndarray | None = None


class RunDir(RunDirBase):
    """The ES run directory (module doc)."""

    FORMAT = "metarl-es-checkpoint"
    VERSION = "1"
    HEADER_KEY = "progress"
    GLOBS = ("gen_*.safetensors",)

    def periodic(self, generation: int) -> Path:
        return self.path / f"gen_{generation:04d}.safetensors"

    def write_config(self, cfg: ESConfig, train_configs: dict[str, Any]) -> None:
        self.write_json("config.json", {"es": cfg.model_dump(mode="json"), "train": train_configs})

    def save(self, cfg: ESConfig, state_leaves: list[np.ndarray], progress: Progress) -> None:
        """Writes the checkpoint atomically."""
        tensors = {f"state/{i:03d}": np.ascontiguousarray(x) for i, x in enumerate(state_leaves)}
        if progress.best_eval_mean is not None:
            tensors["best_eval_mean"] = np.ascontiguousarray(progress.best_eval_mean)
        state = {
            "config": cfg.model_dump(mode="json"),
            "generation": progress.generation,
            "history": progress.history,
            "evals": progress.evals,
            "env_steps": progress.env_steps,
            "eval_env_steps": progress.eval_env_steps,
            "wall_s": progress.wall_s,
            # safetensors stores 0-d tensors as shape (1,): keep the real shapes.
            "shapes": [list(np.shape(x)) for x in state_leaves],
        }
        self.write_checkpoint(tensors, state)

    def read_saved(self) -> tuple[dict[str, Any], int] | None:
        """(config, generation) of the checkpoint; None when there is no checkpoint."""
        loaded = self.read_checkpoint()
        return None if loaded is None else (loaded[1]["config"], int(loaded[1]["generation"]))

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
        progress = Progress(
            generation=int(meta["generation"]),
            history=list(meta["history"]),
            evals=list(meta["evals"]),
            env_steps=int(meta["env_steps"]),
            eval_env_steps=int(meta["eval_env_steps"]),
            wall_s=float(meta["wall_s"]),
            best_eval_mean=tensors.get("best_eval_mean"),
        )
        return leaves, progress

    def truncate_metrics(self, generation: int) -> None:  # type: ignore[override]
        """Keeps only the metric lines of generations up to `generation` (atomically)."""
        super().truncate_metrics(lambda rec: rec["generation"] <= generation)
