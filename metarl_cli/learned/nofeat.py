"""No Features: the OPEN ablation without hand-crafted features (Goldie et al., NeurIPS 2024).

Each scalar parameter is updated by a small MLP that sees only 8 inputs: the parameter, its six
raw momenta (decays 0.1 .. 0.9999, updated with the current gradient before the features are
built) and the raw gradient, all second-moment normalised per tensor per channel. There are no
training/layer/epoch/dormancy features and no noise. The network outputs `(o0, o1)` and

    u = o0 * step_mult * exp(o1 * exp_mult)

is made zero-mean over all actor and critic parameters together, then `p <- p - u`.

Meta-parameters (`theta`) are flax's variable dict of the MLP, `{"params": {layers_0, layers_1,
layers_3, layers_4, layers_6}}` (514 values for hidden 16, 1538 for hidden 32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.artefacts.manifest import Slot
from metarl_cli.learned.base import (
    ALGORITHMS,
    Feature,
    FeatureSpec,
    SymbolicFunction,
    check_hsize,
    no_foreign_checkpoint,
)
from metarl_cli.learned.distillation import (
    DistillationProblem,
    DistilOptions,
    SymbolicData,
    chunked,
)
from metarl_cli.learned.exported import (
    ExportedKernel,
    KernelSignature,
    code_kernel,
    signature_for,
)
from metarl_cli.learned.open_network import mlp_apply, open_mlp, second_moment_normalise
from metarl_cli.learned.perparam import (
    DECAYS,
    EXP_MULT,
    MOMENTUM_NAMES,
    STEP_MULT,
    OptimiserChecks,
    PerParamOptimiser,
    StatelessRule,
)
from metarl_cli.learned.symbolic import compile_symbolic

__all__ = [
    "NUM_FEATURES",
    "NoFeatAlgorithm",
    "NoFeatRule",
    "init_theta",
    "nofeat_features",
    "nofeat_optimiser",
    "theta_size",
]

NUM_FEATURES = 8


def _mlp(hidden: int) -> nn.Sequential:
    """Dense(h)-LN-relu-Dense(h)-LN-relu-Dense(2), OPEN's MLP with two outputs."""
    return open_mlp(hidden, out=2)


def init_theta(key: jax.Array, hidden: int = 16) -> Any:
    """Fresh meta-parameters with flax's default initialisers."""
    return _mlp(hidden).init(key, jnp.zeros((NUM_FEATURES,)))


def theta_size(hidden: int = 16) -> int:
    """Number of meta-parameters (514 for hidden 16, 1538 for hidden 32)."""
    template = jax.eval_shape(lambda k: init_theta(k, hidden), jax.random.key(0))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(template))


def nofeat_features(p: jax.Array, g: jax.Array, m: jax.Array) -> jax.Array:
    """The 8 inputs for one tensor `p` (shape S) with gradient `g` (S) and momenta `m`
    (S + (6,)); returns S + (8,), second-moment normalised per channel."""
    x = jnp.concatenate([p[..., None], m, g[..., None]], axis=-1)
    return second_moment_normalise(x)


@dataclass(frozen=True)
class NoFeatRule(StatelessRule):
    """Neural No Features: normalised `[p, m x6, g]` -> MLP -> `o0 * 1e-3 * exp(o1 * 1e-3)`."""

    hidden: int = 16
    lr_step_mult: float = STEP_MULT
    exp_mult: float = EXP_MULT
    needs_activations: bool = False

    def __call__(self, theta, inputs, state):
        out = mlp_apply(theta, flat_features(inputs))
        return out[:, 0] * self.lr_step_mult * jnp.exp(out[:, 1] * self.exp_mult), state


def flat_features(inputs) -> jax.Array:
    """The 8 inputs over the flat parameter vector, normalised per tensor: [N, 8]."""
    x = jnp.concatenate([inputs.p[:, None], inputs.mom, inputs.g[:, None]], axis=-1)
    return inputs.layout.segment_rms_normalise(x)


@dataclass(frozen=True)
class NoFeatSymbolicRule(StatelessRule):
    """Symbolic No Features: `u = f(p, m_0_1, .., m_0_9999, g)` on the normalised inputs (the
    inputs distillation trains on; the original evaluated raw inputs, reference §3.6), made
    zero-mean."""

    kernel: Any
    needs_activations: bool = False

    def __call__(self, theta, inputs, state):
        del theta
        x = flat_features(inputs)
        return self.kernel(**{name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}), state


