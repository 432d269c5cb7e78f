"""Black-box distillation (Goldie et al., 2025, arXiv:2507.17668, §4.2): a neural learned
algorithm regressed into a same-size or smaller network on synthetic inputs, with the
checkpoint chosen by RL return.

`plan_distil` validates a run (nothing written), `distil` runs it resumably and writes the
selected checkpoint. Modules: `config` (the frozen run config), `problems` (per-algorithm
synthetic data and compared outputs), `fit` (jitted Adam steps, held-out loss), `scoring` (RL
return of a checkpoint), `rundir` (checkpoint, metrics), `plan`, `train` (the host loop).
Names are imported lazily, so importing this package does not import JAX.
"""

from __future__ import annotations

__all__ = ["DistilConfig", "RLScorer", "distil", "plan_distil"]


def __getattr__(name: str):
    if name == "DistilConfig":
        from metarl_cli.meta.distil.config import DistilConfig

        return DistilConfig
    if name == "plan_distil":
        from metarl_cli.meta.distil.plan import plan_distil

        return plan_distil
    if name == "RLScorer":
        from metarl_cli.meta.distil.scoring import RLScorer

        return RLScorer
    if name == "distil":
        from metarl_cli.meta.distil.train import distil

        return distil
    raise AttributeError(f"module 'metarl_cli.meta.distil' has no attribute {name!r}")
