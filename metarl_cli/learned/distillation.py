"""What a distilled student imitates, and what symbolic regression fits: the shared pieces.

Black-box distillation (Goldie et al., 2025, arXiv:2507.17668, §4.2) regresses a student's
outputs on its teacher's with an L2 loss over synthetic inputs drawn from the algorithm's
sampler (`algorithm.sample_inputs`, the statistics of the original scripts, reference §5), so
it needs no environment samples. Each learned algorithm returns its `DistillationProblem` from
`algorithm.distillation_problem(...)` (LPO's in `lpo.py`, No Features' in `nofeat.py`,
OPEN's in `open_distil.py`); the base class here draws data from the sampler and starts the
student from `algorithm.init`.

Symbolic distillation fits a program to the teacher's outputs on one large stationary data
set, `SymbolicData`, which each algorithm builds in `algorithm.symbolic_data(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_CHUNK = 65536


@dataclass(frozen=True)
class DistilOptions:
    """The options of `distil` an algorithm's distillation problem may read (each algorithm
    lists those it reads in `distil_options`; it ignores the rest).

    `target`: what LPO's student imitates ("value" or "grad"); `clip_eps`: the drift's clip
    range; `seq_len`: recurrent OPEN's rollout length; `schedule`: (updates, epochs,
    minibatches) of the runs whose steps recurrent OPEN's rollouts imitate.
    """

    target: str | None = None
    clip_eps: float = 0.2
    seq_len: int | None = None
    schedule: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class DistillationProblem:
    """Base: data from the algorithm's sampler, the held-out set from a fixed key.

    A subclass gives `outputs(theta, architecture, batch)`: the compared vector, the same
    function for teacher and student.
    """

    algorithm: Any

    def sample(self, key: Any, n: int) -> dict[str, Any]:
        """A fresh batch of `n` synthetic inputs."""
        return self.algorithm.sample_inputs(key, n)

    def test_batch(self, key: Any, n: int) -> dict[str, Any]:
        """The held-out set (`key` is fixed by the caller)."""
        return self.sample(key, n)

    def init_student(self, key: Any, architecture: dict[str, int]) -> Any:
        """The student's starting meta-parameters."""
        return self.algorithm.init(key, **architecture)

    def outputs(self, theta: Any, architecture: dict[str, int], batch: dict) -> Any:
        """The compared outputs of the network `theta` of `architecture` on `batch`."""
        raise NotImplementedError

    def reference(self, batch: dict) -> Any:
        """The part of the outputs the hand-designed reference already gives (None: nothing);
        the relative error is measured against the teacher's departure from it."""
        del batch
        return None


@dataclass
class SymbolicData:
    """Inputs and targets of symbolic regression (float32).

    Attributes:
        names: the columns of `x` (symbolic variable names).
        x: inputs [n, d].
        y: the target [n]: drift, d drift / dr (a drift with grad loss) or the update.
        drift: drift algorithms only: the teacher's drift values [n] (the target in value mode).
        ratio: drift algorithms only: r [n].
    """

    names: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    drift: np.ndarray | None = None
    ratio: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> SymbolicData:
        """The subset of rows `rows` (every per-row array indexed alike)."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return SymbolicData(
            self.names, self.x[rows], self.y[rows], pick(self.drift), pick(self.ratio)
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])


def chunked(fn: Any, *arrays: np.ndarray) -> np.ndarray:
    """`fn` over the leading axis in chunks (bounds memory for a million points), float32."""
    n = arrays[0].shape[0]
    parts = [np.asarray(fn(*(a[i : i + _CHUNK] for a in arrays))) for i in range(0, n, _CHUNK)]
    return np.concatenate(parts).astype(np.float32)
