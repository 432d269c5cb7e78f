"""The learned-algorithm protocol: a slot, a versioned feature spec, `init` and `apply`.

A learned algorithm fills one slot of the trainer (`drift` or `optimiser`). Its `FeatureSpec`
names every input with a one-line meaning and a typical range; the spec's digest goes into
every artefact, so an artefact trained on one feature set is never run on another.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, Protocol, cast

from metarl_cli.artefacts.manifest import Slot
from metarl_cli.config import TrainConfig
from metarl_cli.errors import ArtefactError, ConfigError, KernelError
from metarl_cli.learned.distillation import DistilOptions
from metarl_cli.learned.exported import ExportedKernel, KernelSignature
from metarl_cli.learned.source_check import check_parameters
from metarl_cli.learned.symbolic import compile_symbolic
from metarl_cli.registry import Registry
from metarl_cli.rl.slots import DriftSlot, OptimiserSlot, Slots, fill_slots


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
        """The feature names, in input order."""
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
    `code_parameters`, checked by `learned/source_check.py`). `code_inputs`, `code_output`,
    `warm_start` and `prompt_example` are what the LLM prompt needs; `sample_inputs` draws the
    synthetic inputs of distillation. Members marked "symbolic distillation" are needed only
    by algorithms that support it (feed-forward, with a symbolic form).
    """

    @property
    def name(self) -> str:
        """Registry id (lower case)."""
        ...

    @property
    def display_name(self) -> str:
        """The name in reports, tables and figures ("LPO", "Feed-Forward OPEN")."""
        ...

    @property
    def slot(self) -> Slot:
        """The trainer slot it fills: "drift" | "optimiser" | "update_rule" (the whole update,
        with its own trainer: LPG)."""
        ...

    @property
    def spec(self) -> FeatureSpec:
        """Its versioned inputs (the digest goes into every artefact)."""
        ...

    @property
    def forms(self) -> tuple[str, ...]:
        """Kernel forms it can run: a subset of ("neural", "symbolic", "code")."""
        ...

    @property
    def recurrent(self) -> bool:
        """Carries a per-parameter state between steps (symbolic distillation refuses these)."""
        ...

    @property
    def widths(self) -> tuple[str, ...]:
        """The architecture keys that are layer widths (a smaller student halves each)."""
        ...

    @property
    def distil_options(self) -> tuple[str, ...]:
        """Options its distillation problem takes: "target" (value | grad of a drift),
        "rollout" (sequence length of a recurrent problem, which also needs the PPO schedule)."""
        ...

    @property
    def reference_baseline(self) -> str:
        """The registered baseline (`baselines.py`: "ppo" | "sgd") whose per-env return
        normalises the fitness of its code kernels (discover, reference §7.1)."""
        ...

    @property
    def code_parameters(self) -> tuple[str, ...]:
        """The parameters of a code kernel's function, in order."""
        ...

    @property
    def code_signature(self) -> KernelSignature:
        """The exported interface a code kernel must match (`learned/exported.py`)."""
        ...

    @property
    def code_output(self) -> str:
        """What a code kernel returns and how the trainer uses it (for the LLM prompt)."""
        ...

    @property
    def warm_start(self) -> str:
        """The hand-designed reference as code-kernel source (the LLM's starting point)."""
        ...

    @property
    def prompt_example(self) -> tuple[str, str, str] | None:
        """Supplement D's worked example: (function name, thought, body under the generated
        signature); None: the prompt shows the warm start instead."""
        ...

    @property
    def code_inputs(self) -> dict[str, str]:
        """Names and meanings of the code interface (what the LLM prompt describes)."""
        ...

    @property
    def symbolic_variables(self) -> dict[str, str]:
        """Variable name -> meaning of the symbolic form (the spec's features and extras)."""
        ...

    @property
    def symbolic_aliases(self) -> dict[str, str]:
        """Other spellings of symbolic variables (the paper's programs) -> their names."""
        ...

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

    # `init` and `initial_theta` take a PRNG key and the architecture as keywords, each
    # algorithm its own (`hidden=`, `gru=`, ...): `*args: Any, **architecture: Any` is how a
    # Protocol accepts any such keywords (mypy reads it as `...`).

    def init(self, key: Any, /, *args: Any, **architecture: Any) -> Any:
        """Freshly initialised meta-parameters theta for `architecture` (a distilled student's
        start; its shapes are what an artefact's tensors must have)."""
        ...

    def initial_theta(self, key: Any, /, *args: Any, **architecture: Any) -> Any:
        """Where meta-learning starts from `key` and `architecture`: the ES search mean at
        generation 0 (the paper's all-zero vector: LPO at PPO's drift)."""
        ...

    def kernel(
        self,
        cfg: TrainConfig | None,
        architecture: dict[str, Any],
        form: str = "neural",
        text: str | None = None,
        code: ExportedKernel | None = None,
    ) -> DriftSlot | OptimiserSlot:
        """The slot object the trainer calls with theta (static, hashable): a `DriftSlot` for
        a drift algorithm, an `OptimiserSlot` for an optimiser. `text`: a symbolic kernel's
        expression; `code`: a code kernel's verified exported program."""
        ...

    def validity(self, kernel: Any, theta: Any = None, *, clip_eps: float = 0.2) -> list[str]:
        """Problems that make a slot object invalid for its slot (LPO: the mirror-learning
        drift conditions); [] when there are none or nothing is checked."""
        ...

    def distillation_problem(self, options: DistilOptions = DistilOptions()) -> Any:
        """Its black-box distillation problem (a `learned.distillation.DistillationProblem`);
        the options it does not list in `distil_options` are ignored."""
        ...

    @property
    def checkpoint_format(self) -> str | None:
        """A foreign checkpoint `metarl import <name>` reads (None: none)."""
        ...

    def import_checkpoint(self, path: Any) -> tuple[Any, dict[str, int]]:
        """(theta, architecture) of a foreign checkpoint (only with a `checkpoint_format`)."""
        ...

    # --- symbolic distillation ---------------------------------------------------------------

    @property
    def symbolic_function(self) -> SymbolicFunction:
        """How its symbolic program is written out."""
        ...

    @property
    def symbolic_search(self) -> dict[str, Any]:
        """Table 10's search space for it (population, max_size, max_depth, operators,
        num_points)."""
        ...

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


