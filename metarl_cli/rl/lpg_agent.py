"""The agent an LPG-style update rule trains (Oh et al., 2020, arXiv:2007.08794, §3).

The agent has two networks with their own optimiser states: an actor pi_theta (a softmax over
the actions) and a prediction network y_theta (a softmax over `y_dim` entries), plus a value
network used only by the meta-objective's baseline. One update collects a `num_steps` x
`num_envs` rollout and asks the update rule for pi_hat [T, B] and y_hat [T, B, y_dim] from
`(r, d, pi(a|s), y(s_t), y(s_{t+1}))`, then descends

    L(theta) = mean_t[ log(pi(a_t|s_t) + 1e-8) * pi_hat_t ]
               + alpha_y * mean_t[ KL(y(s_t) || y_hat_t) ]

(the reference code's sign: a positive pi_hat lowers the probability). The agent never sees an
advantage or a value: everything it learns comes through pi_hat and y_hat.

LPG's inputs are constants of the agent's gradient (taken in the parameters being updated
only), but not of a meta-gradient: pi and y at update k depend on theta through updates 1..k-1,
and `jax.grad` in theta follows that path, so the meta-gradient is the exact derivative of the
meta-loss (checked against finite differences). The reference code wraps the inputs in
`stop_gradient`, which also drops that path from its meta-gradient.

Everything here is differentiable in the rule's theta (meta-gradients run through updates), so
Adam agents use optax's `eps_root` (sqrt'(0) would be infinite for never-updated weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

EPS = 1e-8


@dataclass(frozen=True)
class AgentConfig:
    """The agent's networks and optimisers (static, hashable).

    Attributes:
        network: "mlp" (`hidden` units, one ReLU layer), "linear" (no bias: tabular on one-hot
            observations) or "conv" (two 4x4 conv layers of `hidden` channels, MinAtar).
        hidden: width of the hidden layer or conv channels.
        optimiser: "adam" or "sgd".
        lr: the actor's learning rate.
        y_lr: the prediction and value networks' learning rate.
        max_grad_norm: global-norm clip per network (None: none).
        y_dim: length of the prediction vector.
        alpha_y: weight of the KL term.
        obs_shape: the observation's image shape for "conv" (H, W, C), else ().
    """

    network: Literal["mlp", "linear", "conv"] = "mlp"
    hidden: int = 32
    optimiser: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    y_lr: float = 1e-3
    max_grad_norm: float | None = 0.5
    y_dim: int = 8
    alpha_y: float = 0.5
    obs_shape: tuple[int, ...] = ()


AGENT_PRESETS: dict[str, dict[str, Any]] = {
    # Paper Tables 3/7 (gridworld): MLP(32), Adam 1e-3, clip 0.5 (the reference's `rand_all`).
    "paper": dict(network="mlp", hidden=32, optimiser="adam", lr=1e-3, y_lr=1e-3),
    # The reference code's `all_shortlife` agent: tabular, SGD 40 (actor) and 4 (y, value).
    "tabular": dict(network="linear", optimiser="sgd", lr=40.0, y_lr=4.0),
    # Paper Tables 3/7 (MinAtar): two conv layers of 32 channels, Adam 5e-4, clip 1.0.
    "minatar": dict(
        network="conv", hidden=32, optimiser="adam", lr=5e-4, y_lr=5e-4, max_grad_norm=1.0
    ),
}


_MINATAR_CHANNELS = {"asterix": 4, "breakout": 4, "freeway": 7, "spaceinvaders": 6}


def agent_for(env_id: str, preset: str | None = None) -> AgentConfig:
    """The agent preset for `env_id` (default: "minatar" on MinAtar, else "paper"); a conv
    agent sees MinAtar's 10 x 10 board."""
    suite, name = env_id.split("/", 1)
    preset = preset or ("minatar" if suite == "minatar" else "paper")
    values = dict(AGENT_PRESETS[preset])
    if values.get("network") == "conv":
        if suite != "minatar":
            from metarl_cli.errors import ConfigError

            raise ConfigError(f"the conv agent preset needs a MinAtar env, got {env_id}")
        values["obs_shape"] = (10, 10, _MINATAR_CHANNELS[name])
    return AgentConfig(**values)


class UpdateRule(Protocol):
    """An update rule: (pi_hat [T, B], y_hat [T, B, y_dim]) of a rollout, given theta."""

    def __call__(self, theta: Any, r, d, pi, y_t, y_tp1) -> tuple[jax.Array, jax.Array]: ...


