"""LPG, the Learned Policy Gradient (Oh et al., 2020, arXiv:2007.08794), as the paper runs it
(Goldie et al., 2025, arXiv:2507.17668, §§4-7, Tables 3, 7, 9).

LPG fills the **update_rule** slot: it replaces the whole actor-critic update. Its network
(`lpg_network.py`, a backward GRU over a 20-step rollout) maps each step's reward, episode end,
policy probability and the agent's two prediction vectors to pi_hat and y_hat, which train the
agent (`rl/lpg_agent.py`). It is meta-trained with meta-gradients (`metarl train metagrad`) on
random gridworlds and meta-tested on MinAtar.

Only the neural form exists. Symbolic distillation is refused because LPG is recurrent: 19
inputs over a 20-step window are 380 variables (paper §6). LLM proposal is refused because y is a
meta-learned categorical with no literature-grounded warm start (paper §7.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import jax
import jax.numpy as jnp

from metarl_cli.artefacts.manifest import Slot
from metarl_cli.errors import ConfigError, KernelError
from metarl_cli.learned.base import (
    ALGORITHMS,
    Feature,
    FeatureSpec,
    SymbolicFunction,
    check_hsize,
    no_foreign_checkpoint,
    no_ratio_inputs,
)
from metarl_cli.learned.distillation import DistillationProblem, DistilOptions
from metarl_cli.learned.exported import KernelSignature
from metarl_cli.learned.lpg_network import apply_lpg, init_lpg
from metarl_cli.rl.lpg_train import ROLLOUT_DEFAULTS

Y_DIM = 8
ROLLOUT = 20  # LPG "rolls out for only 20 steps at a time" (paper §7.4)

SPEC = FeatureSpec(
    "lpg",
    1,
    (
        Feature("r", "reward r_t", (-1.0, 1.0)),
        Feature("d", "episode ended at t (terminated or truncated), 0/1", (0.0, 1.0)),
        Feature("pi", "pi(a_t|s_t) + 1e-8 of the action taken", (0.0, 1.0)),
        *(Feature(f"y_t_{i}", f"entry {i} of the agent's y(s_t)", (0.0, 1.0)) for i in range(8)),
        *(Feature(f"y_tp1_{i}", f"entry {i} of y(s_t+1)", (0.0, 1.0)) for i in range(8)),
    ),
)

SYMBOLIC_FUNCTION = SymbolicFunction("LPG_Symbolic")  # never written: symbolic is refused
SYMBOLIC_REFUSAL = (
    "LPG is recurrent: 19 inputs over its 20-step window are 380 variables, beyond symbolic "
    "regression (paper §6)"
)
CODE_REFUSAL = (
    "its y is a meta-learned categorical, so there is no literature-grounded warm start for "
    "an LLM to edit (paper §7.4)"
)


@dataclass(frozen=True)
class LPGRule:
    """The neural update rule: `(theta, r, d, pi, y_t, y_tp1) -> (pi_hat, y_hat)`."""

    gru: int = 256
    embed: int = 16
    target: int = Y_DIM

    def __call__(self, theta, r, d, pi, y_t, y_tp1):
        return apply_lpg(theta, self.gru, self.embed, self.target, r, d, pi, y_t, y_tp1)


def _log_uniform(key, shape, lo, hi):
    return jnp.exp(jax.random.uniform(key, shape, minval=jnp.log(lo), maxval=jnp.log(hi)))


def sample_sequences(key: jax.Array, n: int, seq_len: int = ROLLOUT) -> dict[str, jax.Array]:
    """`n` synthetic time-major rollouts [seq_len, n] of LPG's inputs (reference C):
    r is 0 w.p. 0.8 else U[-1, 1]; d ~ Bernoulli(p) with p ~ logU[0.01, 0.5] per sequence;
    pi is a softmax of N(0, s^2) logits over 5 actions (s ~ U[0, 3]) at a random action;
    y_t, y_tp1 ~ Dirichlet(a 1_8), a ~ logU[0.1, 10] per sequence."""
    ks = jax.random.split(key, 9)
    shape = (seq_len, n)
    r = jnp.where(
        jax.random.uniform(ks[0], shape) < 0.8, 0.0, jax.random.uniform(ks[1], shape, minval=-1)
    )
    p_done = _log_uniform(ks[2], (n,), 0.01, 0.5)
    d = (jax.random.uniform(ks[3], shape) < p_done).astype(jnp.float32)
    scale = jax.random.uniform(ks[4], (n,), maxval=3.0)
    logits = jax.random.normal(ks[5], (*shape, 5)) * scale[:, None]
    action = jax.random.randint(ks[6], shape, 0, 5)
    pi = jnp.take_along_axis(jax.nn.softmax(logits), action[..., None], -1)[..., 0] + 1e-8
    alpha = _log_uniform(ks[7], (n,), 0.1, 10.0)
    k_t, k_tp1 = jax.random.split(ks[8])
    conc = jnp.broadcast_to(alpha[None, :, None], (*shape, Y_DIM))
    y_t = jax.random.dirichlet(k_t, conc)
    y_tp1 = jax.random.dirichlet(k_tp1, conc)
    return {"r": r, "d": d, "pi": pi, "y_t": y_t, "y_tp1": y_tp1}


@dataclass(frozen=True)
class LPGProblem(DistillationProblem):
    """Black-box distillation of LPG on synthetic rollouts (paper §4.2): the compared outputs
    are pi_hat and y_hat, [seq_len, 9, n], with y_hat scaled by 1/sqrt(8) so that the mean
    squared error is proportional to MSE(pi_hat) + MSE(y_hat)."""

    seq_len: int = ROLLOUT

    def sample(self, key, n):
        """`n` synthetic sequences."""
        return sample_sequences(key, n, self.seq_len)

    def outputs(self, theta, architecture, batch):
        """Teacher's or student's (pi_hat, y_hat / sqrt(8)) on `batch`."""
        rule = LPGRule(**{k: int(v) for k, v in architecture.items()})
        b = batch
        pi_hat, y_hat = rule(theta, b["r"], b["d"], b["pi"], b["y_t"], b["y_tp1"])
        out = jnp.concatenate([pi_hat[..., None], y_hat / jnp.sqrt(float(Y_DIM))], axis=-1)
        return jnp.swapaxes(out, -1, -2)


@dataclass(frozen=True)
class LPG:
    """The LPG learned algorithm (registry id `lpg`)."""

    name: str = "lpg"
    display_name: str = "LPG"
    slot: Slot = "update_rule"
    spec: FeatureSpec = SPEC
    forms: tuple[str, ...] = ("neural",)
    recurrent: bool = True
    widths: tuple[str, ...] = ("gru", "embed")
    distil_options: tuple[str, ...] = ("rollout",)
    reference_baseline: str = "a2c"
    prompt_example: tuple[str, str, str] | None = None
    checkpoint_format: str | None = None
    code_parameters: tuple[str, ...] = ()
    code_output: str = CODE_REFUSAL
    code_refusal: str = CODE_REFUSAL
    warm_start: str = ""
    symbolic_function: SymbolicFunction = SYMBOLIC_FUNCTION

    @property
    def train_defaults(self) -> dict[str, int]:
        """LPG's rollouts, 64 envs x 20 steps per update (paper Table 3; `--set` overrides),
        instead of the env's PPO preset (`learned/trainers.py`)."""
        return dict(ROLLOUT_DEFAULTS)

    @property
    def code_signature(self) -> KernelSignature:
        """LPG has no code form."""
        raise KernelError(f"LPG has no code form: {CODE_REFUSAL}")

    @property
    def code_inputs(self) -> dict[str, str]:
        """None: LPG has no code form."""
        return {}

    @property
    def symbolic_variables(self) -> dict[str, str]:
        """None: LPG has no symbolic form."""
        return {}

    @property
    def symbolic_aliases(self) -> dict[str, str]:
        """None: LPG has no symbolic form."""
        return {}

    @property
    def symbolic_search(self) -> dict[str, Any]:
        """Refused (module doc)."""
        raise ConfigError(SYMBOLIC_REFUSAL)

    def symbolic_data(self, theta, architecture, key, n, *, grad_loss, clip_eps) -> NoReturn:
        """Refused (module doc)."""
        raise ConfigError(SYMBOLIC_REFUSAL)

    def symbolic_holdout(self, key: Any, n: int) -> NoReturn:
        """Refused (module doc)."""
        raise ConfigError(SYMBOLIC_REFUSAL)

    def symbolic_ratio_inputs(self, ratio: Any) -> NoReturn:
        """LPG's inputs do not depend on a ratio."""
        no_ratio_inputs(self)

    def import_checkpoint(self, path: Any) -> tuple[Any, dict[str, int]]:
        """LPG has no foreign checkpoint format."""
        no_foreign_checkpoint(self, path)

    def sample_inputs(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        """`n` synthetic rollouts of 20 steps (`sample_sequences`)."""
        return sample_sequences(key, n)

    def default_architecture(self, suite: str) -> dict[str, int]:
        """Table 9: GRU 256, embedding 16, y of 8 (every suite: LPG is trained once)."""
        del suite
        return {"gru": 256, "embed": 16, "target": Y_DIM}

    def architecture_for(self, hsize: int) -> dict[str, int]:
        """`--hsize h`: GRU h, embedding max(1, h // 16), y of 8 (the agent's y semantics)."""
        check_hsize(hsize)
        return {"gru": int(hsize), "embed": max(1, int(hsize) // 16), "target": Y_DIM}

    def architecture_with(self, widths: dict[str, int]) -> dict[str, int]:
        """The architecture with these widths (a smaller student: GRU 128, embedding 8)."""
        return {"gru": int(widths["gru"]), "embed": int(widths["embed"]), "target": Y_DIM}

    def init(self, key: jax.Array, gru: int = 256, embed: int = 16, target: int = Y_DIM):
        """flax's default initialisation (as the reference): where meta-gradients start."""
        return init_lpg(key, gru, embed, target)

    def initial_theta(self, key: jax.Array, gru: int = 256, embed: int = 16, target: int = Y_DIM):
        """ES's start: all zeros (pi_hat = 0 and a uniform y_hat, a rule that changes no policy)."""
        return jax.tree.map(jnp.zeros_like, self.init(key, gru, embed, target))

    def kernel(self, cfg, architecture, form="neural", text=None, code=None) -> Any:
        """The update rule of `architecture` (neural only)."""
        del cfg, text, code
        if form != "neural":
            why = SYMBOLIC_REFUSAL if form == "symbolic" else f"no code form: {CODE_REFUSAL}"
            raise KernelError(why)
        return LPGRule(**{k: int(v) for k, v in architecture.items()})

    def validity(self, kernel: Any, theta: Any = None, *, clip_eps: float = 0.2) -> list[str]:
        """Nothing is checked for an update rule: []."""
        del kernel, theta, clip_eps
        return []

    def distillation_problem(self, options: DistilOptions = DistilOptions()) -> LPGProblem:
        """`LPGProblem` over 20-step rollouts, LPG's window in use (paper §7.4); `--rollout`'s
        lengths are recurrent OPEN's and do not change it."""
        del options
        return LPGProblem(self)


ALGORITHMS.register("lpg", LPG())
