"""Meta-learners: methods that produce learned-algorithm kernels.

`es` (evolution strategies, `meta/es.py`) meta-trains a neural kernel on PPO returns:
`plan_es` validates a run, `train_es` runs it resumably and writes the artefact. Names are
imported lazily, so importing this package does not import JAX.
"""

from __future__ import annotations

__all__ = ["ESConfig", "ESInterrupted", "evolve", "plan_es", "train_es"]


def __getattr__(name: str):
    if name == "ESConfig":
        from metarl_cli.meta.config import ESConfig

        return ESConfig
    if name in ("ESInterrupted", "evolve"):
        from metarl_cli.meta import es

        return getattr(es, name)
    if name in ("plan_es", "train_es"):
        from metarl_cli.meta import es_train

        return getattr(es_train, name)
    raise AttributeError(f"module 'metarl_cli.meta' has no attribute {name!r}")
