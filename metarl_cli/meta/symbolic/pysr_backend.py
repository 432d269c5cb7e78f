"""The PySR backend (Julia): Table 10's settings, warm-started in-process (untested here).

PySR needs Julia and downloads Julia packages at first use, so it cannot run on a machine
without Julia or network access; `backends.check_available` refuses it there with a one-line
error. Warm start is PySR's own (`warm_start=True`, one `fit` per round); its state lives in
the Python object, so a resumed run restarts PySR's search from scratch (the run directory's
best program and history are kept). LPO's loss is the plain L2 on the drift values: the r = 1
correction is applied at export and selection, not inside PySR's search, and `--grad-loss` is
refused (it needs a custom Julia loss).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from metarl_cli.errors import ConfigError
from metarl_cli.meta.symbolic.backends import Candidate, RoundResult
from metarl_cli.meta.symbolic.export import Program


class PySRBackend:
    """PySR with Table 10's settings (module doc)."""

    name = "pysr"

    def __init__(self) -> None:
        try:
            import pysr
        except Exception as e:  # juliacall raises many things when Julia is unusable
            raise ConfigError(
                f"cannot start PySR ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
                "use --backend operon"
            ) from None
        self.pysr = pysr
        self.model: Any = None

    def version(self) -> str:
        from importlib import metadata

        return metadata.version("pysr")

    def fit_round(
        self, task, settings, population, *, seed, on_generation=None, should_stop=None
    ) -> RoundResult:
        del population, should_stop
        if task.objective is not None:
            raise ConfigError("--grad-loss needs --backend operon")
        binary = [o for o in ("add", "sub", "mul", "div", "min", "max") if o in settings.operators]
        symbols = {"add": "+", "sub": "-", "mul": "*", "div": "/", "min": "min", "max": "max"}
        unary = [o for o in settings.operators if o not in symbols]
        if self.model is None:
            self.model = self.pysr.PySRRegressor(
                maxsize=settings.max_size,
                maxdepth=settings.max_depth,
                populations=max(1, settings.population // 33),
                population_size=33,
                niterations=settings.generations,
                binary_operators=[symbols[o] for o in binary],
                unary_operators=[*unary, "neg"],
                elementwise_loss="L2DistLoss()",
                batching=True,
                batch_size=5000,
                weight_optimize=0.001,
                turbo=True,
                warm_start=True,
                random_state=seed,
                deterministic=settings.threads == 1,
                parallelism="serial" if settings.threads == 1 else "multithreading",
                progress=False,
                verbosity=0,
            )
        self.model.fit(task.x, task.y, variable_names=[f"x{i}" for i in range(task.x.shape[1])])
        if on_generation is not None:
            on_generation(settings.generations)
        out = []
        table = self.model.equations_
        for i in range(len(table)):
            row = table.iloc[i]
            try:
                program = _from_sympy(row["sympy_format"], task.names)
            except ValueError:
                continue
            out.append(
                Candidate(
                    program=program,
                    complexity=int(row["complexity"]),
                    predict=functools.partial(self._predict, i),
                    backend_text=str(row["equation"]),
                )
            )
        return RoundResult([], out, settings.generations, 0)

    def _predict(self, index: int, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(matrix, index=index), np.float32)


def _from_sympy(expr: Any, names: Sequence[str]) -> Program:
    """A sympy expression over x0, x1, ... as a program."""
    import sympy as sp

    if expr.is_Number:
        return ("const", float(expr))
    if expr.is_Symbol:
        return ("var", names[int(str(expr)[1:])])
    args = [_from_sympy(a, names) for a in expr.args]
    if isinstance(expr, sp.Add):
        return ("add", *args)
    if isinstance(expr, sp.Mul):
        return ("mul", *args)
    if isinstance(expr, sp.Pow):
        exponent = expr.args[1]
        if exponent == -1:
            return ("div", args[0])
        if exponent == 2:
            return ("square", args[0])
        if exponent.is_Integer and exponent > 0:
            return ("mul", *([args[0]] * int(exponent)))
        raise ValueError(f"power {exponent} has no symbolic equivalent")
    table = {sp.Max: "max", sp.Min: "min", sp.exp: "exp", sp.tanh: "tanh", sp.Abs: "abs"}
    for cls, kind in table.items():
        if isinstance(expr, cls):
            if kind in ("max", "min") and len(args) > 2:
                head = (kind, args[0], args[1])
                for a in args[2:]:
                    head = (kind, head, a)
                return head
            return (kind, *args)
    raise ValueError(f"{type(expr).__name__} has no symbolic equivalent")
