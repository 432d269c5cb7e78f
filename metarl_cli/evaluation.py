"""Meta-testing: train with a given algorithm on many environments and seeds, summarise.

`evaluate(target, env_ids, ...)` validates everything (target, envs, every config) before it
runs anything, then trains `num_runs` seeds per environment with the sharded runner and returns
an `EvalResult`. `target` is a built-in baseline name or an artefact path.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from metarl_cli._version import package_versions
from metarl_cli.analysis.stats import summarise
from metarl_cli.baselines import BASELINES
from metarl_cli.config import TrainConfig, build_config
from metarl_cli.envs import make_env
from metarl_cli.errors import ArtefactError, ConfigError, UnknownNameError
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.loader import load_kernel
from metarl_cli.learned.trainers import train_defaults
from metarl_cli.results import EnvResult, EvalResult, Summary, Target, clean, provenance

# Modules, not names: tests replace `ppo.make_train` and `progress.ProgressRunner`.
from metarl_cli.rl import parallel, ppo, progress
from metarl_cli.rl.slots import Theta
from metarl_cli.seeds import META_TEST, run_key_data, run_keys


def resolve_target(
    target: str, expect_algorithm: str | None = None
) -> tuple[Target, Callable[[TrainConfig], Any], Theta]:
    """Returns (target record, cfg -> Slots, theta) for a baseline name or an artefact path.

    `expect_algorithm`: refuse an artefact (or baseline) of any other algorithm.
    """
    looks_like_file = target.endswith(".safetensors") or "/" in target or Path(target).exists()
    if not looks_like_file:
        try:
            baseline = BASELINES.get(target)
        except UnknownNameError as e:
            raise UnknownNameError(f"{e}; or pass the path of an artefact file") from None
        if expect_algorithm is not None:
            raise ArtefactError(
                f"{target!r} is a hand-designed baseline, not a {expect_algorithm!r} artefact"
            )
        return Target(kind="baseline", name=baseline.name), baseline.build, Theta()
    # Validates the file (integrity, manifest, shapes, exported code) before anything else.
    loaded = load_kernel(target, expect_algorithm)
    manifest, tensors = loaded.manifest, loaded.tensors
    theta = loaded.theta

    def build(cfg: TrainConfig) -> Any:  # Slots, or an `OwnTrainer` (an update rule's)
        return loaded.slots(cfg)

    record = Target(
        kind="artefact",
        name=Path(target).name,
        algorithm=manifest.algorithm,
        path=str(target),
        digest=loaded.digest,
        form=manifest.form,
        spec_digest=manifest.feature_spec.digest,
        **provenance(manifest, tensors),
    )
    return record, build, theta


def _runs_as(record: Target) -> Any:
    """The baseline or learned algorithm a target runs as (its `train_defaults`: LPG and A2C
    train on 64 x 20 rollouts, not the env's PPO preset)."""
    if record.kind == "baseline":
        return BASELINES.get(record.name)
    return get_algorithm(str(record.algorithm))


def target_train_defaults(target: str, expect_algorithm: str | None = None) -> dict[str, Any]:
    """The `TrainConfig` values `target` (a baseline name or an artefact path, verified) runs
    with by default, beneath a config file and `--set` (`build_configs`' `defaults`)."""
    return train_defaults(_runs_as(resolve_target(target, expect_algorithm)[0]))


def scaled_timesteps(
    env_id: str,
    scale: float,
    overrides: dict[str, Any] | None = None,
    file_values: dict[str, Any] | None = None,
) -> int:
    """`scale` x the env's configured budget (preset < file < --set), rounded to whole steps.

    Raises ConfigError when the scaled budget is not even one update, naming the smallest scale.
    """
    if not scale > 0:
        raise ConfigError(f"--timesteps-scale must be positive, got {scale}")
    cfg = build_config(env_id, overrides=overrides, file_values=file_values)
    steps = round(cfg.total_timesteps * scale)
    if steps < cfg.batch_size:
        raise ConfigError(
            f"--timesteps-scale {scale:g} gives {steps} steps on {env_id}, less than one update "
            f"({cfg.batch_size} = num_envs x num_steps); use at least "
            f"{cfg.batch_size / cfg.total_timesteps:.2g}, or shrink num_envs/num_steps with --set"
        )
    return steps


def device_info() -> dict[str, Any]:
    """The platform, count and kind of this process's JAX devices (recorded in a result)."""
    devices = jax.local_devices()
    return {
        "platform": devices[0].platform,
        "count": len(devices),
        "kind": devices[0].device_kind,
        "processes": jax.process_count(),
    }


def evaluate(
    target: str,
    env_ids: list[str],
    *,
    num_runs: int,
    seed: int = 0,
    chunk: int | None = None,
    timesteps: float | int | str | None = None,
    overrides: dict[str, Any] | None = None,
    file_values: dict[str, Any] | None = None,
    on_event: Callable[[str, str], None] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    expect_algorithm: str | None = None,
    timesteps_scale: float | None = None,
    suite: str | None = None,
    stream: str = META_TEST,
) -> EvalResult:
    """Trains `num_runs` seeds of `target` on each env and returns the validated result.

    Args:
        target: baseline name ("ppo") or artefact path.
        env_ids: canonical env ids.
        num_runs: seeds per environment.
        seed: master seed; run i of every env uses run i of `stream` (see `seeds.py`).
        chunk: runs vmapped together per device (None: all; 1: unbatched, results that do
            not depend on the number of devices).
        timesteps: budget per run (overrides the preset).
        overrides: `--set` values; file_values: `--config` values (over `train_defaults`).
        on_event: `on_event(env_id, phase)` for progress ("compiling", "running", "done").
        on_progress: `on_progress(env_id, fraction)` as the run advances (the run is split
            into segments on the host, `rl/progress.py`; the results are the same).
        expect_algorithm: refuse an artefact of any other algorithm.
        timesteps_scale: multiply each env's configured budget (exclusive with `timesteps`).
        suite: the suite name `env_ids` came from, recorded in the result.
        stream: the seed stream: `meta_test` for meta-testing; meta-learners score their
            candidates on `selection`, so selection seeds never meta-test what they chose.
    """
    if num_runs < 1:
        raise ConfigError(f"--num-runs must be at least 1, got {num_runs}")
    run_key_data(stream, seed, num_runs)  # a bad seed or stream fails before anything runs
    record, build_slots, theta = resolve_target(target, expect_algorithm)
    configs = build_configs(
        env_ids, timesteps=timesteps, timesteps_scale=timesteps_scale, overrides=overrides,
        file_values=file_values, defaults=train_defaults(_runs_as(record)),  # LPG: 64 x 20
    )  # fmt: skip
    keys = run_keys(stream, seed, num_runs)
    env_results = []
    for cfg in configs:

        def phase(p: str, env_id: str = cfg.env_id) -> None:
            if on_event:
                on_event(env_id, p)

        built, env = build_slots(cfg), make_env(cfg)
        # An update rule (LPG) or A2C brings its own trainer; everything else is PPO's slots.
        own = getattr(built, "trainer", None)
        trainer = own(cfg, env) if own is not None else ppo.make_train(cfg, env, built)
        mesh = parallel.make_mesh(num_runs)
        # In segments, with or without a bar: memory stays flat (rl/progress.py).
        report = partial(on_progress, cfg.env_id) if on_progress is not None else None
        runner = progress.ProgressRunner(trainer, mesh, chunk=chunk, on_progress=report)
        out, timing = runner(theta, keys, on_phase=phase)
        phase("done")
        env_results.append(_env_result(cfg, out, timing, seed))
    return EvalResult(
        target=record,
        seed=seed,
        num_runs=num_runs,
        envs=env_results,
        devices={**device_info(), "chunk": chunk},
        versions=package_versions(),
        suite=suite,
        timesteps_scale=timesteps_scale,
        stream=stream,
    )


def _env_result(cfg: TrainConfig, out: Any, timing: Any, seed: int) -> EnvResult:
    """One environment's record from the runner's host outputs (`num_runs` along axis 0)."""
    num_runs = len(out.final_return)
    return EnvResult(
        env_id=cfg.env_id,
        config=cfg.model_dump(),
        final_returns=clean([float(x) for x in out.final_return]),
        final_episodes=[int(x) for x in out.final_episodes],
        curve_steps=ppo.curve_steps(cfg),
        curves=clean([[float(v) for v in c] for c in out.curve]),
        normaliser=cfg.ppo_normaliser,
        summary=Summary.model_validate(summarise(out.final_return, seed=seed)),
        env_steps_per_run=cfg.env_steps,
        compile_s=timing.compile_s,
        run_s=timing.run_s,
        env_steps_per_s=num_runs * cfg.env_steps / max(timing.run_s, 1e-9),
        diverged=[not bool(np.all(np.isfinite(row))) for row in np.asarray(out.losses)],
    )


def build_configs(
    env_ids: list[str],
    *,
    timesteps: float | int | str | None = None,
    timesteps_scale: float | None = None,
    overrides: dict[str, Any] | None = None,
    file_values: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> list[TrainConfig]:
    """Validated configs for every env before anything runs (budget: preset, `timesteps` or
    `timesteps_scale` x the configured budget). `defaults`: the target's `train_defaults`,
    above the preset and beneath `file_values` and `overrides`."""
    if timesteps is not None and timesteps_scale is not None:
        raise ConfigError("pass --timesteps or --timesteps-scale, not both")
    file_values = {**(defaults or {}), **(file_values or {})}
    configs = []
    for env_id in env_ids:
        budget = timesteps
        if timesteps_scale is not None:
            budget = scaled_timesteps(env_id, timesteps_scale, overrides, file_values)
        configs.append(
            build_config(env_id, timesteps=budget, overrides=overrides, file_values=file_values)
        )
    return configs
