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

from metarl_cli.learned.exported import (
    ExportedKernel,
    KernelSignature,
    code_kernel,
    signature_for,
)
from metarl_cli.learned.open import _mlp as _open_mlp
from metarl_cli.learned.open import _second_moment_normalise
from metarl_cli.learned.perparam import DECAYS, MOMENTUM_NAMES, PerParamOptimiser

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
    return _open_mlp(hidden, out=2)


def init_theta(key: jax.Array, hidden: int = 16) -> dict[str, Any]:
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
    return _second_moment_normalise(x)


@dataclass(frozen=True)
class NoFeatRule:
    """Neural No Features: normalised `[p, m x6, g]` -> MLP -> `o0 * 1e-3 * exp(o1 * 1e-3)`."""

    hidden: int = 16
    lr_step_mult: float = 0.001
    exp_mult: float = 0.001
    needs_activations: bool = False

    def init_state(self, n: int):
        del n
        return {}

    def __call__(self, theta, inputs, state):
        out = _mlp(self.hidden).apply(theta, flat_features(inputs))
        return out[:, 0] * self.lr_step_mult * jnp.exp(out[:, 1] * self.exp_mult), state


def flat_features(inputs) -> jax.Array:
    """The 8 inputs over the flat parameter vector, normalised per tensor: [N, 8]."""
    x = jnp.concatenate([inputs.p[:, None], inputs.mom, inputs.g[:, None]], axis=-1)
    return inputs.layout.segment_rms_normalise(x)


@dataclass(frozen=True)
class NoFeatSymbolicRule:
    """Symbolic No Features: `u = f(p, m_0_1, .., m_0_9999, g)` on the normalised inputs (the
    inputs distillation trains on; the original evaluated raw inputs, reference §3.6), made
    zero-mean."""

    kernel: Any
    needs_activations: bool = False

    def init_state(self, n: int):
        del n
        return {}

    def __call__(self, theta, inputs, state):
        del theta
        x = flat_features(inputs)
        return self.kernel(**{name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}), state


@dataclass(frozen=True)
class NoFeatCodeRule:
    """Code No Features (Supplement D): `update = f(p, m_0_1, .., m_0_9999, g, lr)` on raw
    inputs, `lr = sgd_lr * lr_scale`, `p <- p - update`."""

    code: ExportedKernel
    base_lr: float
    needs_activations: bool = False

    def init_state(self, n: int):
        del n
        return {}

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


@dataclass(frozen=True)
class NoFeatAlgorithm:
    """No Features as a learned algorithm (registry id `nofeat`)."""

    name: str = "nofeat"
    slot: str = "optimiser"
    forms: tuple[str, ...] = ("neural", "symbolic", "code")
    code_parameters: tuple[str, ...] = CODE_PARAMETERS
    code_signature: KernelSignature = CODE_SIGNATURE
    code_output: str = "update: the parameter moves by p <- p - update"
    warm_start: str = WARM_START

    @property
    def spec(self):
        from metarl_cli.learned.base import Feature, FeatureSpec

        return FeatureSpec(
            self.name, 1, tuple(Feature(n, m, tuple(map(float, r))) for n, m, r in _FEATURES)
        )

    @property
    def code_inputs(self) -> dict[str, str]:
        return dict(CODE_INPUTS)

    @property
    def symbolic_variables(self) -> dict[str, str]:
        return {f.name: f.meaning for f in self.spec.features}

    @property
    def symbolic_aliases(self) -> dict[str, str]:
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
        """Table 8: hidden 16."""
        del suite
        return {"hidden": 16}

    def architecture_for(self, hsize: int) -> dict[str, int]:
        return {"hidden": int(hsize)}

    def init(self, key: jax.Array, hidden: int = 16):
        return init_theta(key, hidden)

    def kernel(
        self,
        cfg,
        architecture: dict,
        form: str = "neural",
        text: str | None = None,
        code: ExportedKernel | None = None,
    ):
        if form == "neural":
            return nofeat_optimiser(int(architecture.get("hidden", 16)))
        if form == "symbolic":
            from metarl_cli.learned.symbolic import compile_symbolic

            kernel = compile_symbolic(text, self.symbolic_variables, self.symbolic_aliases)
            return PerParamOptimiser(NoFeatSymbolicRule(kernel), zero_mean=True)
        rule = NoFeatCodeRule(code_kernel(code), float(cfg.sgd_lr))
        return PerParamOptimiser(rule, zero_mean=False)


def _register() -> None:
    from metarl_cli.learned.base import ALGORITHMS

    ALGORITHMS.register("nofeat", NoFeatAlgorithm())


_register()
