"""Symbolic-regression backends behind one interface: Operon (default) and PySR (optional).

A backend runs one *round* of search: given a batch of inputs and targets and the population
of the previous round (or none), it evolves for a number of generations and returns the new
population (plain JSON data, so a run resumes from disk exactly as it would have continued in
memory) and every distinct program of it as a `Candidate` (backend-neutral program tree, size,
the backend's own evaluator, its own printing).

* **Operon** (`pyoperon`, C++ genetic programming, offline; `operon.py`): driven through its
  low-level API, with a Python objective, a population that survives a process restart and a
  per-round batch.
* **PySR** (Julia, `pysr_backend.py`): optional; `check_available` fails with a one-line error
  when the package or Julia is missing. Its settings follow Table 10; it cannot run on a
  machine without Julia and has not been exercised by our tests.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from metarl_cli.errors import ConfigError
from metarl_cli.meta.symbolic.export import Program

BACKENDS = ("operon", "pysr")
BAD_LOSS = 1e30  # what a program with non-finite outputs scores

# Our operator names -> pyoperon primitive names (NodeType members).
OPERON_PRIMITIVES = {
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "min": "Fmin",
    "max": "Fmax",
    "exp": "Exp",
    "log": "Log",
    "tanh": "Tanh",
    "abs": "Abs",
    "square": "Square",
    "sin": "Sin",
    "cos": "Cos",
    "sqrt": "Sqrt",
}
OPERATORS = tuple(OPERON_PRIMITIVES)

# Operon node names (what a node computes) -> our operator names.
OPERON_NAMES = {
    "+": "add",
    "-": "sub",
    "*": "mul",
    "/": "div",
    "fmin": "min",
    "fmax": "max",
    "exp": "exp",
    "log": "log",
    "tanh": "tanh",
    "abs": "abs",
    "square": "square",
    "sin": "sin",
    "cos": "cos",
    "sqrt": "sqrt",
}


@dataclass(frozen=True)
class SearchSettings:
    """One round's search settings (Table 10 mapped to the backend, see docs/symbolic.md).

    Attributes:
        operators: allowed functions (our names: add sub mul div min max exp tanh abs square).
        max_size: maximum program size in nodes.
        max_depth: maximum tree depth.
        population: programs in the population.
        generations: generations per round (the paper's "iterations").
        optimizer_iterations: Levenberg-Marquardt iterations of constant optimisation.
        local_search_probability: probability that an offspring's constants are optimised.
        threads: worker threads.
    """

    operators: tuple[str, ...]
    max_size: int
    max_depth: int
    population: int
    generations: int
    optimizer_iterations: int = 8
    local_search_probability: float = 1.0
    threads: int = 1


@dataclass(frozen=True)
class Objective:
    """A loss the backend cannot express natively, computed in Python.

    Attributes:
        inputs: design matrices [n, d] the program is evaluated on, by name ("x" included).
        loss: outputs by name -> loss (lower is better; non-finite becomes `BAD_LOSS`).
    """

    inputs: dict[str, np.ndarray]
    loss: Callable[[dict[str, np.ndarray]], float]


@dataclass(frozen=True)
class FitTask:
    """One round's data.

    Attributes:
        x: the batch's inputs [n, d] (columns are `names`).
        y: the target column [n] (constants are tuned against it).
        names: the symbolic variable names of the columns.
        objective: None for the L2 loss on `y` (with linear scaling); else a Python loss.
    """

    x: np.ndarray
    y: np.ndarray
    names: tuple[str, ...]
    objective: Objective | None = None


@dataclass
class Candidate:
    """One program of the population.

    Attributes:
        program: the program over the variable names (see `export.py`).
        complexity: its size in nodes.
        predict: the backend's own evaluation on inputs [n, d] -> [n] (float32).
        backend_text: the backend's printing of the program (its variable names).
    """

    program: Program
    complexity: int
    predict: Callable[[np.ndarray], np.ndarray]
    backend_text: str


class RoundInterrupted(Exception):
    """A round stopped early on request; nothing of it is kept."""


@dataclass
class RoundResult:
    population: list[Any]
    candidates: list[Candidate]
    generations: int
    evaluations: int


def check_available(name: str) -> None:
    """Raises ConfigError (one line) when backend `name` cannot run here."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if name == "operon":
        if importlib.util.find_spec("pyoperon") is None:
            raise ConfigError("the operon backend needs pyoperon: pip install pyoperon")
        return
    if importlib.util.find_spec("pysr") is None:
        raise ConfigError(
            "the pysr backend needs the pysr package and Julia (pip install pysr; Julia must be "
            "installed); use --backend operon, which runs offline"
        )
    if not (shutil.which("julia") or os.environ.get("PYTHON_JULIAPKG_EXE")):
        raise ConfigError(
            "the pysr backend needs Julia, which was not found on PATH (and PySR downloads its "
            "Julia packages at first use); use --backend operon, which runs offline"
        )


def make_backend(name: str) -> Any:
    check_available(name)
    if name == "pysr":
        from metarl_cli.meta.symbolic.pysr_backend import PySRBackend

        return PySRBackend()
    from metarl_cli.meta.symbolic.operon import OperonBackend

    return OperonBackend()
