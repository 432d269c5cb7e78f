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

from metarl_cli._lazy import lazy_exports

__all__ = ["DistilConfig", "RLScorer", "distil", "plan_distil"]

__getattr__ = lazy_exports(
    __name__,
    {
        "DistilConfig": "metarl_cli.meta.distil.config",
        "plan_distil": "metarl_cli.meta.distil.plan",
        "RLScorer": "metarl_cli.meta.distil.scoring",
        "distil": "metarl_cli.meta.distil.train",
    },
)