ALGORITHMS: Registry[LearnedAlgorithm] = Registry("learned algorithm")

# Modules that register an algorithm on import. Imported on first use, not at the top: each of
# them imports this module (a cycle otherwise).
_MODULES = (
    "metarl_cli.learned.lpo",
    "metarl_cli.learned.open",
    "metarl_cli.learned.nofeat",
    "metarl_cli.learned.lpg",
)


def _import_modules() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def get_algorithm(name: str) -> LearnedAlgorithm:
    """Imports the algorithm modules and returns the registered algorithm `name`."""
    _import_modules()
    return ALGORITHMS.get(name)


def algorithms() -> list[LearnedAlgorithm]:
    """Every registered algorithm, in id order (imports the algorithm modules)."""
    _import_modules()
    return [ALGORITHMS.get(name) for name in ALGORITHMS.names()]


def display_name(name: str) -> str:
    """The report name of algorithm `name` ("LPO"); an unregistered id is its own name."""
    _import_modules()
    return ALGORITHMS.get(name).display_name if name in ALGORITHMS else name


def no_foreign_checkpoint(algorithm: LearnedAlgorithm, path: object) -> NoReturn:
    """`import_checkpoint` of an algorithm without a `checkpoint_format`: refuses `path`."""
    raise ArtefactError(f"{algorithm.name} has no foreign checkpoints to import ({path})")


def no_ratio_inputs(algorithm: LearnedAlgorithm) -> NoReturn:
    """`symbolic_ratio_inputs` of an optimiser, whose inputs do not depend on a ratio."""
    raise KernelError(f"{algorithm.name} is an optimiser: its inputs do not depend on a ratio r")


def check_hsize(hsize: int, *, even: bool = False, why: str = "") -> None:
    """Refuses an `--hsize` below 1 (or, with `even`, odd or below 2: `why` says why)."""
    if hsize < 1:
        raise ConfigError(f"--hsize must be at least 1, got {hsize}")
    if even and (hsize < 2 or hsize % 2):
        raise ConfigError(f"--hsize must be even and at least 2 {why}, got {hsize}")


def resolve_architecture(
    algorithm: LearnedAlgorithm, suite: str, hsize: int | None
) -> dict[str, int]:
    """`--hsize h` as the algorithm's sizes (validated), else Table 8's for the suite."""
    if hsize is None:
        arch = algorithm.default_architecture(suite)
    else:
        arch = algorithm.architecture_for(hsize)
    return {k: int(v) for k, v in arch.items()}


def check_form(algorithm: LearnedAlgorithm, form: str, text: str | None) -> None:
    """Validates a kernel's form and text before anything is compiled (one-line errors).

    Code is only parsed and its tree checked here (`learned/source_check.check_source`): nothing of
    it runs in this process. It runs in the sandbox child, which exports it to StableHLO.
    """
    if form not in algorithm.forms:
        raise KernelError(
            f"{algorithm.name} has no {form!r} form (forms: {', '.join(algorithm.forms)})"
        )
    if form == "neural":
        return
    if not text or not text.strip():
        raise KernelError(f"a {form} kernel needs its text")
    if form == "code":
        check_parameters(text, algorithm.code_parameters)
    else:
        compile_symbolic(text, algorithm.symbolic_variables, algorithm.symbolic_aliases)


def slots_for(
    algorithm: LearnedAlgorithm,
    cfg: TrainConfig,
    architecture: dict[str, Any],
    form: str = "neural",
    text: str | None = None,
    code: ExportedKernel | None = None,
) -> Slots:
    """The trainer's slots with `algorithm` in its slot and the paper's reference elsewhere.

    A drift is trained with PPO's Adam (per-env lr and betas, Tables 4-6); a learned optimiser
    with PPO's clipped objective. A code kernel runs from `code` (its `ExportedKernel`); its
    source `text` is only for reading.
    """
    if algorithm.slot == "update_rule":
        raise KernelError(
            f"{algorithm.name} replaces the whole update (it brings its own trainer, "
            "rl/lpg_train.py): PPO's slots cannot hold it"
        )
    if form == "code":
        kernel = algorithm.kernel(cfg, architecture, form=form, code=code)
    else:
        check_form(algorithm, form, text)
        kernel = algorithm.kernel(cfg, architecture, form=form, text=text)
    if algorithm.slot == "drift":
        return fill_slots(cfg, drift=cast(DriftSlot, kernel))
    return fill_slots(cfg, optimiser=cast(OptimiserSlot, kernel))
