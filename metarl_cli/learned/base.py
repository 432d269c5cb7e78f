"""The learned-algorithm protocol: a slot, a versioned feature spec, `init` and `apply`.

A learned algorithm fills one slot of the trainer (`drift` or `optimiser`). Its `FeatureSpec`
names every input with a one-line meaning and a typical range; the spec's digest goes into
every artefact, so an artefact trained on one feature set is never run on another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from metarl_cli.registry import Registry


@dataclass(frozen=True)
class Feature:
    """One named input: what it means and the range it usually takes."""

    name: str
    meaning: str
    typical_range: tuple[float, float]


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered inputs of a learned algorithm, versioned."""

    algorithm: str
    version: int
    features: tuple[Feature, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def digest(self) -> str:
        """sha256 of the spec's content (names, meanings, ranges, version)."""
        payload = json.dumps(
            {
                "algorithm": self.algorithm,
                "version": self.version,
                "features": [[f.name, f.meaning, list(f.typical_range)] for f in self.features],
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


class LearnedAlgorithm(Protocol):
    """What every learned algorithm provides (see `learned/lpo.py` for an example).

    Three forms of kernel fill the same slot: `neural` (theta + the network, `init`/`apply`),
    `symbolic` (an expression over `symbolic_variables`) and `code` (Python source of a function
    with parameters `code_parameters`, checked by `learned/sandbox.py`). `code_inputs`,
    `code_output` and `warm_start` (the hand-designed reference as code) are what the LLM
    prompt needs; `sample_inputs` draws the synthetic inputs of distillation.
    """

    name: str
    slot: str  # "drift" | "optimiser"
    spec: FeatureSpec
    forms: tuple[str, ...]
    code_parameters: tuple[str, ...]
    code_output: str
    warm_start: str

    @property
    def code_inputs(self) -> dict[str, str]: ...

    @property
    def symbolic_variables(self) -> dict[str, str]: ...

    def sample_inputs(self, key: Any, n: int) -> dict[str, Any]:
        """Synthetic raw inputs (reference §5) for distillation and symbolic regression."""
        ...

    def default_architecture(self, suite: str) -> dict[str, Any]:
        """Network sizes of the paper's Table 8 for an environment suite."""
        ...

    def architecture_for(self, hsize: int) -> dict[str, Any]:
        """The architecture for `--hsize`."""
        ...

    def init(self, key: Any, **architecture: Any) -> Any:
        """Initial meta-parameters theta for `architecture` (the reference where possible)."""
        ...

    def kernel(
        self, cfg: Any, architecture: dict[str, Any], form: str = "neural", text: str | None = None
    ) -> Any:
        """The slot object the trainer calls with theta (static, hashable)."""
        ...


ALGORITHMS: Registry[Any] = Registry("learned algorithm")

# Modules that register an algorithm on import (kept lazy: they import JAX).
_MODULES = ("metarl_cli.learned.lpo", "metarl_cli.learned.open", "metarl_cli.learned.nofeat")


def get_algorithm(name: str) -> Any:
    """Imports the algorithm modules and returns the registered algorithm `name`."""
    import importlib

    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    return ALGORITHMS.get(name)


def check_form(algorithm: Any, form: str, text: str | None) -> None:
    """Validates a kernel's form and text before anything is compiled (one-line errors).

    Code is only parsed and its tree checked here (`learned/sandbox.check_source`): nothing of
    it runs in this process. It runs in the sandbox child, which exports it to StableHLO.
    """
    from metarl_cli.errors import KernelError

    if form not in algorithm.forms:
        raise KernelError(
            f"{algorithm.name} has no {form!r} form (forms: {', '.join(algorithm.forms)})"
        )
    if form == "neural":
        return
    if not text or not text.strip():
        raise KernelError(f"a {form} kernel needs its text")
    if form == "code":
        from metarl_cli.learned.sandbox import check_parameters

        check_parameters(text, algorithm.code_parameters)
    else:
        from metarl_cli.learned.symbolic import compile_symbolic

        compile_symbolic(text, algorithm.symbolic_variables, algorithm.symbolic_aliases)


def slots_for(
    algorithm: Any,
    cfg: Any,
    architecture: dict[str, Any],
    form: str = "neural",
    text: str | None = None,
    code: Any = None,
) -> Any:
    """The trainer's slots with `algorithm` in its slot and the paper's reference elsewhere.

    A drift is trained with PPO's Adam (per-env lr and betas, Tables 4-6); a learned optimiser
    with PPO's clipped objective. A code kernel runs from `code` (its `ExportedKernel`); its
    source `text` is only for reading.
    """
    from metarl_cli.rl.slots import AdamOptimiser, Slots

    if form == "code":
        kernel = algorithm.kernel(cfg, architecture, form=form, code=code)
    else:
        check_form(algorithm, form, text)
        kernel = algorithm.kernel(cfg, architecture, form=form, text=text)
    if algorithm.slot == "drift":
        return Slots(drift=kernel, optimiser=AdamOptimiser(cfg.lr, cfg.b1, cfg.b2, cfg.adam_eps))
    return Slots(optimiser=kernel)