@dataclass(frozen=True)
class NoFeatCodeRule(StatelessRule):
    """Code No Features (Supplement D): `update = f(p, m_0_1, .., m_0_9999, g, lr)` on raw
    inputs, `lr = sgd_lr * lr_scale`, `p <- p - update`."""

    code: ExportedKernel
    base_lr: float
    needs_activations: bool = False

    def __call__(self, theta, inputs, state):
        del theta
        moms = [inputs.mom[:, i] for i in range(len(DECAYS))]
        (update,) = self.code(inputs.p, *moms, inputs.g, self.base_lr * inputs.lr_scale)
        return update, state


def nofeat_optimiser(hidden: int = 16):
    """The neural No Features optimiser slot."""
    return PerParamOptimiser(NoFeatRule(hidden), zero_mean=True)


# --- Registry entries -----------------------------------------------------------------------

_FEATURES = (
    ("p", "parameter value (second-moment normalised per tensor)", (-3.0, 3.0)),
    *[
        (
            f"m_{str(b).replace('.', '_')}",
            f"raw momentum at decay {b}, updated with this gradient (normalised)",
            (-3.0, 3.0),
        )
        for b in DECAYS
    ],
    ("g", "raw gradient (second-moment normalised per tensor)", (-3.0, 3.0)),
)


FEATURE_NAMES = tuple(name for name, _, _ in _FEATURES)
CODE_PARAMETERS = ("p", *MOMENTUM_NAMES, "g", "lr")
CODE_SIGNATURE = signature_for(CODE_PARAMETERS, ("update",))
SYMBOLIC_ALIASES = {
    f"m_{short}": f"m_{long}"
    for long, short in {
        "0_1": "1", "0_5": "5", "0_9": "9", "0_99": "99", "0_999": "999", "0_9999": "9999"
    }.items()
}  # fmt: skip
CODE_INPUTS = {
    "p": "the current value of the parameter being optimised",
    "m_0_1 .. m_0_9999": (
        "momentum of the gradient at decays 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999: "
        "m <- b * m + (1 - b) * g, updated with the current gradient first"
    ),
    "g": "the gradient of the loss with respect to the parameter",
    "lr": "learning rate: tuned per environment and linearly annealed over training",
}
WARM_START = """def SGD(p, m_0_1, m_0_5, m_0_9, m_0_99, m_0_999, m_0_9999, g, lr):
    update = g * lr
    return update
"""
SYMBOLIC_FUNCTION = SymbolicFunction("No_Feat_Symbolic")
# Supplement D's worked example for the LLM prompt: (name, thought, body).
PROMPT_EXAMPLE = (
    "SGD_mom_0_99",
    "Based on the previous outputs, I should try replacing the gradient with m_0_99 to "
    "incorporate momentum.",
    "    update = m_0_99 * lr\n    return update\n",
)


@dataclass(frozen=True)
class NoFeatProblem(DistillationProblem):
    """The compared output is `o0 exp(o1 1e-3)`, in units of the step multiplier 1e-3 (the
    original's MSE on the update times 1e6). Features are normalised over the batch, which
    stands in for one tensor."""

    def outputs(self, theta, architecture, batch):
        """The network's update for `batch`'s synthetic inputs."""
        x = nofeat_features(batch["p"], batch["g"], batch["mom"])
        out = mlp_apply(theta, x)
        return out[:, 0] * jnp.exp(out[:, 1] * EXP_MULT)


def symbolic_inputs(key: jax.Array, n: int) -> np.ndarray:
    """[n, 8] inputs `[p, m x 6, g]` drawn from the sampler, normalised over all n points."""
    raw = NoFeatAlgorithm().sample_inputs(key, n)
    return np.asarray(nofeat_features(raw["p"], raw["g"], raw["mom"]), np.float32)


