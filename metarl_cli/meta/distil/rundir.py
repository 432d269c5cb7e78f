"""The distillation run directory: an atomic resumable checkpoint, metrics.jsonl, checkpoints.

Layout of `RUN_DIR/`:

* `config.json`: the `DistilConfig` (written at the start);
* `checkpoint.safetensors`: after every epoch, the whole host state: the student's parameters
  and Adam state, the sweep position (learning-rate index, epochs done), every learning rate's
  selection curve, the best checkpoint so far (its parameters too) and the teacher's RL score.
  Written atomically, so a kill at any moment leaves the previous or the new one;
* `metrics.jsonl`: one JSON line per epoch (lines past the checkpoint are dropped on resume,
  as those epochs are run again);
* `lr{i}_epoch{e}.safetensors`: the student evaluated after epoch e of learning rate i.

Keys are not stored: they are `fold_in`s of the seed, so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metarl_cli.errors import ArtefactError
from metarl_cli.meta.distil.config import DistilConfig, config_differences
from metarl_cli.meta.rundir import (
    RunDirBase,
    leaf_tensors,
    refuse_changed_config,
    restore_leaves,
)


@dataclass
class SweepState:
    """Where a run stands (host side).

    Attributes:
        lr_index: the learning rate being trained (== len(lrs) when the sweep is done).
        epoch: epochs completed at `lr_index`.
        params, opt_state: the student and its Adam state at `lr_index` (None before its
            first epoch).
        sweep: one record per learning rate started: {"lr", "curve": [{"epoch", "train_loss",
            "test_loss", "rel_l2", "rl_score", "per_env"}], "diverged"}.
        best: the selected checkpoint so far ({"lr_index", "lr", "epoch", "rl_score",
            "test_loss", "rel_l2", "per_env"}) and best_params its parameters.
        teacher_score: the teacher's RL score at the evaluation settings (None: not measured).
        wall_s: wall time of all sessions.
    """

    lr_index: int = 0
    epoch: int = 0
    params: Any = None
    opt_state: Any = None
    sweep: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_params: Any = None
    teacher_score: dict[str, Any] | None = None
    wall_s: float = 0.0


class DistilRunDir(RunDirBase):
    """The distillation run directory (module doc)."""

    FORMAT = "metarl-distil-checkpoint"
    VERSION = "1"
    HEADER_KEY = "state"
    GLOBS = ("lr*_epoch*.safetensors",)

    def periodic(self, lr_index: int, epoch: int):
        return self.path / f"lr{lr_index}_epoch{epoch:04d}.safetensors"

    def write_config(self, cfg: DistilConfig) -> None:
        self.write_json("config.json", cfg.model_dump(mode="json"))

    def save(self, cfg: DistilConfig, state: SweepState) -> None:
        """Writes the checkpoint atomically."""
        import jax

        tensors, shapes = {}, {}
        for prefix, tree in (
            ("params", state.params),
            ("opt", state.opt_state),
            ("best", state.best_params),
        ):
            if tree is not None:
                part, shapes[prefix] = leaf_tensors(prefix, jax.tree.leaves(tree))
                tensors.update(part)
        self.write_checkpoint(
            tensors,
            {
                "config": cfg.model_dump(mode="json"),
                "lr_index": state.lr_index,
                "epoch": state.epoch,
                "sweep": state.sweep,
                "best": state.best,
                "teacher_score": state.teacher_score,
                "wall_s": state.wall_s,
                "shapes": shapes,
            },
        )

    def saved_position(self, cfg: DistilConfig) -> tuple[int, int] | None:
        """(lr_index, epoch) of the checkpoint, after checking it was made with `cfg`."""
        loaded = self.read_checkpoint()
        if loaded is None:
            return None
        refuse_changed_config(self.path, config_differences(loaded[1]["config"], cfg))
        return int(loaded[1]["lr_index"]), int(loaded[1]["epoch"])

    def load(self, cfg: DistilConfig, params_template: Any, opt_template: Any) -> SweepState:
        """The saved state (a fresh one when there is no checkpoint).

        Raises:
            ConfigError: the checkpoint was made with a different config (differences listed).
            ArtefactError: the file is unreadable or does not fit the student.
        """
        import jax

        loaded = self.read_checkpoint()
        if loaded is None:
            return SweepState()
        tensors, meta = loaded
        refuse_changed_config(self.path, config_differences(meta["config"], cfg))
        shapes = meta["shapes"]

        def tree(prefix: str, template: Any) -> Any:
            if prefix not in shapes:
                return None
            leaves, treedef = jax.tree.flatten(template)
            mismatch = ArtefactError(f"checkpoint {prefix} does not fit the student's network")
            return jax.tree.unflatten(
                treedef, restore_leaves(tensors, prefix, shapes[prefix], leaves, mismatch)
            )

        return SweepState(
            lr_index=int(meta["lr_index"]),
            epoch=int(meta["epoch"]),
            params=tree("params", params_template),
            opt_state=tree("opt", opt_template),
            sweep=list(meta["sweep"]),
            best=meta["best"],
            best_params=tree("best", params_template),
            teacher_score=meta["teacher_score"],
            wall_s=float(meta["wall_s"]),
        )

    def truncate_metrics(self, lr_index: int, epoch: int) -> None:  # type: ignore[override]
        """Keeps only the lines of epochs up to (lr_index, epoch), atomically."""
        super().truncate_metrics(lambda rec: (rec["lr_index"], rec["epoch"]) <= (lr_index, epoch))
