"""Frozen, validated configuration models (pydantic; no JAX import here).

`TrainConfig` holds everything one PPO training run needs. Derived sizes (batch, minibatch,
number of updates) are computed properties, never stored, and a validator names the flag to
change when they do not work out.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from metarl_cli.config.presets import BRAX_NORMALISER_BACKEND, preset
from metarl_cli.envs.registry import ENVS
from metarl_cli.errors import ConfigError, UnknownNameError
from metarl_cli.fsutil import read_regular_file

_INT32_MAX = 2**31 - 1


def _short(n: int) -> str:
    """3 significant digits of an int of any size (a float cannot hold every int)."""
    return f"{n:.3g}" if n < 10**300 else f"{str(n)[0]}e+{len(str(n)) - 1}"


def parse_budget(v: Any) -> Any:
    """A step budget written as 5e5 or 1e7 (command line, paper) -> int; other values pass."""
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError as e:
            raise ValueError(f"not a number: {v!r}") from e
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"must be a whole number of steps, got {v}")
        v = int(v)
    return v


# A meta-learner's PPO budget per run (None: the preset's), written as 5e5 or 1e7 if wanted.
OptionalBudget = Annotated[int | None, BeforeValidator(parse_budget)]


class TrainConfig(BaseModel):
    """One PPO training run on one environment (the paper's Table 2 plus Tables 4-6).

    Attributes are the paper's names in snake case; `lr`, `b1`, `b2` are PPO's Adam settings.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    env_id: str
    num_envs: int = Field(gt=0)
    num_steps: int = Field(gt=0)
    total_timesteps: int = Field(gt=0)
    num_minibatches: int = Field(gt=0)
    update_epochs: int = Field(gt=0)
    gamma: float = Field(0.99, ge=0.0, le=1.0)
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0)
    clip_eps: float = Field(0.2, gt=0.0)
    vf_coef: float = Field(0.5, ge=0.0)
    ent_coef: float = Field(0.01, ge=0.0)
    max_grad_norm: float = Field(0.5, gt=0.0)
    hidden_size: int = Field(64, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    activation: Literal["relu", "tanh"] = "tanh"
    anneal_lr: bool = True
    lr: float = Field(gt=0.0)
    b1: float = Field(0.9, ge=0.0, lt=1.0)
    b2: float = Field(0.999, ge=0.0, lt=1.0)
    adam_eps: float = Field(1e-5, gt=0.0)
    sgd_lr: float = Field(gt=0.0)
    l2o_lr: float = Field(gt=0.0)
    ppo_normaliser: float | None = None
    sgd_normaliser: float | None = None
    normalize_obs: bool = False
    normalize_reward: bool = False
    clip_action: bool = False
    brax_backend: Literal["spring", "positional", "generalized", "mjx"] = "positional"
    episode_length: int = Field(1000, gt=0)
    curve_points: int = Field(100, gt=0)
    final_window: float = Field(0.05, gt=0.0, le=1.0)

    @field_validator("total_timesteps", mode="before")
    @classmethod
    def _parse_budget(cls, v: Any) -> Any:
        return parse_budget(v)

    @model_validator(mode="after")
    def _check_sizes(self) -> TrainConfig:
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"num_envs x num_steps = {self.batch_size} does not divide into "
                f"num_minibatches = {self.num_minibatches}; change num_minibatches, num_envs or "
                "num_steps with --set"
            )
        if self.total_timesteps < self.batch_size:
            raise ValueError(
                f"total_timesteps = {self.total_timesteps} is less than one update "
                f"(num_envs x num_steps = {self.batch_size}); raise --timesteps to at least "
                f"{self.batch_size:g} or lower num_envs/num_steps with --set"
            )
        # The trainer indexes updates x curve points in JAX's 32-bit integers.
        points = min(self.curve_points, self.num_updates)
        if self.num_updates * points > _INT32_MAX:
            most = _INT32_MAX // points * self.batch_size
            raise ValueError(
                f"total_timesteps = {_short(self.total_timesteps)} is too large: "
                f"{_short(self.num_updates)} updates overflow the trainer's 32-bit counters; use "
                f"--timesteps of at most {most:.3g} (or lower curve_points with --set)"
            )
        return self

    @property
    def batch_size(self) -> int:
        """Transitions collected per update."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Transitions per minibatch: batch_size / num_minibatches."""
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        """Whole updates that fit in the budget (the remainder is not run)."""
        return self.total_timesteps // self.batch_size

    @property
    def env_steps(self) -> int:
        """Environment steps actually taken."""
        return self.num_updates * self.batch_size

    @property
    def suite(self) -> str:
        """The env suite, the namespace of `env_id` ("minatar", "brax", ...)."""
        return self.env_id.split("/")[0]


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parses `--set key=value` items; values are JSON where they parse, else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """Reads overrides from a .json or .toml file: a flat table, or per-env tables by env id.

    Per-env tables may be keyed by an alias (`[cartpole]`); they come back keyed by the
    canonical id. A table naming no known environment is an error, never silently ignored.
    """
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    raw = read_regular_file(
        path, what="config file", max_bytes=_MAX_CONFIG_BYTES, error=ConfigError
    )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (a binary file?)") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, RecursionError) as e:  # JSON and TOML decode errors are ValueErrors
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"cannot parse config file {path}: {reason}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of key = value")
    return _canonical_env_tables(path, data)


_MAX_CONFIG_BYTES = 1 << 20


def _canonical_env_tables(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its per-env tables keyed by canonical env id; unknown ids are errors."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(value, dict):
            out[key] = value
            continue
        try:
            env_id = ENVS.resolve(key)
        except UnknownNameError as e:
            nested = any(isinstance(v, dict) for v in value.values())
            hint = f'; quote an id with a slash: ["{key}/..."]' if nested else ""
            raise ConfigError(f"config file {path}: table [{key}]: {e}{hint}") from None
        if env_id in out:
            raise ConfigError(f"config file {path}: two tables for {env_id}; merge them")
        out[env_id] = value
    return out


def build_config(
    env_id: str,
    *,
    timesteps: float | int | str | None = None,
    overrides: dict[str, Any] | None = None,
    file_values: dict[str, Any] | None = None,
) -> TrainConfig:
    """Preset < config file < --set < --timesteps, validated.

    A config file may hold flat keys (applied to every env) and tables keyed by env id or
    alias-free id (e.g. `["minatar/breakout"]`) applied to that env only.
    """
    values = preset(env_id)
    for source in (file_values or {}, overrides or {}):
        flat = {k: v for k, v in source.items() if not isinstance(v, dict)}
        values.update(flat)
        per_env = source.get(env_id)
        if isinstance(per_env, dict):
            values.update(per_env)
    if timesteps is not None:
        values["total_timesteps"] = timesteps
    backend = values.get("brax_backend", "positional")
    if env_id.startswith("brax/") and backend != BRAX_NORMALISER_BACKEND:
        # The preset normalisers were measured on the positional backend: none elsewhere,
        # unless the user gives their own.
        sources = (file_values or {}, overrides or {})
        given = {k for s in sources for k in s}
        given |= {k for s in sources if isinstance(s.get(env_id), dict) for k in s[env_id]}
        for key in ("ppo_normaliser", "sgd_normaliser"):
            if key not in given:
                values[key] = None
    if values.get("env_id") != env_id:
        raise ConfigError(f"env_id cannot be overridden (got {values.get('env_id')!r})")
    return TrainConfig(**values)
