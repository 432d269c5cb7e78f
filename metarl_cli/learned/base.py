"""The learned-algorithm protocol: a slot, a versioned feature spec, `init` and `apply`.

A learned algorithm fills one slot of the trainer (`drift` or `optimiser`). Its `FeatureSpec`
names every input with a one-line meaning and a typical range; the spec's digest goes into
every artefact, so an artefact trained on one feature set is never run on another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

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


class SymbolicFunction(NamedTuple):
    """How an algorithm's symbolic program is written out.

    Attributes:
        name: the function name of the readable program (Supplement C: `LPO_Symbolic`); the
            exact kernel text uses it in lower case.
        params: the readable program's parameters (None: the symbolic data's columns).
        prologue: lines of the readable program computing derived inputs (`log_r = log(r)`).
    """

    name: str
    params: tuple[str, ...] | None = None
    prologue: tuple[str, ...] = ()


class LearnedAlgorithm(Protocol):
    """What every learned algorithm provides (see `learned/lpo.py` for an example).

    Everything specific to one algorithm is here, so meta-learners, analysis and the CLI ask
    the algorithm instead of switching on its id. Three forms of kernel fill the same slot:
    `neural` (theta + the network, `init`/`apply`), `symbolic` (an expression over
    `symbolic_variables`) and `code` (Python source of a function with parameters
    `code_parameters`, checked by `learned/sandbox.py`). `code_inputs`, `code_output`,
    `warm_start` and `prompt_example` are what the LLM prompt needs; `sample_inputs` draws the
    synthetic inputs of distillation. Members marked "symbolic distillation" are needed only
    by algorithms that support it (feed-forward, with a symbolic form).
    """

    name: str
    """Registry id (lower case)."""
    display_name: str
    """The name in reports, tables and figures ("LPO", "Feed-Forward OPEN")."""
    slot: str
    """The trainer slot it fills: "drift" | "optimiser"."""
    spec: FeatureSpec
    forms: tuple[str, ...]
    """Kernel forms it can run: a subset of ("neural", "symbolic", "code")."""
    recurrent: bool
    """Carries a per-parameter state between steps (symbolic distillation refuses these)."""
    widths: tuple[str, ...]
    """The architecture keys that are layer widths (a smaller student halves each)."""
    distil_options: tuple[str, ...]
    """Options its distillation problem takes: "target" (value | grad of a drift),
    "rollout" (sequence length of a recurrent problem, which also needs the PPO schedule)."""
    reference_baseline: str
    """The registered baseline (`baselines.py`: "ppo" | "sgd") whose per-env return
    normalises the fitness of its code kernels (discover, reference §7.1)."""
    code_parameters: tuple[str, ...]
    code_output: str
    warm_start: str
    prompt_example: tuple[str, str, str] | None
    """Supplement D's worked example: (function name, thought, body under the generated
    signature); None: the prompt shows the warm start instead."""

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
        """The architecture for `--hsize`; raises `ConfigError` for a size it cannot take."""
        ...

    def architecture_with(self, widths: dict[str, int]) -> dict[str, Any]:
        """The full architecture with these layer `widths` (distillation's same-size and
        smaller students)."""
        ...

    def init(self, key: Any, **architecture: Any) -> Any:
        """Freshly initialised meta-parameters theta for `architecture` (a distilled
        student's start; its shapes are what an artefact's tensors must have)."""
        ...

    def initial_theta(self, key: Any, **architecture: Any) -> Any:
        """Where meta-learning starts: the ES search mean at generation 0 (the paper's all-zero
        vector: LPO at PPO's drift)."""
        ...

    def kernel(
        self, cfg: Any, architecture: dict[str, Any], form: str = "neural", text: str | None = None
    ) -> Any:
        """The slot object the trainer calls with theta (static, hashable)."""
        ...

    def validity(self, kernel: Any, theta: Any = None, *, clip_eps: float = 0.2) -> list[str]:
        """Problems that make a slot object invalid for its slot (LPO: the mirror-learning
        drift conditions); [] when there are none or nothing is checked."""
        ...

    def distillation_problem(
        self,
        *,
        target: str | None = None,
        clip_eps: float = 0.2,
        seq_len: int | None = None,
        schedule: tuple[int, int, int] | None = None,
    ) -> Any:
        """Its black-box distillation problem (a `learned.distillation.DistillationProblem`);
        the options it does not list in `distil_options` are ignored."""
        ...

    checkpoint_format: str | None
    """A foreign checkpoint `metarl import <name>` reads (None: none)."""

    def import_checkpoint(self, path: Any) -> tuple[Any, dict[str, int]]:
        """(theta, architecture) of a foreign checkpoint (only with a `checkpoint_format`)."""
        ...

    # --- symbolic distillation ---------------------------------------------------------------

    symbolic_function: SymbolicFunction
    symbolic_search: dict[str, Any]
    """Table 10's search space for it (population, max_size, max_depth, operators,
    num_points)."""

    def symbolic_data(
        self, theta: Any, architecture: dict[str, Any], key: Any, n: int, *, grad_loss: bool,
        clip_eps: float,
    ) -> Any:  # fmt: skip
        """The teacher `theta`'s outputs on about `n` synthetic inputs (a `SymbolicData`)."""
        ...

    def symbolic_holdout(self, key: Any, n: int) -> dict[str, Any]:
        """Fresh inputs for the round trip: variable name -> [n] (every variable the kernel
        may use)."""
        ...

    def symbolic_ratio_inputs(self, ratio: Any) -> dict[str, Any]:
        """Drift algorithms: the symbolic inputs that depend on the ratio r, at `ratio` (a
        program minus itself at r = 1 vanishes there)."""
        ...


ALGORITHMS: Registry[Any] = Registry("learned algorithm")

# Modules that register an algorithm on import (kept lazy: they import JAX).
_MODULES = ("metarl_cli.learned.lpo", "metarl_cli.learned.open", "metarl_cli.learned.nofeat")


def _import_modules() -> None:
    import importlib

    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def get_algorithm(name: str) -> Any:
    """Imports the algorithm modules and returns the registered algorithm `name`."""
    _import_modules()
    return ALGORITHMS.get(name)


def algorithms() -> list[Any]:
    """Every registered algorithm, in id order (imports the algorithm modules)."""
    _import_modules()
    return [ALGORITHMS.get(name) for name in ALGORITHMS.names()]


def display_name(name: str) -> str:
    """The report name of algorithm `name` ("LPO"); an unregistered id is its own name."""
    _import_modules()
    return ALGORITHMS.get(name).display_name if name in ALGORITHMS else name


def check_hsize(hsize: int, *, even: bool = False, why: str = "") -> None:
    """Refuses an `--hsize` below 1 (or, with `even`, odd or below 2: `why` says why)."""
    from metarl_cli.errors import ConfigError

    if hsize < 1:
        raise ConfigError(f"--hsize must be at least 1, got {hsize}")
    if even and (hsize < 2 or hsize % 2):
        raise ConfigError(f"--hsize must be even and at least 2 {why}, got {hsize}")


def resolve_architecture(algorithm: Any, suite: str, hsize: int | None) -> dict[str, int]:
    """`--hsize h` as the algorithm's sizes (validated), else Table 8's for the suite."""
    if hsize is None:
        arch = algorithm.default_architecture(suite)
    else:
        arch = algorithm.architecture_for(hsize)
    return {k: int(v) for k, v in arch.items()}


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
    from metarl_cli.rl.slots import fill_slots

    if form == "code":
        kernel = algorithm.kernel(cfg, architecture, form=form, code=code)
    else:
        check_form(algorithm, form, text)
        kernel = algorithm.kernel(cfg, architecture, form=form, text=text)
    return fill_slots(cfg, **{algorithm.slot: kernel})
