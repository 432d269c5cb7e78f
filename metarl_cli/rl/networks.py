"""Separate actor and critic MLPs (as in the paper's code), with optional activation capture.

Both are `Dense(W) -> act -> ... -> Dense(out)` with orthogonal initialisation (sqrt 2 for hidden
layers, 0.01 for the policy head, 1.0 for the value head) and zero biases. With `capture=True`
they also return the mean absolute post-activation of every unit over the batch, which learned
optimisers use for per-neuron dormancy features.

The orthogonal initialiser is ours, by Gram-Schmidt, not flax's QR: jaxlib's batched CPU QR
kernel (`QrFactorizationKernel` -> `ParallelBatchMap`) deadlocks XLA:CPU's thread pool when
parameters of several seeds are initialised in one vmapped program (seen here, on 1 and on 2
host devices). Gram-Schmidt of a Gaussian matrix gives the same Haar distribution as QR with a
positive-diagonal R, which is what flax's initialiser samples.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def _gram_schmidt(a: jax.Array) -> jax.Array:
    """Orthonormalises the columns of a tall matrix (classical Gram-Schmidt, done twice)."""

    def body(q, j):
        v = a[:, j]
        for _ in range(2):  # "twice is enough" for orthogonality in float32
            v = v - q @ (q.T @ v)
        q = q.at[:, j].set(v / jnp.linalg.norm(v))
        return q, None

    q, _ = jax.lax.scan(body, jnp.zeros_like(a), jnp.arange(a.shape[1]))
    return q


def orthogonal(scale: float = 1.0):
    """A QR-free orthogonal initialiser for 2-D kernels (see the module docstring)."""

    def init(key, shape, dtype=jnp.float32):
        rows, cols = shape[0], math.prod(shape[1:])
        a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
        q = _gram_schmidt(a)
        q = q if rows >= cols else q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


def _act(name: str):
    return nn.relu if name == "relu" else nn.tanh


class MLP(nn.Module):
    """Hidden layers then a linear head; returns (output, activations or None)."""

    hidden_size: int
    num_layers: int
    out_dim: int
    activation: str
    head_scale: float

    @nn.compact
    def __call__(self, x: jax.Array, capture: bool = False):
        acts = {}
        ortho = orthogonal
        for i in range(self.num_layers):
            x = nn.Dense(self.hidden_size, kernel_init=ortho(math.sqrt(2)), name=f"dense_{i}")(x)
            x = _act(self.activation)(x)
            if capture:
                acts[f"dense_{i}"] = jnp.abs(x).reshape(-1, x.shape[-1]).mean(0)
        out = nn.Dense(self.out_dim, kernel_init=ortho(self.head_scale), name="head")(x)
        if capture:
            acts["head"] = jnp.abs(out).reshape(-1, out.shape[-1]).mean(0)
        return out, (acts if capture else None)


class Actor(nn.Module):
    """Policy network: logits (discrete) or a mean plus a state-independent log-std."""

    action_dim: int
    continuous: bool
    hidden_size: int = 64
    num_layers: int = 2
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array, capture: bool = False):
        out, acts = MLP(
            self.hidden_size, self.num_layers, self.action_dim, self.activation, 0.01, name="mlp"
        )(x, capture)
        if not self.continuous:
            return out, None, acts
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        if capture:
            acts["log_std"] = jnp.exp(log_std)
        return out, log_std, acts


class Critic(nn.Module):
    """Value network."""

    hidden_size: int = 64
    num_layers: int = 2
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array, capture: bool = False):
        out, acts = MLP(self.hidden_size, self.num_layers, 1, self.activation, 1.0, name="mlp")(
            x, capture
        )
        return out[..., 0], acts


def sample_action(key, logits_or_mean, log_std, continuous: bool):
    """Samples an action and returns (action, log_prob)."""
    if continuous:
        std = jnp.exp(log_std)
        action = logits_or_mean + std * jax.random.normal(key, logits_or_mean.shape)
        return action, gaussian_log_prob(logits_or_mean, log_std, action)
    action = jax.random.categorical(key, logits_or_mean)
    return action, categorical_log_prob(logits_or_mean, action)


def categorical_log_prob(logits, action):
    """log pi(action) under a categorical over `logits`."""
    logp = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]


def categorical_entropy(logits):
    """Entropy of a categorical over `logits` (last axis)."""
    logp = jax.nn.log_softmax(logits)
    return -(jnp.exp(logp) * logp).sum(-1)


def gaussian_log_prob(mean, log_std, action):
    """log pi(action) under a diagonal Gaussian, summed over action dimensions."""
    z = (action - mean) / jnp.exp(log_std)
    return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_entropy(log_std, batch_shape):
    """Entropy of a diagonal Gaussian, broadcast to `batch_shape`."""
    ent = (log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)
    return jnp.broadcast_to(ent, batch_shape)
