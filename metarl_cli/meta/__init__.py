"""Meta-learners: methods that produce learned-algorithm kernels.

Four share one scaffold (a plan checked before anything is written, a resumable run in a
`meta/rundir.py` run dir, `errors.Interrupted` on Ctrl-C, an artefact): `es/` (evolution
strategies on PPO returns), `distil/`, `symbolic/` and `llm/` (discover). ES's names are
re-exported here, lazily, so importing this package does not import JAX.
"""

from __future__ import annotations

from metarl_cli._lazy import lazy_exports

__all__ = ["ESConfig", "evolve", "plan_es", "train_es"]

__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "metarl_cli.meta.es"))
