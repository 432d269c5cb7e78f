"""LPG's network (Oh et al., 2020, arXiv:2007.08794): a backward GRU over a rollout.

Inputs per step t of a time-major rollout [T, B]: the reward r_t, the episode-end flag d_t
(terminated or truncated), the agent's probability pi(a_t|s_t), and its prediction vectors
y(s_t), y(s_{t+1}) (each a softmax over `target` entries). A small MLP phi (`embed` hidden
units, one output), shared by both prediction vectors, embeds them; phi(y(s_{t+1})) is zeroed
at episode ends. The five scalars `[r, d, pi, phi(y_t), phi(y_{t+1})]` run through a GRU from
the last step to the first, whose state is zeroed where d_t before it reads x_t, so nothing
crosses an episode boundary. From relu(h_t) two heads give pi_hat_t (a scalar) and
y_hat_t = softmax(Dense(target)).

The paper's LPG (Goldie et al., 2025, arXiv:2507.17668, Table 9; "19 inputs", "~200k
parameters") is GRU 256, embedding 16, target 8: 203,946 parameters. The paper's text says
LSTM; the parameter count and the reference code say GRU.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp


class _ResetGRU(nn.Module):
    """One backward step: zero the carry at an episode end, then a GRU cell."""

    features: int

    @nn.compact
    def __call__(self, carry: jax.Array, xs: tuple[jax.Array, jax.Array]):
        x, done = xs
        carry = jnp.where(done[..., None], 0.0, carry)
        return nn.GRUCell(self.features, name="cell")(carry, x)


class LPGNetwork(nn.Module):
    """pi_hat [T, B] and y_hat [T, B, target] of a rollout (module doc).

    Attributes:
        gru: GRU width.
        embed: hidden width of the shared y-embedding phi.
        target: length of the prediction vector y.
    """

    gru: int = 256
    embed: int = 16
    target: int = 8

    @nn.compact
    def __call__(self, r, d, pi, y_t, y_tp1):
        phi_hidden = nn.Dense(self.embed, name="phi_hidden")
        phi_out = nn.Dense(1, name="phi_out")

        def phi(y):
            return phi_out(nn.relu(phi_hidden(y)))[..., 0]

        done = d.astype(bool)
        x = jnp.stack([r, d.astype(r.dtype), pi, phi(y_t), jnp.where(done, 0.0, phi(y_tp1))], -1)
        scan = nn.scan(
            _ResetGRU,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=0,
            out_axes=0,
            reverse=True,
        )
        carry = jnp.zeros((*x.shape[1:-1], self.gru), x.dtype)
        _, h = scan(self.gru, name="gru")(carry, (x, done))
        h = nn.relu(h)
        pi_hat = nn.Dense(1, name="pi_head")(h)[..., 0]
        y_hat = jax.nn.softmax(nn.Dense(self.target, name="y_head")(h), axis=-1)
        return pi_hat, y_hat


def init_lpg(key: jax.Array, gru: int = 256, embed: int = 16, target: int = 8) -> dict:
    """Freshly initialised LPG parameters (flax's default initialisers, as the reference)."""
    return _init(key, int(gru), int(embed), int(target))


@partial(jax.jit, static_argnums=(1, 2, 3))
def _init(key: jax.Array, gru: int, embed: int, target: int) -> dict:
    z = jnp.zeros((2, 1))
    y = jnp.full((2, 1, target), 1.0 / target)
    return LPGNetwork(gru, embed, target).init(key, z, z, z, y, y)["params"]


def apply_lpg(theta: dict, gru: int, embed: int, target: int, r, d, pi, y_t, y_tp1):
    """(pi_hat, y_hat) of LPG `theta` on a time-major rollout."""
    return LPGNetwork(gru, embed, target).apply({"params": theta}, r, d, pi, y_t, y_tp1)
