"""metarl: meta-learn reinforcement-learning algorithms in JAX.

The public API is small and imports lazily; the CLI (`metarl`) is built on it.
"""

from __future__ import annotations

from metarl_cli._lazy import lazy_exports
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


# Lazy so that `import metarl_cli` (and `metarl --help`) never imports JAX.
__getattr__ = lazy_exports(
    __name__,
    {
        "Theta": "metarl_cli.rl.slots",
        "TrainConfig": "metarl_cli.config",
        "build_config": "metarl_cli.config",
        "evaluate": "metarl_cli.evaluation",
        "make_env": "metarl_cli.envs",
        "make_train": "metarl_cli.rl.ppo",
    },
)
