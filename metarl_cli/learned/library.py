# ruff: noqa: E501 - the paper's text is kept as printed
"""The discovered functions printed in the paper (Goldie et al., 2025, Supplement C).

Each entry is a ready-made symbolic or code kernel: `metarl import paper NAME -o X.safetensors`
writes it as an artefact, and `metarl import paper --list` shows them all. The text is the
paper's, with two mechanical edits: the PDF's curly quotes are straight, and the symbolic
programs keep their paper form (assignments, then `return`), which `learned/symbolic.py` reads.
`AdaptiveLayerRAdam` has one line cut off at the page margin in the PDF; it is completed with
RAdam's rectification term (Liu et al., 2020), as its comments describe.
"""

from __future__ import annotations

from dataclasses import dataclass

from metarl_cli.registry import Registry


@dataclass(frozen=True)
class PaperKernel:
    """A kernel printed in the paper (Supplement C/D), importable by `metarl import paper`."""

    name: str
    algorithm: str
    form: str  # "symbolic" | "code"
    origin: str
    text: str
    training_envs: tuple[str, ...] = ()
    note: str = ""


PAPER: Registry[PaperKernel] = Registry("paper function")

_BRAX = ("brax/ant",)
_MINATAR = ("minatar/asterix", "minatar/breakout", "minatar/freeway", "minatar/spaceinvaders")


def _add(entry: PaperKernel) -> None:
    PAPER.register(entry.name, entry)