class AgentNet(nn.Module):
    """One of the agent's networks: logits (or a value) of `out` entries."""

    out: int
    network: str
    hidden: int
    obs_shape: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.network == "linear":
            return nn.Dense(self.out, use_bias=False)(x)
        if self.network == "conv":
            x = x.reshape((*x.shape[:-1], *self.obs_shape))
            for _ in range(2):
                x = nn.relu(nn.Conv(self.hidden, (4, 4), strides=1)(x))
            x = x.reshape((*x.shape[:-3], -1))
        else:
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out)(x)


class Rollout(NamedTuple):
    """A time-major rollout [T, B, ...]; `next_obs` is the observation before any reset."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    done: jax.Array
    truncated: jax.Array
    next_obs: jax.Array
    episode_return: jax.Array


@struct.dataclass
class AgentState:
    """An agent mid-lifetime: parameters and optimiser states of its three networks, its
    environments, and the number of updates done."""

    params: Any  # {"actor", "y", "value"}
    opt_state: Any
    env_state: Any
    obs: jax.Array
    step: jax.Array

    if TYPE_CHECKING:

        def replace(self, **changes: Any) -> AgentState: ...


class UpdateOut(NamedTuple):
    """What one update produced (for the meta-objective and logging)."""

    rollout: Rollout
    pi_hat: jax.Array
    y_hat: jax.Array
    losses: jax.Array  # [3]: policy term, KL term, policy entropy


def _keep_if(keep: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)


def entropy(logits: jax.Array) -> jax.Array:
    """Entropy of softmax(logits) along the last axis."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


