"""Meta-learners: methods that produce learned-algorithm kernels.

Four share one scaffold (a plan checked before anything is written, a resumable run in a
`meta/rundir.py` run dir, `errors.Interrupted` on Ctrl-C, an artefact): `es/` (evolution
strategies on PPO returns), `distil/`, `symbolic/` and `llm/` (discover). ES's names are
re-exported here, lazily, so importing this package does not import JAX.
"""

from __future__ import annotations

__all__ = ["ESConfig", "evolve", "plan_es", "train_es"]


def __getattr__(name: str):
    if name in __all__:
        from metarl_cli.meta import es

        return getattr(es, name)
    raise AttributeError(f"module 'metarl_cli.meta' has no attribute {name!r}")
