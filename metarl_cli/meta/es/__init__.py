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

__all__ = ["ESConfig", "evolve", "plan_es", "train_es"]


def __getattr__(name: str):
    if name == "ESConfig":
        from metarl_cli.meta.es.config import ESConfig

        return ESConfig
    if name == "evolve":
        from metarl_cli.meta.es.loop import evolve

        return evolve
    if name in ("plan_es", "train_es"):
        from metarl_cli.meta.es import train

        return getattr(train, name)
    raise AttributeError(f"module 'metarl_cli.meta.es' has no attribute {name!r}")