class LPGAgent:
    """The agent of `cfg` on `env` (a `VecEnv` with discrete actions), trained by `rule`."""

    def __init__(self, cfg: AgentConfig, env: Any, rule: UpdateRule, num_steps: int) -> None:
        self.cfg, self.env, self.rule, self.num_steps = cfg, env, rule, num_steps
        n_actions = env.spec.action_dim
        net = (cfg.network, cfg.hidden, cfg.obs_shape)
        self.nets = {
            "actor": AgentNet(n_actions, *net),
            "y": AgentNet(cfg.y_dim, *net),
            "value": AgentNet(1, *net),
        }
        self.tx = {
            "actor": self._optimiser(cfg.lr),
            "y": self._optimiser(cfg.y_lr),
            "value": self._optimiser(cfg.y_lr),
        }

    def _optimiser(self, lr: float) -> optax.GradientTransformation:
        clip = [] if self.cfg.max_grad_norm is None else [optax.clip_by_global_norm(
            self.cfg.max_grad_norm
        )]  # fmt: skip
        if self.cfg.optimiser == "sgd":
            return optax.chain(*clip, optax.sgd(lr))
        return optax.chain(*clip, optax.adam(lr, eps_root=1e-12))

    def apply(self, name: str, params: Any, obs: jax.Array) -> jax.Array:
        """Network `name`'s output on `obs` (logits; the value network's is [..., 1])."""
        out: jax.Array = self.nets[name].apply({"params": params}, obs)  # type: ignore[assignment]
        return out

    def init(self, key: jax.Array) -> AgentState:
        """Fresh networks and environments (a new level where the env draws one)."""
        k_env, *k_nets = jax.random.split(key, 4)
        obs, env_state = self.env.reset(k_env)
        params = {
            name: net.init(k, obs[:1])["params"]
            for (name, net), k in zip(self.nets.items(), k_nets, strict=True)
        }
        opt_state = {name: self.tx[name].init(p) for name, p in params.items()}
        return AgentState(params, opt_state, env_state, obs, jnp.asarray(0, jnp.int32))

    def rollout(self, actor: Any, env_state: Any, obs: jax.Array, key: jax.Array):
        """(env_state, obs, Rollout) of `num_steps` steps of every env with the actor."""

        def one(carry, k):
            env_state, obs = carry
            k_act, k_env = jax.random.split(k)
            action = jax.random.categorical(k_act, self.apply("actor", actor, obs))
            out = self.env.step(k_env, env_state, action)
            step = Rollout(
                obs, action, out.reward, out.done, out.truncated, out.final_obs,
                out.episode_return,
            )  # fmt: skip
            return (out.state, out.obs), step

        keys = jax.random.split(key, self.num_steps)
        (env_state, obs), traj = jax.lax.scan(one, (env_state, obs), keys)
        return env_state, obs, jax.lax.stop_gradient(traj)

    def _pi_y(self, params: Any, traj: Rollout):
        """(pi(a_t|s_t) + 1e-8, y(s_t), y(s_t+1), the actor's logits)."""
        logits = self.apply("actor", params["actor"], traj.obs)
        logp = jax.nn.log_softmax(logits)
        pi = jnp.exp(jnp.take_along_axis(logp, traj.action[..., None], -1)[..., 0]) + EPS
        y_t = jax.nn.softmax(self.apply("y", params["y"], traj.obs))
        y_tp1 = jax.nn.softmax(self.apply("y", params["y"], traj.next_obs))
        return pi, y_t, y_tp1, logits

    def _loss(self, theta: Any, params: Any, frozen: Any, traj: Rollout):
        """The agent's loss at `params`; LPG's inputs come from `frozen` (the same values):
        constants for the agent's gradient, which is taken in `params` only, while a
        meta-gradient still follows them back to theta through earlier updates."""
        pi, y_t, _, logits = self._pi_y(params, traj)
        inputs = self._pi_y(frozen, traj)[:3]
        pi_hat, y_hat = self.rule(theta, traj.reward, traj.done.astype(jnp.float32), *inputs)
        policy = jnp.mean(jnp.log(pi) * pi_hat)
        kl = jnp.sum(y_t * (jnp.log(y_t + EPS) - jnp.log(y_hat + EPS)), axis=-1).mean()
        ent = entropy(logits).mean()
        return policy + self.cfg.alpha_y * kl, (pi_hat, y_hat, jnp.stack([policy, kl, ent]))

    def update(self, theta: Any, state: AgentState, key: jax.Array, lifetime: Any = None):
        """One LPG update of the actor and y-network on a fresh rollout (differentiable in
        theta): (state, UpdateOut). Past `lifetime` updates the parameters are kept as they
        were (the reference's lifetime mask); the env keeps stepping."""
        env_state, obs, traj = self.rollout(state.params["actor"], state.env_state, state.obs, key)
        learn = {k: state.params[k] for k in ("actor", "y")}
        grads, (pi_hat, y_hat, losses) = jax.grad(
            lambda p: self._loss(theta, p, learn, traj), has_aux=True
        )(learn)
        params, opt_state = dict(state.params), dict(state.opt_state)
        for name in ("actor", "y"):
            upd, new_opt = self.tx[name].update(grads[name], opt_state[name], learn[name])
            new = optax.apply_updates(learn[name], upd)
            if lifetime is not None:
                keep = state.step < lifetime
                new, new_opt = _keep_if(keep, (new, new_opt), (learn[name], opt_state[name]))
            params[name], opt_state[name] = new, new_opt
        state = state.replace(
            params=params, opt_state=opt_state, env_state=env_state, obs=obs, step=state.step + 1
        )
        return state, UpdateOut(traj, pi_hat, y_hat, losses)

    def values(
        self, value_params: Any, traj: Rollout, last_obs: jax.Array, gamma: float, lam: float
    ):
        """(V(s_t) [T, B], GAE advantages [T, B]) of `traj`, bootstrapping through truncation
        with V of the pre-reset observation, as the PPO trainer does."""
        from metarl_cli.rl.gae import gae

        v = self.apply("value", value_params, traj.obs)[..., 0]
        v_final = self.apply("value", value_params, traj.next_obs)[..., 0]
        v_last = self.apply("value", value_params, last_obs)[..., 0]
        reward = traj.reward + gamma * v_final * traj.truncated
        adv, _ = gae(v, reward, traj.done, v_last, gamma, lam)
        return v, adv

    def value_step(self, state: AgentState, traj: Rollout, last_obs, gamma: float, lam: float):
        """One regression step of the value network on `traj`'s GAE targets (held fixed)."""

        def loss(p):
            v, adv = self.values(p, traj, last_obs, gamma, lam)
            target = jax.lax.stop_gradient(v + adv)
            return 0.5 * jnp.mean((v - target) ** 2)

        p, o = state.params["value"], state.opt_state["value"]
        upd, o = self.tx["value"].update(jax.grad(loss)(p), o, p)
        params = {**state.params, "value": optax.apply_updates(p, upd)}
        return state.replace(params=params, opt_state={**state.opt_state, "value": o})
