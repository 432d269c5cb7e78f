"""`plan_distil`: validate a distillation run (teacher, student sizes, envs, paths) up front.

Nothing is written or compiled until the plan is complete, so every bad input (a teacher that
is not a network, a network too small to halve, an `--hsize` that does not fit, an unknown env,
an existing output) is a one-line error with nothing left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from metarl_cli.config import TrainConfig, build_config
from metarl_cli.errors import ArtefactError, ConfigError
from metarl_cli.meta.distil.config import PAPER_LRS, ROLLOUTS, DistilConfig
from metarl_cli.meta.distil.rundir import DistilRunDir
from metarl_cli.meta.normalisers import check_normalisers
from metarl_cli.seeds import SELECTION, run_key_data

SIZES = ("same", "smaller")
# The MinAtar preset's PPO schedule (updates at 1e7 steps, epochs, minibatches): the default
# shape of recurrent OPEN's sequences when no env is given.
DEFAULT_SCHEDULE = (1220, 4, 8)
SizeMode = Literal["same", "smaller", "hsize"]
Target = Literal["value", "grad"]
Rollout = Literal["long", "short"]


@dataclass
class DistilPlan:
    """A validated run: nothing has been written yet."""

    cfg: DistilConfig
    teacher_path: Path
    algorithm: Any
    teacher_theta: Any  # nested dict of numpy arrays
    teacher_manifest: Any
    train_configs: list[TrainConfig]
    output: Path
    run_dir: DistilRunDir
    resume: bool
    force: bool
    resume_from: tuple[int, int] | None  # (lr index, epoch) of a checkpoint being resumed


def widths(algorithm: Any, architecture: dict[str, Any]) -> dict[str, int]:
    """The layer widths of `architecture` that the algorithm's network uses."""
    keys = algorithm.widths
    missing = [k for k in keys if not isinstance(architecture.get(k), int)]
    if missing:
        raise ArtefactError(
            f"the teacher's manifest architecture {architecture} has no integer "
            f"{', '.join(missing)} for {algorithm.name!r}"
        )
    return {k: int(architecture[k]) for k in keys}