_add(
    PaperKernel(
        "lpo_symbolic_ant",
        "lpo",
        "symbolic",
        "Supplement C.1: symbolic LPO after meta-training in Ant",
        """def LPO_Symbolic(r, A):
    log_r = log(r)
    r_minus_1 = r - 1
    numerator = -(tanh(math.tanh(log_r) ** 2) + (-log_r * 0.99) ** 2)
    denominator = min(
        tanh(abs(A) * tanh(-0.19)),
        min(A - 0.50, r_minus_1, -0.53) / (abs((-0.80) ** 2) / abs(0.50)),
    )
    return numerator / denominator
""",
        _BRAX,
    )
)
_add(
    PaperKernel(
        "lpo_symbolic_minatar",
        "lpo",
        "symbolic",
        "Supplement C.1: symbolic LPO after meta-training in MinAtar",
        """def LPO_Symbolic(r, A):
    log_r = log(r)
    r_minus_1 = r - 1
    term1 = min(0.15, r_minus_1 * -0.97)
    term2 = min(-0.28 - log_r, A ** 2)
    term3 = max(term1, term2) * tanh(abs(A - 0.46))
    numerator = (term3 ** 2) + tanh((r_minus_1 * A) / max(1.32 ** 2, A - log_r))
    return max(numerator, -0.86)
""",
        _MINATAR,
    )
)
_add(
    PaperKernel(
        "nofeat_symbolic_ant",
        "nofeat",
        "symbolic",
        "Supplement C.1: symbolic No Features optimiser after meta-training in Ant",
        """def No_Feat_Symbolic(p, g, m_1, m_5, m_9, m_99, m_999, m_9999):
    coef = 0.00030 / sin(cos(relu(-0.06)))
    numerator = (p / 0.87) + ((g + m_999) + ((m_5 - 0.32) + tanh(m_99)))
    denominator = relu(1.60)
    return coef * tanh(exp(numerator / denominator))
""",
        _BRAX,
    )
)
_add(
    PaperKernel(
        "nofeat_symbolic_minatar",
        "nofeat",
        "symbolic",
        "Supplement C.1: symbolic No Features optimiser after meta-training in MinAtar",
        """def No_Feat_Symbolic(p, g, m_1, m_5, m_9, m_99, m_999, m_9999):
    term1 = (-3.89 - m_99) - (m_999 - (tanh(-0.60) * g))
    term2 = m_5 + (m_9 + 0.18)
    return relu(tanh((term1 - term2) * -0.00037))
""",
        _MINATAR,
    )
)
_OPEN_SYMBOLIC_HEADER = """def OPEN_Symbolic(p, log_g, sgn_g, log_m_1, sgn_m_1, log_m_5,
        sgn_m_5, log_m_9, sgn_m_9, log_m_99, sgn_m_99, log_m_999,
        sgn_m_999, log_m_9999, sgn_m_9999, t_p, b_p, dorm, l_p, rand):
"""
_add(
    PaperKernel(
        "open_ff_symbolic_ant",
        "open_ff",
        "symbolic",
        "Supplement C.1: symbolic feed-forward OPEN after meta-training in Ant",
        _OPEN_SYMBOLIC_HEADER
        + """    term1 = tanh(exp(abs(log_m_999))) * rand
    term2 = (term1 / (1.11**2)) * -0.00041
    return -0.00041 + (term2 / 2.36)
""",
        _BRAX,
    )
)
_add(
    PaperKernel(
        "open_ff_symbolic_minatar",
        "open_ff",
        "symbolic",
        "Supplement C.1: symbolic feed-forward OPEN after meta-training in MinAtar",
        _OPEN_SYMBOLIC_HEADER
        + """    term1 = sin(1.04) + (p / 1.32)
    term2 = ((log_g + sgn_m_99) + (log_m_99 / 1.24)) * 1.28
    exponent = (term1 + term2) * 0.12
    return (exp(exponent) * 0.00057) - tanh(0.00020 * rand)
""",
        _MINATAR,
    )
)
_add(
    PaperKernel(
        "log_clip_penalty_v2",
        "lpo",
        "code",
        "Supplement C.2: LLM-proposed LPO after meta-training in Ant",
        """def log_clip_penalty_v2(
    ratio: float,
    advantage: float,
    epsilon: float
) -> jnp.ndarray:
    # Compute the log deviation from identity
    delta = jnp.log(ratio)
    # Compute the penalized deviation for positive advantage when delta > epsilon
    positive_term = jnp.where(
        (advantage > 0) & (delta > epsilon),
        jnp.abs(advantage) * (delta - epsilon) ** 2,
        0.0
    )
    # Compute the penalized deviation for negative advantage when delta < -epsilon
    negative_term = jnp.where(
        (advantage < 0) & (delta < -epsilon),
        jnp.abs(advantage) * (-epsilon - delta) ** 2,
        0.0
    )
    # Sum the contributions to obtain the drift
    drift = positive_term + negative_term
    return drift
""",
        _BRAX,
    )
)
_add(
    PaperKernel(
        "log_poly_clip",
        "lpo",
        "code",
        "Supplement C.2: LLM-proposed LPO after meta-training in MinAtar",
        """def log_poly_clip(
    ratio: float,
    advantage: float,
    epsilon: float
) -> "jnp.ndarray":
    import jax.numpy as jnp
    # Compute normalized log deviation; at ratio=1, x=0
    x = jnp.log(ratio) / epsilon
    # Define a blended polynomial-logarithmic factor
    # At x=0, factor = 0 and its derivative is also 0, since a Taylor expansion yields factor ~ x^4/8
    factor = (x ** 2) / 2.0 - jnp.log(1.0 + (x ** 2) / 2.0)
    # Multiply by advantage and enforce non-negativity
    drift = jnp.maximum(0.0, factor * advantage)
    return drift
""",
        _MINATAR,
    )
)


def _parameters(arrays: str, trailing_comma: bool) -> str:
    """A code kernel's parameter lines as Supplement C prints them: each array name typed
    `jnp.ndarray`, then `lr: float`."""
    lines = [f"    {name}: jnp.ndarray,\n" for name in arrays.split()]
    return "".join(lines) + "    lr: float" + ("," if trailing_comma else "") + "\n"


_MOMENTA = "p m_0_1 m_0_5 m_0_9 m_0_99 m_0_999 m_0_9999"


