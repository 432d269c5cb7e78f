"""`DiscoverConfig`: everything `metarl discover` was asked to do (frozen, validated)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from metarl_cli.errors import MetarlError


class DiscoverError(MetarlError):
    """The run cannot go on (the warm start cannot be evaluated, nothing to write)."""


# Fields a resumed run must share with the saved one: they define what a fitness means.
FITNESS_FIELDS = ("algo", "envs", "num_runs", "timesteps", "overrides", "seed", "prompt")
# What a saved run without a field (written by an older metarl) used.
_SAVED_DEFAULTS = {"prompt": "improved"}


class DiscoverConfig(BaseModel):
    """A discover run (defaults: the paper's, o3-mini and 30 turns as the original loop).

    Attributes:
        algo: learned algorithm id (lpo, open, open_ff, nofeat); envs: canonical env ids.
        model, base_url: the chat model and an OpenAI-compatible server (None: OpenAI's).
        turns: candidates to ask for in total (a resumed run may raise it).
        num_runs, timesteps, overrides, seed: the fitness evaluation (PPO seeds per env, the
            budget per run, `--set` values, master seed shared by every candidate).
        validate_timeout, eval_timeout: wall-clock seconds per sandboxed job (`eval_timeout`
            None: proportional to the evaluation's env steps, `loop.eval_timeout_for`).
        memory_gb: how much a sandboxed RL evaluation may allocate (validation: at most 4).
        max_cost: stop before the estimated spend passes this (USD); price: (in, out) USD per
            1M tokens when the model is not in the price table.
        json_mode: ask for `response_format={"type": "json_object"}`.
        request_timeout, retries: per model request.
        api_key_env: the environment variable holding the API key (its name is recorded, never
            its value).
        replay: a recorded conversation to serve instead of calling a model.
        prompt: `improved` (this package's prompt, the default) or `paper` (Supplement D as
            printed, `Fitness: X.` feedback, validity checks limited to finiteness and shape:
            the setting that reproduces the paper).
        unsafe_no_sandbox: run candidates even where a required confinement layer is
            missing on this machine (see docs/discover.md's threat model).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    algo: str
    envs: list[str] = Field(min_length=1)
    model: str = "o3-mini"
    base_url: str | None = None
    turns: int = Field(30, ge=1)
    num_runs: int = Field(8, ge=1)
    timesteps: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    validate_timeout: float = Field(60.0, gt=0)
    eval_timeout: float | None = Field(None, gt=0)
    memory_gb: float = Field(16.0, ge=0)
    max_cost: float | None = Field(None, gt=0)
    price: tuple[float, float] | None = None
    json_mode: bool = True
    request_timeout: float = Field(600.0, gt=0)
    retries: int = Field(8, ge=0)
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    replay: str | None = None
    prompt: Literal["improved", "paper"] = "improved"
    unsafe_no_sandbox: bool = False

    @field_validator("timesteps", mode="before")
    @classmethod
    def _steps_as_text(cls, v: Any) -> Any:
        return None if v is None else str(v)

    @field_validator("price")
    @classmethod
    def _price_non_negative(cls, v: Any) -> Any:
        if v is not None and min(v) < 0:
            raise ValueError("prices must be >= 0 (USD per million input, output tokens)")
        return v


def config_differences(saved: dict[str, Any], cfg: DiscoverConfig) -> list[str]:
    """The fitness-defining fields that differ between a saved run and `cfg`."""
    now = cfg.model_dump(mode="json")
    return [
        f"{k}: saved {saved.get(k, _SAVED_DEFAULTS.get(k))!r}, now {now[k]!r}"
        for k in FITNESS_FIELDS
        if saved.get(k, _SAVED_DEFAULTS.get(k)) != now[k]
    ]
