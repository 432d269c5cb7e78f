"""The paper's per-environment hyperparameters as data (Goldie et al., RLC 2025, arXiv:2507.17668).

Suite values are Table 2; learning rates and Adam betas are Tables 4-6 ("LPO learning rate" is
the Adam learning rate of PPO and LPO; "L2O Adam learning rate" is the Adam learning rate used
with learned optimisers). Return normalisers are the original code's `PPO_TEMP` (return of PPO
with Adam) and `SGD_TEMP`; humanoid, walker2d and hopper reuse ant's value in the original code,
and Craftax has none there, so ours is `None` until measured. Brax runs on the `positional`
pipeline, as the original code did: its normalisers (Ant's 6517) were measured there, so they
apply to that backend only (`normaliser_note`); `spring`, `generalized` and `mjx` are options
without normalisers.
"""

from __future__ import annotations

from typing import Any

SUITE_DEFAULTS: dict[str, dict[str, Any]] = {
    "minatar": dict(
        num_envs=64, num_steps=128, total_timesteps=10_000_000, num_minibatches=8,
        update_epochs=4, ent_coef=0.01, activation="relu",
    ),
    "brax": dict(
        num_envs=2048, num_steps=10, total_timesteps=30_000_000, num_minibatches=32,
        update_epochs=4, ent_coef=0.0, activation="tanh",
        normalize_obs=True, normalize_reward=True, clip_action=True,
        brax_backend="positional",
    ),
    "classic": dict(
        num_envs=4, num_steps=128, total_timesteps=500_000, num_minibatches=4,
        update_epochs=4, ent_coef=0.01, activation="tanh",
    ),
    "craftax": dict(
        num_envs=1024, num_steps=20, total_timesteps=30_000_000, num_minibatches=16,
        update_epochs=2, ent_coef=0.01, activation="tanh",
    ),
    # Supplement F's gridworld PPO (the paper's code, `configs.py` "gridworld"; 5e6 steps).
    "gridworld": dict(
        num_envs=1024, num_steps=20, total_timesteps=5_000_000, num_minibatches=16,
        update_epochs=2, ent_coef=0.01, activation="tanh", hidden_size=16,
    ),
}  # fmt: skip

_GRIDWORLD_NAMES = (
    "all_shortlife", "rand_all", "dense", "sparse", "long", "longer", "long_dense", "debug",
)  # fmt: skip

# lr, b1, b2, sgd_lr, l2o_lr, ppo_normaliser, sgd_normaliser
_ENV_TABLE: dict[str, tuple[float, float, float, float, float, float | None, float | None]] = {
    "minatar/asterix": (3e-3, 0.9, 0.999, 0.52, 3e-3, 15.0353, 15.414),
    "minatar/breakout": (1e-2, 0.9, 0.99, 1.02, 7e-3, 50.0822, 20.50),
    "minatar/freeway": (1e-3, 0.9, 0.99, 0.56, 1e-3, 61.8369, 61.6),
    "minatar/spaceinvaders": (7e-3, 0.9, 0.99, 1.17, 3e-3, 167.0913, 146.20),
    "brax/ant": (3e-4, 0.99, 0.99, 0.17, 3e-4, 6517.31, 4443.31),
    "brax/humanoid": (3e-4, 0.9, 0.999, 0.053, 3e-4, 6517.31, 1.0),
    "brax/walker2d": (1e-3, 0.9, 0.999, 0.52, 1e-3, 6517.31, 1.0),
    "brax/hopper": (8e-4, 0.9, 0.999, 0.27, 8e-4, 6517.31, 1.0),
    "classic/cartpole": (1e-3, 0.9, 0.999, 2.5e-4, 3e-3, 475.0, 500.0),
    "craftax/classic": (5e-4, 0.9, 0.999, 0.46, 5e-4, None, None),
    **{f"gridworld/{name}": (1e-4, 0.99, 0.99, 1.33, 1e-4, 1.0, 1.0) for name in _GRIDWORLD_NAMES},
}

NORMALISER_NOTES: dict[str, str] = {
    "brax/humanoid": "original code copies ant's PPO normaliser; SGD normaliser is a placeholder",
    "brax/walker2d": "original code copies ant's PPO normaliser; SGD normaliser is a placeholder",
    "brax/hopper": "original code copies ant's PPO normaliser; SGD normaliser is a placeholder",
    "craftax/classic": "the original code has no Craftax normaliser",
}


# The backend the Brax normalisers were measured on (the original code's).
BRAX_NORMALISER_BACKEND = "positional"


def normaliser_note(env_id: str, kind: str = "ppo", backend: str | None = None) -> str | None:
    """Why `env_id`'s `kind` ("ppo" or "sgd") normaliser is not a measured return, or None.

    Placeholders (values the original code copied from another env, or 1.0) and missing ones
    are named, so every place a normaliser is used can say so.
    """
    if env_id.startswith("brax/") and backend not in (None, BRAX_NORMALISER_BACKEND):
        return f"none for the {backend!r} backend (measured on {BRAX_NORMALISER_BACKEND!r})"
    lr, b1, b2, sgd_lr, l2o_lr, norm_ppo, norm_sgd = _ENV_TABLE[env_id]
    del lr, b1, b2, sgd_lr, l2o_lr
    value = norm_ppo if kind == "ppo" else norm_sgd
    if value is None:
        return "none: the original code has none for this env"
    if env_id.startswith("gridworld/"):
        return "placeholder: the original code's gridworld normaliser is 1.0"
    if env_id in ("brax/humanoid", "brax/walker2d", "brax/hopper"):
        if kind == "ppo":
            return "placeholder: the original code copies Ant's PPO return (6517.31)"
        return "placeholder: the original code's SGD normaliser is 1.0"
    return None


def preset(env_id: str) -> dict[str, Any]:
    """Returns the full preset (suite defaults + per-env values) for a canonical env id."""
    lr, b1, b2, sgd_lr, l2o_lr, norm_ppo, norm_sgd = _ENV_TABLE[env_id]
    values = dict(SUITE_DEFAULTS[env_id.split("/")[0]])
    values.update(
        env_id=env_id, lr=lr, b1=b1, b2=b2, sgd_lr=sgd_lr, l2o_lr=l2o_lr,
        ppo_normaliser=norm_ppo, sgd_normaliser=norm_sgd,
    )  # fmt: skip
    return values


def preset_env_ids() -> list[str]:
    """Every env id that has a preset."""
    return sorted(_ENV_TABLE)