_NOFEAT_ARGS = _parameters(f"{_MOMENTA} g", False) + ") -> jnp.ndarray:\n"
_add(
    PaperKernel(
        "HybridBetaMomentum",
        "nofeat",
        "code",
        "Supplement C.2: LLM-proposed No Features optimiser after meta-training in Ant",
        "def HybridBetaMomentum(\n"
        + _NOFEAT_ARGS
        + """    # Blend medium-term momentum and very long-term momentum
    m_blend = 0.7 * m_0_5 + 0.3 * m_0_999
    # Compute a dynamic scaling factor based on sign alignment
    # If the gradient and blended momentum agree in sign, use 1.05 to slightly amplify,
    # otherwise use 0.95 to dampen the update
    scale_factor = jnp.where(g * m_blend > 0, 1.05, 0.95)
    # Combine the gradient with the blended momentum modulated by the dynamic scaling factor
    combined_update = scale_factor * (g + m_blend)
    # Return the update scaled by the learning rate
    update = lr * combined_update
    return update
""",
        _BRAX,
    )
)
_add(
    PaperKernel(
        "relative_magnitude_update",
        "nofeat",
        "code",
        "Supplement C.2: LLM-proposed No Features optimiser after meta-training in MinAtar",
        "def relative_magnitude_update(\n"
        + _NOFEAT_ARGS
        + """    import jax.numpy as jnp
    import jax.nn as jnn
    eps = 1e-8
    # Stack momentum buffers and compute the average momentum
    moments = jnp.stack([m_0_1, m_0_5, m_0_9, m_0_99, m_0_999, m_0_9999], axis=0)
    m_avg = jnp.mean(moments, axis=0)
    # Compute the ratio of the absolute values of average momentum to the current gradient
    ratio = jnp.abs(m_avg) / (jnp.abs(g) + eps)
    # Compute elementwise blending weight using a sigmoid with steepness parameter s
    s = 5.0  # Controls how quickly blending switches based on the ratio
    # When ratio > 1, momentum is stronger; weight will be near 1, otherwise near 0
    weight = jnn.sigmoid(s * (ratio - 1.0))
    # Blend the average momentum and the current gradient based on the weight
    blended = weight * m_avg + (1 - weight) * g
    # Scale by the learning rate
    update = lr * blended
    return update
""",
        _MINATAR,
    )
)
_OPEN_ARGS = _parameters(f"{_MOMENTA} l_p b_p t_p dorm g rand", True)
_add(
    PaperKernel(
        "robust_extrapolated",
        "open_ff",
        "code",
        "Supplement C.2: LLM-proposed feed-forward OPEN after meta-training in Ant",
        "def robust_extrapolated(\n"
        + _OPEN_ARGS
        + """) -> jnp.ndarray:
    epsilon = 1e-7
    # Step 1: Aggregate momentum across multiple timescales
    aggregated_mom = (m_0_1 + m_0_5 + m_0_9 + m_0_99 + m_0_999 + m_0_9999) / 6.0
    # Step 2: Compute aggregated squared momentum and estimate variance
    aggregated_sq = (jnp.square(m_0_1) + jnp.square(m_0_5) + jnp.square(m_0_9) +
                     jnp.square(m_0_99) + jnp.square(m_0_999) + jnp.square(m_0_9999)) / 6.0
    variance = jnp.maximum(aggregated_sq - jnp.square(aggregated_mom), epsilon)
    std_est = jnp.sqrt(variance) + epsilon
    # Step 3: Derive a confidence measure from the signal-to-noise ratio
    confidence = jnp.tanh(jnp.abs(aggregated_mom) / std_est)
    # Step 4: Blend the raw gradient with the aggregated momentum (Polyak heavy-ball style)
    weighted_update = 0.5 * g + 0.5 * aggregated_mom
    # Step 5: Scale the blended update by (1 + confidence) to favor high-confidence updates
    adjusted_update = weighted_update * (1.0 + confidence)
    # Step 6: Add decaying random noise for exploration
    noise_weight = 0.01 * (1.0 - t_p)  # more noise early in training
    noise = noise_weight * rand
    # Step 7: Combine the adjusted update with noise
    combined_update = adjusted_update + noise
    # Step 8: Compute damping factors based on training/batch progress and layer depth
    progress_scaling = jnp.exp(-0.5 * (b_p + t_p))
    layer_scaling = 1.0 - l_p
    # Step 9: Final update with normalization by dormancy
    update = lr * combined_update * progress_scaling * layer_scaling / (dorm + epsilon)
    # Step 10: Ensure numerical stability by replacing NaNs or infinities
    update = jnp.nan_to_num(update, nan=0.0, posinf=1e7, neginf=-1e7)
    return update
""",
        _BRAX,
    )
)
_add(
    PaperKernel(
        "Power_Sign_Adaptive",
        "open_ff",
        "code",
        "Supplement C.2: LLM-proposed feed-forward OPEN after meta-training in MinAtar",
        "def Power_Sign_Adaptive(\n"
        + _OPEN_ARGS
        + """) -> jnp.ndarray:
    import jax.numpy as jnp
    import jax
    # Compute effective momentum as a weighted average of historic momenta
    eff_mom = (0.1 * m_0_1 +
               0.15 * m_0_5 +
               0.2 * m_0_9 +
               0.25 * m_0_99 +
               0.2 * m_0_999 +
               0.1 * m_0_9999)
    # Blend raw gradient and effective momentum using an exponential decay based on b_p
    blend_weight = jnp.exp(-b_p)
    combined = blend_weight * g + (1.0 - blend_weight) * eff_mom
    # Compute adaptive exponent which transitions from 0.5 (sign-driven update) early to 1.0 later
    exponent = 0.5 + 0.5 * t_p  # when t_p=0 -> exponent=0.5, when t_p=1 -> exponent=1.0
    # Apply the power sign transformation: preserve sign, raise magnitude to the adaptive exponent
    power_sign_update = jnp.sign(combined) * (jnp.abs(combined) ** exponent)
    # Scale update by layer depth: deeper layers receive relatively larger updates
    layer_scale = 1.0 + l_p
    # Adjust for neuron dormancy, ensuring a minimum value of 1 to avoid division by zero
    dorm_factor = jnp.maximum(dorm, 1.0)
    # Add small stochastic noise that decays with training progress for exploration
    noise = 0.005 * rand * (1.0 - t_p)
    update = lr * power_sign_update * layer_scale / dorm_factor + noise
    return update
""",
        _MINATAR,
    )
)
_add(
    PaperKernel(
        "AdaptiveLayerRAdam",
        "open",
        "code",
        "Supplement C.2: LLM-proposed recurrent OPEN after meta-training in MinAtar",
        "def AdaptiveLayerRAdam(\n"
        + _OPEN_ARGS
        + """    iteration: float,
    var: jnp.ndarray
) -> jnp.ndarray:
    # Update the running variance with a decay factor of 0.99
    decay = 0.99
    var_new = decay * var + (1 - decay) * jnp.square(g)
    var_hat = var_new / (1 - decay**iteration)
    # Compute bias-corrected momentum estimates
    # Fast momentum: m_0_1 corresponds to a fast adaptation (beta=0.1 assumed)
    m_fast = m_0_1 / (1 - 0.1**iteration)
    # Slow momentum: m_0_9 corresponds to a slower running average (beta=0.9 assumed)
    m_slow = m_0_9 / (1 - 0.9**iteration)
    # Combine momentum estimates based on layer proportion (l_p)
    # Shallow layers (l_p close to 0) favor slow momentum, deeper layers favor fast momentum
    momentum = l_p * m_fast + (1 - l_p) * m_slow
    # Implement RAdam style variance rectification
    beta = 0.9
    rho_inf = 2 / (1 - beta) - 1  # Typically 19 for beta=0.9
    # To avoid division by zero in early iterations, ensure denominator is not zero
    beta_t = beta**iteration
    rho_t = rho_inf - 2 * iteration * beta_t / (1 - beta_t + 1e-8)
    # Rectification: if rho_t > 4, apply the adjustment
    r_t = jnp.where(rho_t > 4, jnp.sqrt(((rho_t - 4) * (rho_t - 2) * rho_inf) / ((rho_inf - 4) * (rho_inf - 2) * (rho_t + 1e-8))), 1.0)
    # Compute the update using the rectified momentum divided by the variance estimate
    update = r_t * momentum / (jnp.sqrt(var_hat) + 1e-8)
    # Scale update with learning rate and adjust for dormant neurons (dorm factor)
    # Higher dorm values lead to a reduction in the update magnitude
    update = update * lr / (1 + dorm)
    # Add a small noise term, annealed by the training proportion t_p to encourage exploration
    noise_scaling = 0.001 * (1 - t_p)
    update = update + rand * noise_scaling * lr
    return update, var_new
""",
        _MINATAR,
        note="one line cut off in the PDF, completed as RAdam's rectification term",
    )
)
