"""Symbolic distillation: a neural learned algorithm distilled into a symbolic program.

`data.py` loads and validates the teacher and computes its outputs on synthetic inputs;
`backends.py` runs a round of symbolic regression (Operon by default, PySR when Julia is
available); `export.py` turns a program into the text `learned/symbolic.py` compiles, prints it
for reading and checks the round trip to JAX; `search.py` runs the rounds, selects, evaluates in
RL and resumes. Names are imported lazily, so importing this package does not import JAX.
"""

from __future__ import annotations

from metarl_cli._lazy import lazy_exports

__all__ = [
    "SymbolicConfig",
    "default_config",
    "load_teacher",
    "plan_symbolic",
    "run_symbolic",
]

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(__all__, "metarl_cli.meta.symbolic.search"),
        "load_teacher": "metarl_cli.meta.symbolic.data",
    },
)
