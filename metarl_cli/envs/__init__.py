"""Environments: `make_env(cfg)` builds the wrapped, vectorised env for a `TrainConfig`.

Stack: backend adapter (gymnax | brax | craftax | gridworld) -> episode-return logging (raw
rewards) -> observation and reward normalisation where the preset asks for it (Brax, as in the
original code), so logged returns are always unnormalised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metarl_cli.envs.registry import ENVS, EnvEntry, resolve_envs

if TYPE_CHECKING:  # config/ reads the env registry (this package), so no import at run time
    from metarl_cli.config import TrainConfig

__all__ = ["ENVS", "EnvEntry", "make_env", "resolve_envs"]


def make_env(cfg: TrainConfig) -> Any:
    """Returns a `VecEnv` for `cfg.env_id` with `cfg.num_envs` copies."""
    # The wrappers and adapters import JAX (and brax, craftax): imported here, not above, so
    # that `config/`, which reads this package's registry, stays free of JAX.
    from metarl_cli.envs.base import EpisodeLog, NormalizeObservation, NormalizeReward

    entry = ENVS.get(cfg.env_id)
    # Each backend adapter is imported only for its own suite (brax and craftax are heavy).
    if entry.suite in ("classic", "minatar"):
        from metarl_cli.envs.gymnax_env import GymnaxVecEnv

        env: Any = GymnaxVecEnv(entry.env_id, entry.backend_name, cfg.num_envs)
    elif entry.suite == "brax":
        from metarl_cli.envs.brax_env import BraxVecEnv

        env = BraxVecEnv(
            entry.env_id,
            entry.backend_name,
            cfg.num_envs,
            backend=cfg.brax_backend,
            episode_length=cfg.episode_length,
            clip_action=cfg.clip_action,
        )
    elif entry.suite == "craftax":
        from metarl_cli.envs.craftax_env import CraftaxVecEnv

        env = CraftaxVecEnv(entry.env_id, entry.backend_name, cfg.num_envs)
    elif entry.suite == "gridworld":
        from metarl_cli.envs.gridworld import GridworldVecEnv

        env = GridworldVecEnv(entry.env_id, entry.backend_name, cfg.num_envs)
    else:  # pragma: no cover - the registry only holds the suites above
        raise AssertionError(entry.suite)
    env = EpisodeLog(env)
    if cfg.normalize_obs:
        env = NormalizeObservation(env)
    if cfg.normalize_reward:
        env = NormalizeReward(env, cfg.gamma)
    return env