def student_architecture(
    algorithm: Any, teacher_arch: dict[str, Any], size: str | None, hsize: int | None
) -> tuple[str, dict[str, int]]:
    """(size mode, the student's architecture) for `--size` and `--hsize` (see the CLI)."""
    t = widths(algorithm, teacher_arch)
    if size is not None and size not in SIZES:
        raise ConfigError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    by_size: dict[str, int] | None = None
    if size == "smaller":
        halved = {k: v // 2 for k, v in t.items()}
        small = [f"{k} {t[k]}" for k, v in halved.items() if v < 1]
        if small:
            raise ConfigError(
                f"--size smaller cannot halve the teacher's {', '.join(small)} (a width below "
                "1); use --size same"
            )
        by_size = halved
    elif size == "same" or (size is None and hsize is None):
        by_size = dict(t)
    if hsize is not None:
        arch = {k: int(v) for k, v in algorithm.architecture_for(hsize).items()}
        if by_size is not None and widths(algorithm, arch) != by_size:
            raise ConfigError(
                f"--hsize {hsize} gives {widths(algorithm, arch)}, but --size {size} of the "
                f"teacher's {t} gives {by_size}; pass only one of them"
            )
        return (size or "hsize"), arch
    assert by_size is not None and size in (None, *SIZES)
    arch = algorithm.architecture_with(by_size)
    return size or "same", {k: int(v) for k, v in arch.items()}


def _refuse_option(algorithm: Any, option: str, value: Any) -> None:
    """A distillation option the teacher's problem does not take is an error naming those
    that do (recurrent ones as such)."""
    if value is None or option in algorithm.distil_options:
        return
    from metarl_cli.learned.base import algorithms

    takers = [
        f"{'recurrent ' if a.recurrent else ''}{a.display_name}"
        for a in algorithms()
        if option in a.distil_options
    ]
    raise ConfigError(
        f"--{option} applies to {' and '.join(takers) or 'no algorithm'} only; the teacher is "
        f"{algorithm.name!r}"
    )


def _load_teacher(path: str | Path) -> tuple[Any, Any, Any]:
    """(manifest, algorithm, theta) of a neural teacher, checked by the one artefact loader
    (integrity, feature spec, tensors against the architecture)."""
    from metarl_cli.learned.loader import load_kernel

    loaded = load_kernel(path)
    manifest = loaded.manifest
    if manifest.form != "neural":
        raise ConfigError(
            f"distillation needs a network; {Path(path).name} is a {manifest.form} kernel "
            f"({manifest.algorithm}), not a neural artefact"
        )
    widths(loaded.algorithm, manifest.architecture)  # a network distillation can resize
    return manifest, loaded.algorithm, loaded.tensors


def plan_distil(
    teacher: str | Path,
    output: str | Path,
    *,
    size: str | None = None,
    hsize: int | None = None,
    lrs: list[float] | None = None,
    epochs: int = 10,
    iters: int = 100_000,
    lr_end: float = 1e-5,
    batch_size: int = 2048,
    test_size: int = 10_000,
    target: str | None = None,
    rollout: str | None = None,
    envs: list[str] | None = None,
    num_runs: int = 8,
    timesteps: int | str | None = None,
    overrides: dict[str, Any] | None = None,
    eval_every: int = 1,
    seed: int = 0,
    run_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
) -> DistilPlan:
    """Validates a run without writing or compiling anything (envs: canonical ids; None: the
    teacher's training envs)."""
    from metarl_cli.artefacts import artefact_digest

    manifest, algorithm, tensors = _load_teacher(teacher)
    mode, student = student_architecture(algorithm, manifest.architecture, size, hsize)
    _check_problem_options(algorithm, target, rollout)
    env_ids = list(manifest.training_envs if envs is None else envs)
    configs = _eval_configs(teacher, env_ids, num_runs, timesteps, overrides, seed, algorithm)
    first = configs[0] if configs else None
    takes_target = "target" in algorithm.distil_options
    is_recurrent = "rollout" in algorithm.distil_options  # sequences of a PPO run's steps
    cfg = DistilConfig(
        teacher=Path(teacher).name,
        teacher_digest=artefact_digest(teacher),
        algo=algorithm.name,
        size=cast(SizeMode, mode),
        teacher_architecture={
            k: int(v) for k, v in manifest.architecture.items() if isinstance(v, int)
        },
        student_architecture=student,
        lrs=list(PAPER_LRS if lrs is None else lrs),
        epochs=epochs,
        iters=iters,
        lr_end=lr_end,
        batch_size=batch_size,
        test_size=test_size,
        target=cast(Target, target or "value") if takes_target else None,
        rollout=cast(Rollout, rollout or "long") if is_recurrent else None,
        seq_len=ROLLOUTS[rollout or "long"] if is_recurrent else None,
        schedule=_schedule(first) if is_recurrent else None,
        clip_eps=first.clip_eps if first else 0.2,
        envs=env_ids,
        num_runs=num_runs,
        timesteps=cast(Any, timesteps),  # a budget string is parsed by the model
        overrides=overrides or {},
        eval_every=eval_every,
        seed=seed,
    )
    out, rd = DistilRunDir.for_output(output, run_dir, resume=resume, force=force)
    resume_from = rd.saved_position(cfg) if resume else None
    return DistilPlan(
        cfg, Path(teacher), algorithm, tensors, manifest, configs, out, rd, resume, force,
        resume_from,
    )  # fmt: skip


def _check_problem_options(algorithm: Any, target: str | None, rollout: str | None) -> None:
    """`--target` and `--rollout`: taken by the teacher's problem and valid values."""
    _refuse_option(algorithm, "target", target)
    _refuse_option(algorithm, "rollout", rollout)
    if target is not None and target not in ("value", "grad"):
        raise ConfigError(f"--target must be value or grad, got {target!r}")
    if rollout is not None and rollout not in ROLLOUTS:
        raise ConfigError(f"--rollout must be long or short, got {rollout!r}")


def _eval_configs(
    teacher: str | Path,
    env_ids: list[str],
    num_runs: int,
    timesteps: int | str | None,
    overrides: dict[str, Any] | None,
    seed: int,
    algorithm: Any = None,
) -> list[TrainConfig]:
    """The configs of the periodic RL evaluations, checked (envs, normalisers, seed): the env's
    preset beneath the algorithm's `train_defaults` (LPG: 64 x 20 rollouts) beneath `--set`."""
    if num_runs > 0 and not env_ids:
        raise ConfigError(
            f"{Path(teacher).name} names no training envs to evaluate students on; pass --envs "
            "(or --num-runs 0 to select by held-out loss alone)"
        )
    from metarl_cli.learned.trainers import with_train_defaults  # as load_kernel: JAX, lazily

    defaults = with_train_defaults(algorithm, None)
    configs = [
        build_config(e, timesteps=timesteps, overrides=overrides, file_values=defaults)
        for e in env_ids
    ]
    check_normalisers(
        {c.env_id: c.ppo_normaliser for c in configs}, fix="evaluate on it alone with --envs"
    )
    if num_runs > 0:
        run_key_data(SELECTION, seed, num_runs)  # a bad --seed fails before anything runs
    return configs


def _schedule(first: TrainConfig | None) -> tuple[int, int, int]:
    """Recurrent OPEN's (updates, epochs, minibatches): the first eval env's PPO schedule."""
    if first is None:
        return DEFAULT_SCHEDULE
    return (first.num_updates, first.update_epochs, first.num_minibatches)
