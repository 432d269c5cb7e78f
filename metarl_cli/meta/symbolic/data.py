"""The teacher and its data: what symbolic distillation fits (paper §4.4, reference §6.2).

The data is the teacher's output on synthetic inputs, generated once as one large stationary
set (the search then draws batches from it). What the inputs and targets are is the
algorithm's knowledge (`algorithm.symbolic_data`, `algorithm.symbolic_holdout`):

* **LPO** (`learned/lpo.py`): the original's deterministic grid, `A` on [-4, 4) and `log r` on
  [-1, 1) (1024 x 1024 points by default, r = 1 included), inputs `[log_r, r_minus_1, A]`; the
  target is the teacher's drift `relu(ppo_drift + net)` or, with `grad_loss`, its derivative
  in r (the original fitted the gradient against the drift *value*, reference §6.3; here the
  target really is the gradient, by forward-mode autodiff).
* **OPEN feed-forward** (`learned/open_distil.py`): the 19 OPEN features of `sample_inputs`
  draws, second-moment normalised over the whole set (which stands in for one tensor, as in
  the original), plus `rand`; the target is the teacher's full stochastic update
  `o0 * 1e-3 * exp(o1 * 1e-3) + o2 * 1e-3 * rand`.
* **No Features** (`learned/nofeat.py`): the 8 normalised inputs `[p, m x 6, g]`; the target
  is the deterministic update `o0 * 1e-3 * exp(o1 * 1e-3)`.

Recurrent teachers are refused (paper §6): a window of 20 steps of OPEN's 20 inputs would need
hundreds of symbolic variables. Code and symbolic artefacts are refused: there is nothing
black-box to distil.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metarl_cli.errors import ArtefactError, ConfigError
from metarl_cli.learned.distillation import SymbolicData

DistilData = SymbolicData  # the name this module used before the data moved to the algorithms

# Why recurrent algorithms are refused.
RECURRENT_REASON = (
    "symbolic distillation does not support recurrent algorithms (paper §6): a recurrent "
    "learned algorithm would need a window of past inputs, e.g. 20 steps x 20 inputs = "
    "hundreds of symbolic variables, far beyond what symbolic regression can search; distil "
    "it into a feed-forward network first, or use open_ff"
)


@dataclass(frozen=True)
class Teacher:
    """A neural teacher artefact, validated.

    Attributes:
        path: the artefact file.
        digest: its file sha256 (the student's `parent_digest`).
        algorithm: the registered learned algorithm.
        theta: its meta-parameters (nested dict of numpy arrays).
        architecture: its network sizes.
        training_envs: where it was meta-trained.
    """

    path: Path
    digest: str
    algorithm: Any
    theta: Any
    architecture: dict[str, Any]
    training_envs: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.algorithm.name


def load_teacher(path: str | Path) -> Teacher:
    """Loads and validates a teacher: a neural, feed-forward, supported artefact.

    Raises:
        ArtefactError: unreadable file, a non-neural artefact, a feature-spec mismatch.
        ConfigError: a recurrent or unsupported algorithm.
    """
    from metarl_cli.learned.loader import load_kernel

    path = Path(path)
    loaded = load_kernel(path)
    manifest, tensors = loaded.manifest, loaded.tensors
    if manifest.form != "neural":
        raise ArtefactError(
            f"{path} is a {manifest.form} artefact; symbolic distillation needs a neural "
            "teacher (an artefact from `metarl train es` or distillation)"
        )
    if loaded.algorithm.recurrent:
        raise ConfigError(f"{path}: {manifest.algorithm} is recurrent; {RECURRENT_REASON}")
    if not supports(loaded.algorithm):
        names = [a.name for a in supported()]
        raise ConfigError(
            f"{path}: symbolic distillation supports {', '.join(names)}, not {manifest.algorithm!r}"
        )
    return Teacher(
        path=path,
        digest=loaded.digest,
        algorithm=loaded.algorithm,
        theta=tensors,
        architecture=dict(manifest.architecture),
        training_envs=tuple(manifest.training_envs),
    )


def supports(algorithm: Any) -> bool:
    """Whether symbolic distillation can distil `algorithm`: feed-forward, with a symbolic
    form and symbolic data."""
    return (
        not algorithm.recurrent
        and "symbolic" in algorithm.forms
        and hasattr(algorithm, "symbolic_data")
    )


def supported() -> list[Any]:
    """The registered algorithms symbolic distillation supports."""
    from metarl_cli.learned.base import algorithms

    return [a for a in algorithms() if supports(a)]


def make_data(
    teacher: Teacher, num_points: int, key: Any, *, grad_loss: bool, clip_eps: float = 0.2
) -> SymbolicData:
    """The teacher's outputs on its algorithm's synthetic inputs (module doc)."""
    algorithm = teacher.algorithm
    if grad_loss and algorithm.slot != "drift":
        raise ConfigError(f"--grad-loss is for {drift_names()} only (it fits d drift / d r)")
    return algorithm.symbolic_data(
        teacher.theta,
        teacher.architecture,
        key,
        num_points,
        grad_loss=grad_loss,
        clip_eps=clip_eps,
    )


def drift_names() -> str:
    """The display names of the supported drift algorithms (what `--grad-loss` is for)."""
    return ", ".join(a.display_name for a in supported() if a.slot == "drift") or "drifts"


def holdout_inputs(teacher: Teacher, key: Any, n: int) -> dict[str, np.ndarray]:
    """Fresh inputs (not the training set) for the round trip: variable name -> [n]."""
    return teacher.algorithm.symbolic_holdout(key, n)