def symbolic_targets(theta: Any, architecture: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The teacher's deterministic update `o0 * 1e-3 * exp(o1 * 1e-3)` for inputs `x`."""
    del architecture  # the widths are θ's shapes
    theta = jax.tree.map(jnp.asarray, theta)

    def update(xx):
        out = mlp_apply(theta, xx)
        return out[:, 0] * STEP_MULT * jnp.exp(out[:, 1] * EXP_MULT)

    return chunked(jax.jit(update), x)


@dataclass(frozen=True)
class NoFeatAlgorithm(OptimiserChecks):
    """No Features as a learned algorithm (registry id `nofeat`)."""

    name: str = "nofeat"
    display_name: str = "No Features"
    gridworld_figure: int | None = 16  # the paper's figure of it meta-trained on gridworlds
    slot: Slot = "optimiser"
    forms: tuple[str, ...] = ("neural", "symbolic", "code")
    recurrent: bool = False
    widths: tuple[str, ...] = ("hidden",)
    distil_options: tuple[str, ...] = ()
    reference_baseline: str = "sgd"
    prompt_example: tuple[str, str, str] | None = PROMPT_EXAMPLE
    checkpoint_format: str | None = None
    symbolic_function: SymbolicFunction = SYMBOLIC_FUNCTION
    code_parameters: tuple[str, ...] = CODE_PARAMETERS
    code_signature: KernelSignature = CODE_SIGNATURE
    code_output: str = "update: the parameter moves by p <- p - update"
    warm_start: str = WARM_START

    @property
    def spec(self):
        """No Features' inputs (version 1)."""
        return FeatureSpec(
            self.name, 1, tuple(Feature(n, m, tuple(map(float, r))) for n, m, r in _FEATURES)
        )

    @property
    def code_inputs(self) -> dict[str, str]:
        """Names and meanings of the code interface (what the LLM prompt describes)."""
        return dict(CODE_INPUTS)

    def import_checkpoint(self, path: Any) -> tuple[Any, dict[str, int]]:
        """No Features has no foreign checkpoint format."""
        no_foreign_checkpoint(self, path)

    @property
    def symbolic_variables(self) -> dict[str, str]:
        """Variable name -> meaning of the symbolic form (the spec's features)."""
        return {f.name: f.meaning for f in self.spec.features}

    @property
    def symbolic_aliases(self) -> dict[str, str]:
        """Other spellings of the symbolic variables (the paper's programs)."""
        return dict(SYMBOLIC_ALIASES)

    def sample_inputs(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        """Reference §5.3: `p ~ N(0, 1)`, `g` and six momenta i.i.d. `N(0, 0.5^2)`."""
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "p": jax.random.normal(k1, (n,)),
            "g": 0.5 * jax.random.normal(k2, (n,)),
            "mom": 0.5 * jax.random.normal(k3, (n, len(DECAYS))),
        }

    def default_architecture(self, suite: str) -> dict[str, int]:
        """Table 8: dense layers of 32 on MinAtar, 16 on Ant (and elsewhere)."""
        return {"hidden": 32 if suite == "minatar" else 16}

    def architecture_for(self, hsize: int) -> dict[str, int]:
        """`--hsize h`: dense layers of h units."""
        check_hsize(hsize)
        return {"hidden": int(hsize)}

    def architecture_with(self, widths: dict[str, int]) -> dict[str, int]:
        """The architecture with these layer `widths`."""
        return {"hidden": int(widths["hidden"])}

    def init(self, key: jax.Array, hidden: int = 16):
        """Fresh meta-parameters (flax's default initialisers)."""
        return init_theta(key, hidden)

    def initial_theta(self, key: jax.Array, hidden: int = 16):
        """ES starts at the zero vector (evosax 0.1's OpenAI-ES, as the original)."""
        return jax.tree.map(jnp.zeros_like, self.init(key, hidden))

    def distillation_problem(self, options: DistilOptions = DistilOptions()) -> NoFeatProblem:
        """Single updates on synthetic inputs (`NoFeatProblem`; it reads no options)."""
        del options
        return NoFeatProblem(self)

    def symbolic_data(
        self, theta: Any, architecture: dict[str, Any], key: Any, n: int, *, grad_loss: bool,
        clip_eps: float,
    ) -> SymbolicData:  # fmt: skip
        """The 8 normalised inputs `[p, m x 6, g]`; the target is the deterministic update."""
        del grad_loss, clip_eps
        x = symbolic_inputs(key, n)
        return SymbolicData(FEATURE_NAMES, x, symbolic_targets(theta, architecture, x))

    def symbolic_holdout(self, key: Any, n: int) -> dict[str, np.ndarray]:
        """Fresh symbolic inputs for the round trip (variable name -> [n])."""
        x = symbolic_inputs(key, n)
        return {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}

    def kernel(
        self,
        cfg,
        architecture: dict,
        form: str = "neural",
        text: str | None = None,
        code: ExportedKernel | None = None,
    ):
        """The optimiser slot of `form` (neural, symbolic or code rule, zero-meaned)."""
        if form == "neural":
            return nofeat_optimiser(int(architecture.get("hidden", 16)))
        if form == "symbolic":
            kernel = compile_symbolic(text, self.symbolic_variables, self.symbolic_aliases)
            return PerParamOptimiser(NoFeatSymbolicRule(kernel), zero_mean=True)
        rule = NoFeatCodeRule(code_kernel(code), float(cfg.sgd_lr))
        return PerParamOptimiser(rule, zero_mean=False)


def _register() -> None:
    ALGORITHMS.register("nofeat", NoFeatAlgorithm())


_register()
