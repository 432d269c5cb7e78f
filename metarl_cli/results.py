"""The evaluation result file: a pydantic-validated JSON document (input of `metarl report`)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metarl_cli.artefacts.manifest import Manifest
from metarl_cli.errors import EvaluationError
from metarl_cli.fsutil import atomic_write_text, read_regular_file


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Summary(_Frozen):
    """Statistics over runs of the finite final returns (None when no run finished an episode)."""

    n: int
    mean: float | None
    iqm: float | None
    iqm_ci_low: float | None
    iqm_ci_high: float | None
    min: float | None
    max: float | None


class EnvResult(_Frozen):
    """One environment: per-run final returns and thinned curves, timings and the config."""

    env_id: str
    config: dict[str, Any]
    final_returns: list[float | None]  # None: no episode finished in the final window
    final_episodes: list[int]
    curve_steps: list[int]
    curves: list[list[float | None]]
    normaliser: float | None
    summary: Summary
    env_steps_per_run: int
    compile_s: float
    run_s: float
    env_steps_per_s: float
    diverged: list[bool] = []  # the run's final losses were NaN or infinite


class Target(_Frozen):
    """What was evaluated: a built-in baseline or an artefact (with its file digest).

    The provenance fields (training envs onwards) are copied from the artefact's manifest so a
    report needs only the result files; they default to empty for older result files.
    """

    kind: Literal["baseline", "artefact"]
    name: str
    algorithm: str | None = None
    path: str | None = None
    digest: str | None = None
    form: str | None = None
    spec_digest: str | None = None
    training_envs: list[str] = []  # meta-training envs: in-distribution for this kernel
    meta_learner: str | None = None  # "es", "distil", "symbolic", "llm", "import", ...
    meta_train: dict[str, Any] = {}  # env_steps, wall_s, generation where the manifest has them
    parent_digest: str | None = None
    architecture: dict[str, Any] = {}
    num_parameters: int | None = None  # neural kernels: size of theta
    text: str | None = None  # symbolic expression or code source


SCHEMA_VERSION = 1
"""The result-file layout this release reads and writes (optional fields may be added)."""


class EvalResult(_Frozen):
    """The result file of `metarl evaluate` (schema version 1), the input of `metarl report`."""

    schema_version: Literal[1] = 1
    target: Target
    seed: int
    num_runs: int
    envs: list[EnvResult]
    devices: dict[str, Any]
    versions: dict[str, str]
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    suite: str | None = None  # the --suite evaluated (None: an explicit --envs list)
    timesteps_scale: float | None = None  # --timesteps-scale applied to the preset budgets
    # The seed stream of the runs (`metarl_cli/seeds.py`): "meta_test" for `metarl evaluate`;
    # None in files written before streams existed (their runs used `split(key(seed), n)`).
    stream: str | None = None


def clean(values: Any) -> Any:
    """NaN/inf -> None, recursively, so the JSON is strict (no NaN tokens)."""
    if isinstance(values, float):
        return values if math.isfinite(values) else None
    if isinstance(values, list | tuple):
        return [clean(v) for v in values]
    return values


def write_result(result: EvalResult, path: Path, *, force: bool) -> None:
    """Writes the result atomically; refuses to overwrite without `force`."""
    atomic_write_text(path, result.model_dump_json(indent=2) + "\n", force=force)


def read_result(path: Path) -> EvalResult:
    """Reads and validates a result file, with a one-line error on failure."""
    raw = read_regular_file(path, what="result file", max_bytes=1 << 28, error=EvaluationError)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSON and UTF-8 errors are ValueErrors
        raise EvaluationError(f"{path} is not valid JSON: {' '.join(str(e).split())}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(data, dict) and "envs" in data and version != SCHEMA_VERSION:
        raise EvaluationError(
            f"{path} has result schema version {version!r}; this metarl reads version "
            f"{SCHEMA_VERSION} (re-run `metarl evaluate`, or use the metarl that wrote it)"
        )
    try:
        return EvalResult.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EvaluationError(f"{path} is not a metarl result: {where}: {first['msg']}") from e


# What a meta-learner may record about its run in the manifest config: costs (ES writes env
# steps and wall time, distillation its wall time) and distillation's network sizes.
_META_TRAIN_KEYS = (
    "env_steps",
    "eval_env_steps",
    "wall_s",
    "chosen_generation",
    "generations",
    "teacher_params",
    "student_params",
)


def provenance(manifest: Manifest, tensors: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields a report needs (training envs, meta-learner and its costs, text)."""
    config = manifest.meta_learner.config if manifest.meta_learner else {}
    meta_train = {
        k: config[k]
        for k in _META_TRAIN_KEYS
        if isinstance(config.get(k), int | float) and not isinstance(config.get(k), bool)
    }
    if manifest.generation is not None:
        meta_train["generation"] = manifest.generation
    return dict(
        training_envs=list(manifest.training_envs),
        meta_learner=manifest.meta_learner.name if manifest.meta_learner else None,
        meta_train=meta_train,
        parent_digest=manifest.parent_digest,
        architecture=dict(manifest.architecture),
        num_parameters=_size(tensors) if manifest.form == "neural" else None,
        text=manifest.expression if manifest.form == "symbolic" else manifest.source,
    )


def _size(tensors: Any) -> int:
    """The number of entries of a (nested) dict of arrays (LPG's theta is nested)."""
    if isinstance(tensors, dict):
        return sum(_size(t) for t in tensors.values())
    return int(np.asarray(tensors).size)
