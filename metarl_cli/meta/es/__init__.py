"""ES meta-training (OpenAI-ES on PPO returns), one module per concern.

* `config.py`: `ESConfig`, the frozen pydantic model (no JAX import);
* `strategies.py`: evosax strategies configured as the paper configures OpenAI-ES;
* `fitness.py`: a population's PPO runs through the shared `ShardedRunner`, and their fitness;
* `loop.py`: `evolve`, the resumable host loop (ask -> fitness -> tell -> checkpoint);
* `rundir.py`: the ES run directory (checkpoints, metrics, periodic artefacts);
* `train.py`: `plan_es` validates a run, `train_es` runs it and writes the artefact.

Names are imported lazily, so importing this package does not import JAX.
"""

from __future__ import annotations

from metarl_cli._lazy import lazy_exports

__all__ = ["ESConfig", "evolve", "plan_es", "train_es"]

__getattr__ = lazy_exports(
    __name__,
    {
        "ESConfig": "metarl_cli.meta.es.config",
        "evolve": "metarl_cli.meta.es.loop",
        "plan_es": "metarl_cli.meta.es.train",
        "train_es": "metarl_cli.meta.es.train",
    },
)
