"""metarl: meta-learn reinforcement-learning algorithms in JAX.

The public API is small and imports lazily; the CLI (`metarl`) is built on it.
"""

from __future__ import annotations

from metarl_cli._version import __version__

__all__ = [
    "Theta",
    "TrainConfig",
    "__version__",
    "build_config",
    "evaluate",
    "make_env",
    "make_train",
]


def __getattr__(name: str):
    # Lazy so that `import metarl_cli` (and `metarl --help`) never imports JAX.
    if name in ("TrainConfig", "build_config"):
        from metarl_cli import config

        return getattr(config, name)
    if name == "make_env":
        from metarl_cli.envs import make_env

        return make_env
    if name == "make_train":
        from metarl_cli.rl.ppo import make_train

        return make_train
    if name == "Theta":
        from metarl_cli.rl.slots import Theta

        return Theta
    if name == "evaluate":
        from metarl_cli.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'metarl_cli' has no attribute {name!r}")
