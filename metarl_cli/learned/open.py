"""OPEN: a learned optimiser for RL (Goldie et al., NeurIPS 2024, arXiv:2407.07082).

Each scalar parameter is updated by a small network that sees 19 features (the parameter,
sign/log-magnitude of six momenta and of the gradient, all second-moment normalised per
tensor, then training progress, layer position, epoch progress and neuron dormancy). The
recurrent variant runs a GRU cell per parameter before the MLP; the feed-forward variant feeds
the features straight into the MLP. The network outputs `(o0, o1, o2)` and the update is

    u = o0 * step_mult * exp(o1 * exp_mult) + o2 * mask * eps * step_mult,   eps ~ N(0, 1)

with `mask` 1 for actor and 0 for critic parameters; `u` is then made zero-mean over all actor
and critic parameters together and `p <- p - u`.

Meta-parameters (`theta`) use the original's tree, so the released flat `.npy` checkpoints load:
`{"gru_params": {"params": GRUCell params}, "params": {"params": {layers_0, layers_1, layers_3,
layers_4, layers_6}}}` (the feed-forward variant has no `"gru_params"`). The flat order is JAX
tree order (sorted keys), kernels row-major `(in, out)`.

This module holds the update rules and the algorithm; the network, its features and flat
vectors are in `open_network.py`, the named inputs, code interface and prompt pieces in
`open_inputs.py`, the distillation problems and symbolic data in `open_distil.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.artefacts.manifest import Slot
from metarl_cli.errors import ArtefactError
from metarl_cli.learned import open_distil
from metarl_cli.learned.base import (
    ALGORITHMS,
    FeatureSpec,
    SymbolicFunction,
    check_hsize,
)
from metarl_cli.learned.distillation import DistilOptions
from metarl_cli.learned.exported import (
    ExportedKernel,
    KernelSignature,
    code_kernel,
    signature_for,
)
from metarl_cli.learned.open_inputs import (
    CODE_INPUTS,
    FEATURE_NAMES,
    PROMPT_EXAMPLE_FF,
    PROMPT_EXAMPLE_RECURRENT,
    RECURRENT_INPUTS,
    SYMBOLIC_ALIASES,
    SYMBOLIC_EXTRA,
    WARM_START_FF,
    WARM_START_RECURRENT,
    code_parameters,
    feature_spec,
    sample_inputs,
)
from metarl_cli.learned.open_network import (
    NUM_FEATURES,
    OPEN_NPY_ARCHS,
    OpenNetwork,
    flat_features,
    flatten_theta,
    import_open_npy,
    init_theta,
    open_features,
    theta_size,
    unflatten_theta,
)
from metarl_cli.learned.perparam import (
    DECAYS,
    EXP_MULT,
    STEP_MULT,
    OptimiserChecks,
    PerParamOptimiser,
    StatelessRule,
)
from metarl_cli.learned.symbolic import compile_symbolic

__all__ = [
    "DECAYS",
    "NUM_FEATURES",
    "OPEN_NPY_ARCHS",
    "OpenAlgorithm",
    "OpenNetwork",
    "OpenRule",
    "flat_features",
    "flatten_theta",
    "import_open_npy",
    "init_theta",
    "open_features",
    "open_optimiser",
    "theta_size",
    "unflatten_theta",
]


# Rules for the per-parameter optimiser slot (neural, symbolic, code)


@dataclass(frozen=True)
class OpenRule:
    """Neural OPEN: features -> (GRU) -> MLP -> `(o0, o1, o2)` -> the update (module doc)."""

    hidden: int
    gru: int
    recurrent: bool = True
    lr_step_mult: float = STEP_MULT
    exp_mult: float = EXP_MULT
    needs_activations: bool = True

    @property
    def network(self) -> OpenNetwork:
        """The per-parameter network of this architecture."""
        return OpenNetwork(self.hidden, self.gru, self.recurrent)

    def init_state(self, n: int):
        """The GRU carry of each of the `n` parameters (recurrent only)."""
        return {"carry": jnp.zeros((n, self.gru), jnp.float32)} if self.recurrent else {}

    def __call__(self, theta, inputs, state):
        x = flat_features(inputs)
        out, carry = self.network.apply(theta, x, state.get("carry"))
        eps = jax.random.normal(inputs.key, inputs.p.shape, inputs.p.dtype)
        step = self.lr_step_mult
        u = out[:, 0] * step * jnp.exp(out[:, 1] * self.exp_mult)
        u = u + out[:, 2] * inputs.mask * eps * step
        return u, ({"carry": carry} if self.recurrent else {})


@dataclass(frozen=True)
class OpenSymbolicRule(StatelessRule):
    """Symbolic OPEN: `u = f(19 normalised features, rand)`, made zero-mean (reference §3.6).

    Unlike the original, every parameter draws its own noise (the original reused one key for
    all tensors of equal shape)."""

    kernel: Any  # SymbolicKernel
    needs_activations: bool = True

    def __call__(self, theta, inputs, state):
        del theta
        x = flat_features(inputs)
        values = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
        values["rand"] = jax.random.normal(inputs.key, inputs.p.shape) * inputs.mask
        return self.kernel(**values), state


@dataclass(frozen=True)
class OpenCodeRule:
    """Code OPEN (Supplement C/D): `update = f(p, m_0_1, .., m_0_9999, l_p, b_p, t_p, dorm, g,
    rand, lr[, iteration, var])` on raw inputs, `lr = base_lr * lr_scale`; `p <- p - update`
    (no zero-mean, as in the original). The recurrent form also returns the new `var`."""

    code: ExportedKernel
    base_lr: float
    recurrent: bool = False
    needs_activations: bool = True

    def init_state(self, n: int):
        """The recurrent variable `var` of each of the `n` parameters (recurrent only)."""
        return {"var": jnp.zeros((n,), jnp.float32)} if self.recurrent else {}

    def __call__(self, theta, inputs, state):
        del theta
        n = inputs.p.shape[0]
        rand = jax.random.normal(inputs.key, inputs.p.shape) * inputs.mask
        args = [
            inputs.p,
            *(inputs.mom[:, i] for i in range(len(DECAYS))),
            inputs.l_p,
            jnp.broadcast_to(inputs.b_p, (n,)),
            jnp.broadcast_to(inputs.t_p, (n,)),
            inputs.dorm,
            inputs.g,
            rand,
            self.base_lr * inputs.lr_scale,
        ]
        if not self.recurrent:
            (update,) = self.code(*args)
            return update, state
        update, var = self.code(*args, inputs.iteration, state["var"])
        return update, {"var": var}


def open_optimiser(hidden: int, gru: int, recurrent: bool = True):
    """The neural OPEN optimiser slot (zero-mean update over actor and critic)."""
    return PerParamOptimiser(OpenRule(hidden, gru, recurrent), zero_mean=True)


@dataclass(frozen=True)
class OpenAlgorithm(OptimiserChecks):
    """OPEN as a learned algorithm (registry ids `open` and `open_ff`)."""

    name: str
    recurrent: bool
    slot: Slot = "optimiser"
    forms: tuple[str, ...] = ("neural", "symbolic", "code")

    @property
    def spec(self) -> FeatureSpec:
        """OPEN's 19 inputs (version 1)."""
        return feature_spec(self.name)

    @property
    def display_name(self) -> str:
        """ "OPEN" or "Feed-Forward OPEN"."""
        return "OPEN" if self.recurrent else "Feed-Forward OPEN"

    @property
    def gridworld_figure(self) -> int | None:
        """The paper's figure of it meta-trained on gridworlds (Supplement F): feed-forward only."""
        return None if self.recurrent else 17

    @property
    def widths(self) -> tuple[str, ...]:
        """Recurrent OPEN's GRU is sized separately; the feed-forward one has none."""
        return ("hidden", "gru") if self.recurrent else ("hidden",)

    @property
    def distil_options(self) -> tuple[str, ...]:
        """Recurrent OPEN takes a rollout length; feed-forward none."""
        return ("rollout",) if self.recurrent else ()

    @property
    def reference_baseline(self) -> str:
        """The original measured recurrent OPEN against PPO with Adam, OPEN-FF against SGD."""
        return "ppo" if self.recurrent else "sgd"

    @property
    def prompt_example(self) -> tuple[str, str, str]:
        """Supplement D's worked example for this variant."""
        return PROMPT_EXAMPLE_RECURRENT if self.recurrent else PROMPT_EXAMPLE_FF

    @property
    def checkpoint_format(self) -> str | None:
        """The original code's released checkpoints are recurrent OPEN's."""
        if not self.recurrent:
            return None
        lengths = " or ".join(str(n) for n in OPEN_NPY_ARCHS)
        return f"a released OPEN .npy (float32, length {lengths})"

    def import_checkpoint(self, path: str | Path) -> tuple[Any, dict[str, int]]:
        """(theta, architecture) of a released OPEN `.npy` (`import_open_npy`)."""
        if not self.recurrent:
            raise ArtefactError(f"{self.name} has no released checkpoints to import")
        theta, hidden, gru = import_open_npy(path)
        return theta, {"hidden": hidden, "gru": gru}

    @property
    def code_parameters(self) -> tuple[str, ...]:
        """Supplement D's code interface (recurrent adds iteration and var)."""
        return code_parameters(self.recurrent)

    @property
    def code_signature(self) -> KernelSignature:
        """The exported interface: `update` (and `var` when recurrent)."""
        outputs = ("update", "var") if self.recurrent else ("update",)
        return signature_for(self.code_parameters, outputs)

    @property
    def code_inputs(self) -> dict[str, str]:
        """Names and meanings of the code interface (what the LLM prompt describes)."""
        return {**CODE_INPUTS, **(RECURRENT_INPUTS if self.recurrent else {})}

    @property
    def code_output(self) -> str:
        """What a code kernel returns and how the update is applied."""
        if self.recurrent:
            return "(update, var): the parameter moves by p <- p - update; var is carried"
        return "update: the parameter moves by p <- p - update"

    @property
    def warm_start(self) -> str:
        """The hand-designed reference as a code kernel (Supplement D's warm start)."""
        return WARM_START_RECURRENT if self.recurrent else WARM_START_FF

    @property
    def symbolic_variables(self) -> dict[str, str]:
        """The 19 features and `rand`, with their meanings."""
        return {**{f.name: f.meaning for f in self.spec.features}, **SYMBOLIC_EXTRA}

    symbolic_aliases = SYMBOLIC_ALIASES

    def sample_inputs(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        """Synthetic raw inputs (`open_inputs.sample_inputs`)."""
        return sample_inputs(key, n)

    def default_architecture(self, suite: str) -> dict[str, int]:
        """Table 8: MinAtar GRU 16 / dense 32; Brax (Ant) GRU 8 / dense 16."""
        return {"hidden": 32, "gru": 16} if suite == "minatar" else {"hidden": 16, "gru": 8}

    def architecture_for(self, hsize: int) -> dict[str, int]:
        """`--hsize h`: dense h, GRU h/2 (as the original scripts; recurrent: h even)."""
        why = "for recurrent OPEN (its GRU has hsize/2 units)"
        check_hsize(hsize, even=self.recurrent, why=why)
        return {"hidden": int(hsize), "gru": max(1, int(hsize) // 2)}

    def architecture_with(self, widths: dict[str, int]) -> dict[str, int]:
        """The architecture with these `widths` (feed-forward: GRU hidden/2)."""
        if self.recurrent:
            return {"hidden": int(widths["hidden"]), "gru": int(widths["gru"])}
        return {"hidden": int(widths["hidden"]), "gru": max(1, int(widths["hidden"]) // 2)}

    def init(self, key: jax.Array, hidden: int = 16, gru: int = 8):
        """Fresh meta-parameters with flax's default initialisers."""
        return init_theta(key, hidden, gru, self.recurrent)

    def initial_theta(self, key: jax.Array, hidden: int = 16, gru: int = 8):
        """ES starts at the zero vector (evosax 0.1's OpenAI-ES, as the original)."""
        return jax.tree.map(jnp.zeros_like, self.init(key, hidden, gru))

    def distillation_problem(self, options: DistilOptions = DistilOptions()) -> Any:
        """Recurrent: sequences of optimiser steps (`options.seq_len`, `options.schedule`);
        feed-forward: single updates."""
        if not self.recurrent:
            return open_distil.OpenFFProblem(self)
        updates, epochs, minibatches = options.schedule or (1220, 4, 8)
        return open_distil.RecurrentOpenProblem(
            self,
            seq_len=options.seq_len or 100,
            schedule=(int(updates), int(epochs), int(minibatches)),
        )

    @property
    def symbolic_function(self) -> SymbolicFunction:
        """The readable program's name (Supplement C)."""
        return SymbolicFunction("OPEN_Symbolic")

    def symbolic_data(
        self, theta: Any, architecture: dict[str, Any], key: Any, n: int, *, grad_loss: bool,
        clip_eps: float,
    ) -> Any:  # fmt: skip
        """Feed-forward only: the 19 normalised features plus `rand`; the target is the
        teacher's full stochastic update (`open_distil.py`)."""
        del grad_loss, clip_eps
        return open_distil.symbolic_data(theta, architecture, key, n)

    def symbolic_holdout(self, key: Any, n: int) -> dict[str, np.ndarray]:
        """Fresh symbolic inputs for the round trip (variable name -> [n])."""
        return open_distil.symbolic_holdout(key, n)

    def kernel(
        self,
        cfg,
        architecture: dict,
        form: str = "neural",
        text: str | None = None,
        code: ExportedKernel | None = None,
    ):
        """The optimiser slot of `form`: neural and symbolic zero-mean their update, code not."""
        if form == "neural":
            return open_optimiser(
                int(architecture["hidden"]), int(architecture.get("gru", 0)), self.recurrent
            )
        if form == "symbolic":
            kernel = compile_symbolic(text, self.symbolic_variables, self.symbolic_aliases)
            return PerParamOptimiser(OpenSymbolicRule(kernel), zero_mean=True)
        base_lr = cfg.l2o_lr if self.recurrent else cfg.sgd_lr
        return PerParamOptimiser(
            OpenCodeRule(code_kernel(code), float(base_lr), self.recurrent), zero_mean=False
        )


def _register() -> None:
    ALGORITHMS.register("open", OpenAlgorithm("open", recurrent=True))
    ALGORITHMS.register("open_ff", OpenAlgorithm("open_ff", recurrent=False))


_register()
