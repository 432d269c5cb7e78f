"""OPEN's interface: its named features, the code-kernel inputs and the LLM prompt pieces.

The 19 features (`FeatureSpec`), the symbolic aliases of the paper's programs (Supplement C),
the code interface, warm starts and worked examples of Supplement D, and the synthetic-input
sampler of distillation (reference §5.2). Used by `learned/open.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl_cli.learned.base import Feature, FeatureSpec
from metarl_cli.learned.perparam import DECAYS, MOMENTUM_NAMES


def code_parameters(recurrent: bool) -> tuple[str, ...]:
    """The code-kernel interface of Supplement D (FF OPEN; recurrent adds iteration and var)."""
    names = ("p", *MOMENTUM_NAMES, "l_p", "b_p", "t_p", "dorm", "g", "rand", "lr")
    return (*names, "iteration", "var") if recurrent else names


_FEATURES = (
    ("p", "parameter value (second-moment normalised per tensor)", (-3.0, 3.0)),
    *[
        (f"sign_m_{str(b).replace('.', '_')}", f"sign of the momentum at decay {b}", (-1.0, 1.0))
        for b in DECAYS
    ],
    *[
        (f"log_m_{str(b).replace('.', '_')}", f"log |momentum| at decay {b} (normalised)", (-3, 3))
        for b in DECAYS
    ],
    ("sign_g", "sign of the gradient", (-1.0, 1.0)),
    ("log_g", "log |gradient| (normalised)", (-3.0, 3.0)),
    ("t_p", "training proportion: update / (updates - 1)", (0.0, 1.0)),
    ("l_p", "layer proportion: layer index / (layers - 1)", (0.0, 1.0)),
    ("b_p", "epoch proportion within the update", (0.0, 1.0)),
    ("dorm", "per-neuron dormancy: activation / mean activation of its layer", (0.0, 10.0)),
)


def feature_spec(name: str) -> FeatureSpec:
    """OPEN's feature spec (version 1) under the registry id `name`."""
    features = tuple(Feature(n, m, (float(lo), float(hi))) for n, m, (lo, hi) in _FEATURES)
    return FeatureSpec(name, 1, features)


FEATURE_NAMES = tuple(name for name, _, _ in _FEATURES)
SYMBOLIC_EXTRA = {"rand": "a standard normal sample per parameter (0 for the critic)"}

# The paper's symbolic programs (Supplement C) spell the inputs differently.
_SHORT = {"0_1": "1", "0_5": "5", "0_9": "9", "0_99": "99", "0_999": "999", "0_9999": "9999"}
SYMBOLIC_ALIASES = {
    "sgn_g": "sign_g",
    **{f"sgn_m_{short}": f"sign_m_{long}" for long, short in _SHORT.items()},
    **{f"log_m_{short}": f"log_m_{long}" for long, short in _SHORT.items()},
}

CODE_INPUTS = {
    "p": "the current value of the parameter being optimised",
    "m_0_1 .. m_0_9999": (
        "momentum of the gradient at decays 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999: "
        "m <- b * m + (1 - b) * g, updated with the current gradient first"
    ),
    "l_p": "layer proportion: 0 in the first layer, 1 in the last",
    "b_p": "batch proportion: how far through the epochs on the current batch of data",
    "t_p": "training proportion: how far training is through the full horizon",
    "dorm": (
        "dormancy of the neuron the parameter feeds: its share of the layer's activation times "
        "the number of neurons (1 = average, between 0 and the layer width)"
    ),
    "g": "the gradient of the loss with respect to the parameter",
    "rand": "a standard normal sample per parameter (0 for the critic)",
    "lr": "learning rate: tuned per environment and linearly annealed over training",
}
RECURRENT_INPUTS = {
    "iteration": "the optimiser step count, starting at 1",
    "var": "a per-parameter recurrent variable carried between steps (zeros at the start)",
}

WARM_START_FF = """def SGD(
    p, m_0_1, m_0_5, m_0_9, m_0_99, m_0_999, m_0_9999, l_p, b_p, t_p, dorm, g, rand, lr
):
    update = g * lr
    return update
"""

# Supplement D's worked examples for the LLM prompt: (name, thought, body).
PROMPT_EXAMPLE_FF = (
    "sgd_dorm",
    "Based on the previous outputs, I should try dividing the gradient by dormancy to give "
    "larger updates to more dormant neurons.",
    "    update = g * lr / (dorm)\n    return update\n",
)
PROMPT_EXAMPLE_RECURRENT = (
    "Adam_rand",
    "Based on the previous outputs, I will try making the update slightly stochastic.",
    "    var = (1 - 0.999) * jnp.square(g) + 0.999 * var\n"
    "    var_hat = var / (1 - 0.999**iteration)\n"
    "    m_hat = m_0_9 / (1 - 0.9**iteration)\n"
    "    adam = m_hat / jnp.sqrt(var_hat + 1e-8)\n"
    "    adam = adam + rand * 0.0001\n"
    "    update = adam * lr\n"
    "    return update, var\n",
)

WARM_START_RECURRENT = """def Adam(
    p, m_0_1, m_0_5, m_0_9, m_0_99, m_0_999, m_0_9999, l_p, b_p, t_p, dorm, g, rand, lr,
    iteration, var
):
    var = (1 - 0.999) * jnp.square(g) + 0.999 * var
    var_hat = var / (1 - 0.999**iteration)
    m_hat = m_0_9 / (1 - 0.9**iteration)
    adam = m_hat / jnp.sqrt(var_hat + 1e-8)
    update = adam * lr
    return update, var
"""


def sample_inputs(key: jax.Array, n: int) -> dict[str, jax.Array]:
    """Synthetic raw inputs for distillation and symbolic regression (reference §5.2):
    `p ~ N(0, 1)`, `g ~ N(0, 0.5^2)`, six momenta i.i.d. `N(0, 0.5^2)`, `t_p, b_p ~ U(0, 1)`,
    `l_p` uniform on {0, 0.5, 1}, `dorm = clip(N(1, 1), 0, 10)`, `rand ~ N(0, 1)`."""
    ks = jax.random.split(key, 8)
    return {
        "p": jax.random.normal(ks[0], (n,)),
        "g": 0.5 * jax.random.normal(ks[1], (n,)),
        "mom": 0.5 * jax.random.normal(ks[2], (n, len(DECAYS))),
        "t_p": jax.random.uniform(ks[3], (n,)),
        "b_p": jax.random.uniform(ks[4], (n,)),
        "l_p": jax.random.choice(ks[5], jnp.array([0.0, 0.5, 1.0]), (n,)),
        "dorm": jnp.clip(1.0 + jax.random.normal(ks[6], (n,)), 0.0, 10.0),
        "rand": jax.random.normal(ks[7], (n,)),
    }
