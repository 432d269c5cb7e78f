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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl_cli.errors import ArtefactError, ConfigError, MetarlError
from metarl_cli.fsutil import atomic_write_bytes, atomic_write_text
from metarl_cli.meta.config import ESConfig, config_differences

FORMAT = "metarl-es-checkpoint"
VERSION = "1"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
PERIODIC_GLOB = "gen_*.safetensors"


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


class RunDir:
    """A run directory, checked before anything is written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    def periodic(self, generation: int) -> Path:
        return self.path / f"gen_{generation:04d}.safetensors"

    def ours(self) -> list[Path]:
        """Files of ours in the directory (the ones --force removes)."""
        if not self.path.is_dir():
            return []
        names = [self.checkpoint, self.metrics, self.path / CONFIG]
        found = [p for p in names if p.exists()]
        return found + sorted(self.path.glob(PERIODIC_GLOB))

    def check(self, *, resume: bool, force: bool) -> None:
        """Refuses to start over an existing run unless told to resume or to overwrite."""
        if self.path.exists() and not self.path.is_dir():
            raise MetarlError(f"run dir {self.path} is a file; pass another --run-dir")
        if resume or not self.path.is_dir() or not any(self.path.iterdir()):
            if not self.path.exists():
                parent = self.path.parent
                if not parent.is_dir():
                    raise MetarlError(f"cannot create run dir {self.path}: {parent} does not exist")
            return
        if not force:
            raise MetarlError(
                f"run dir {self.path} is not empty; pass --resume to continue that run or "
                "--force to start over"
            )

    def prepare(self, *, resume: bool, force: bool) -> None:
        """Creates the directory; with --force (not resuming) removes our old files."""
        self.path.mkdir(parents=False, exist_ok=True)
        if force and not resume:
            for p in self.ours():
                p.unlink()

    def write_config(self, cfg: ESConfig, train_configs: dict[str, Any]) -> None:
        text = json.dumps({"es": cfg.model_dump(mode="json"), "train": train_configs}, indent=2)
        atomic_write_text(self.path / CONFIG, text + "\n", force=True)

    # --- checkpoints ----------------------------------------------------------------------

    def save(self, cfg: ESConfig, state_leaves: list[np.ndarray], progress: Progress) -> None:
        """Writes the checkpoint atomically."""
        import safetensors.numpy

        tensors = {f"state/{i:03d}": np.ascontiguousarray(x) for i, x in enumerate(state_leaves)}
        if progress.best_eval_mean is not None:
            tensors["best_eval_mean"] = np.ascontiguousarray(progress.best_eval_mean)
        meta = {
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
        header = {"format": FORMAT, "version": VERSION, "progress": json.dumps(meta)}
        atomic_write_bytes(
            self.checkpoint, safetensors.numpy.save(tensors, metadata=header), force=True
        )

    def read_saved(self) -> tuple[dict[str, Any], int] | None:
        """(config, generation) of the checkpoint; None when there is no checkpoint."""
        loaded = self._read()
        return None if loaded is None else (loaded[1]["config"], int(loaded[1]["generation"]))

    def load(
        self, cfg: ESConfig, template_leaves: list[Any]
    ) -> tuple[list[np.ndarray], Progress] | None:
        """Reads the checkpoint for `cfg`; None when there is none.

        Raises:
            ConfigError: the checkpoint was made with a different config (differences listed).
            ArtefactError: the file is unreadable or its state does not fit the strategy.
        """
        loaded = self._read()
        if loaded is None:
            return None
        tensors, meta = loaded
        diffs = config_differences(meta["config"], cfg)
        if diffs:
            raise ConfigError(
                f"cannot resume {self.path}: the config differs from the checkpoint's "
                f"({'; '.join(diffs)}); use the original flags or another --run-dir"
            )
        shapes = meta["shapes"]
        mismatch = ArtefactError(f"{self.checkpoint}: the ES state does not fit {cfg.strategy}")
        if len(shapes) != len(template_leaves):
            raise mismatch
        leaves = []
        for i, (tmpl, shape) in enumerate(zip(template_leaves, shapes, strict=True)):
            arr, tmpl = tensors.get(f"state/{i:03d}"), np.asarray(tmpl)
            if arr is None or arr.size != tmpl.size or arr.dtype != tmpl.dtype:
                raise mismatch
            arr = arr.reshape(shape)
            if arr.shape != tmpl.shape:
                raise mismatch
            leaves.append(arr)
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

    def _read(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        if not self.checkpoint.exists():
            return None
        import safetensors
        import safetensors.numpy

        try:
            with safetensors.safe_open(str(self.checkpoint), framework="numpy") as f:
                header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise ValueError("not an ES checkpoint")
            if header.get("version") != VERSION:
                raise ValueError(f"checkpoint version {header.get('version')} is not {VERSION}")
            meta = json.loads(header["progress"])
            tensors = safetensors.numpy.load_file(str(self.checkpoint))
        except Exception as e:
            raise ArtefactError(f"cannot read checkpoint {self.checkpoint}: {e}") from None
        return tensors, meta

    # --- metrics --------------------------------------------------------------------------

    def truncate_metrics(self, generation: int) -> None:
        """Keeps only the metric lines of generations up to `generation` (atomically)."""
        if not self.metrics.exists():
            return
        kept = []
        for line in self.metrics.read_text().splitlines():
            try:
                if json.loads(line).get("generation", generation + 1) <= generation:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        atomic_write_text(self.metrics, "".join(f"{x}\n" for x in kept), force=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
            f.flush()
