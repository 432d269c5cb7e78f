"""What a distilled student imitates: the algorithm's own distillation problem.

Black-box distillation (Goldie et al., 2025, arXiv:2507.17668, §4.2) regresses the student's
outputs on the teacher's with an L2 loss over synthetic inputs drawn from the algorithm's
sampler, so it needs no environment samples. What is compared, and how the inputs are drawn,
is the algorithm's knowledge: `algorithm.distillation_problem(...)` returns a
`learned.distillation.DistillationProblem` with `sample(key, n)` (a fresh batch),
`test_batch(key, n)` (the held-out set), `outputs(theta, architecture, batch)` (the compared
vector, the same function for teacher and student), `init_student(key, architecture)` and
`reference(batch)`. Each algorithm documents its compared outputs and where they differ from
the original scripts (`learned/lpo.py`, `learned/nofeat.py`, `learned/open_distil.py`).
"""

from __future__ import annotations

from typing import Any

import jax

from metarl_cli.learned.distillation import DistillationProblem, DistilOptions

Problem = DistillationProblem


def num_params(theta: Any) -> int:
    """Number of meta-parameters in a pytree."""
    return int(sum(x.size for x in jax.tree.leaves(theta)))


def make_problem(
    algorithm: Any,
    *,
    target: str | None = None,
    clip_eps: float = 0.2,
    seq_len: int | None = None,
    schedule: tuple[int, int, int] | None = None,
) -> DistillationProblem:
    """The distillation problem of a learned algorithm (options it does not take are unused)."""
    options = DistilOptions(target=target, clip_eps=clip_eps, seq_len=seq_len, schedule=schedule)
    return algorithm.distillation_problem(options)
