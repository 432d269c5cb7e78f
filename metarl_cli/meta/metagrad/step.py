"""One meta-gradient step of an update rule (Oh et al., 2020, arXiv:2007.08794, §3.2).

For each agent, with theta differentiable through all K updates: K updates by the rule, each
on a fresh rollout (continuing the agent's environments), then one evaluation rollout with the
updated actor. A value network (the agent's architecture, one output) is regressed on each
rollout's GAE targets; its GAE on the evaluation rollout, normalised over the agent's samples,
is the advantage A. The agent's meta-loss is

    mean[-log(pi_K(a|s) + 1e-8) A] - beta0 H(pi) + beta2 mean(pi_hat^2)
                                   - beta1 H(y) + beta3 mean(|y_hat|^2)

with the entropies of the updated actor and y-network on each update's observations and the
regularisers averaged over the K updates. The meta-gradient is its mean over agents: agents are
sharded over devices (`shard_map`), each device sums the gradients of its agents in sequential
chunks (`num_mini_batches` in all: memory only), and one all-reduce joins them. Agents persist
across meta-steps (truncated backpropagation over the last K updates) and restart with fresh
parameters on a new level when their lifetime is over.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from metarl_cli.meta.metagrad.config import MetagradConfig
from metarl_cli.rl.lpg_agent import EPS, AgentState, LPGAgent, entropy
from metarl_cli.rl.parallel import AXIS

GAMMA, GAE_LAMBDA = 0.99, 0.95  # the value baseline's (paper Table 3)


class AgentStats(NamedTuple):
    """Per-agent metrics of one meta-step."""

    loss: jax.Array
    ep_sum: jax.Array  # returns of episodes finished in the K training rollouts
    ep_count: jax.Array
    entropy: jax.Array  # the updated actor's mean policy entropy


def agent_objective(
    cfg: MetagradConfig, agent: LPGAgent, lifetime: int, theta: Any, state: AgentState, key
) -> tuple[jax.Array, tuple[AgentState, AgentStats]]:
    """One agent's meta-loss (module doc) and its state after the K updates and the
    evaluation rollout (held constant)."""
    train_value = cfg.value_baseline == "trained"

    def inner(s: AgentState, k: jax.Array):
        s, out = agent.update(theta, s, k, lifetime)
        if train_value:
            s = agent.value_step(s, out.rollout, s.obs, GAMMA, GAE_LAMBDA)
        obs = out.rollout.obs
        h_pi = entropy(agent.apply("actor", s.params["actor"], obs)).mean()
        h_y = entropy(agent.apply("y", s.params["y"], obs)).mean()
        reg = jnp.stack([
            h_pi, h_y, jnp.mean(out.pi_hat**2), jnp.mean(jnp.sum(out.y_hat**2, -1))
        ])  # fmt: skip
        done = out.rollout.done.astype(jnp.float32)
        episodes = jnp.stack([jnp.sum(out.rollout.episode_return * done), jnp.sum(done)])
        return s, (reg, episodes)

    step = jax.checkpoint(inner) if cfg.remat else inner
    k_inner, k_eval = jax.random.split(key)
    state, (reg, episodes) = jax.lax.scan(step, state, jax.random.split(k_inner, cfg.agent_updates))
    reg = reg.mean(0)
    env_state, obs, traj = agent.rollout(state.params["actor"], state.env_state, state.obs, k_eval)
    _, adv = agent.values(state.params["value"], traj, obs, GAMMA, GAE_LAMBDA)
    adv = jax.lax.stop_gradient((adv - adv.mean()) / (adv.std() + 1e-8))
    logits = agent.apply("actor", state.params["actor"], traj.obs)
    pi = jnp.take_along_axis(jax.nn.softmax(logits), traj.action[..., None], -1)[..., 0]
    loss = (
        jnp.mean(-jnp.log(pi + EPS) * adv)
        - cfg.beta0 * reg[0]
        - cfg.beta1 * reg[1]
        + cfg.beta2 * reg[2]
        + cfg.beta3 * reg[3]
    )
    state = state.replace(env_state=env_state, obs=obs)
    if train_value:
        state = agent.value_step(state, traj, obs, GAMMA, GAE_LAMBDA)
    stats = AgentStats(loss, episodes[:, 0].sum(), episodes[:, 1].sum(), reg[0])
    return loss, (jax.lax.stop_gradient(state), stats)


def restart_finished(agent: LPGAgent, lifetime: int, state: AgentState, key) -> AgentState:
    """An agent whose lifetime is over, restarted with fresh networks on a new level."""
    fresh = agent.init(key)
    over = state.step >= lifetime
    return jax.tree.map(lambda a, b: jnp.where(over, a, b), fresh, state)


def meta_optimiser(cfg: MetagradConfig) -> optax.GradientTransformation:
    """Adam on theta, with the optional global-norm clip."""
    clip = [] if cfg.lpg_max_grad_norm is None else [
        optax.clip_by_global_norm(cfg.lpg_max_grad_norm)
    ]  # fmt: skip
    return optax.chain(*clip, optax.adam(cfg.lr, b1=0.9, b2=0.999, eps=1e-8))


def mean_gradient(cfg: MetagradConfig, agent: LPGAgent, lifetime: int, chunk: int):
    """`f(theta, agents, keys) -> (sum of gradients, new agents, AgentStats)` over the agents of
    one device, `chunk` at a time (vmapped within a chunk, sequential across chunks)."""
    grad_fn = jax.vmap(
        jax.value_and_grad(
            lambda th, s, k: agent_objective(cfg, agent, lifetime, th, s, k), argnums=0,
            has_aux=True,
        ),
        in_axes=(None, 0, 0),
    )  # fmt: skip

    def run(theta, agents, keys):
        n = keys.shape[0]
        split = jax.tree.map(lambda x: x.reshape((n // chunk, chunk, *x.shape[1:])), (agents, keys))

        def body(total, xs):
            states, ks = xs
            (_, (new, stats)), grads = grad_fn(theta, states, ks)
            total = jax.tree.map(lambda t, g: t + g.sum(0), total, grads)
            return total, (new, stats)

        zero = jax.tree.map(jnp.zeros_like, theta)
        total, (new, stats) = jax.lax.scan(body, zero, split)
        flat = jax.tree.map(lambda x: x.reshape((n, *x.shape[2:])), (new, stats))
        return total, *flat

    return run


def make_meta_step(cfg: MetagradConfig, agent: LPGAgent, lifetime: int, mesh: Any):
    """The jitted meta-step `(theta, opt_state, agents, key) -> (theta, opt_state, agents,
    AgentStats, grad_norm)`, agents sharded over `mesh`."""
    tx = meta_optimiser(cfg)
    devices = mesh.devices.size
    chunk = cfg.num_agents // cfg.num_mini_batches
    per_device = cfg.num_agents // devices
    if per_device % chunk:
        chunk = per_device  # fewer sequential chunks than asked for on this mesh
    grads_of = mean_gradient(cfg, agent, lifetime, chunk)

    def per_device_fn(theta, agents, keys):
        k_agents, k_restart = keys[:, 0], keys[:, 1]
        total, new, stats = grads_of(theta, agents, k_agents)
        total = jax.lax.psum(total, AXIS)
        new = jax.vmap(lambda s, k: restart_finished(agent, lifetime, s, k))(new, k_restart)
        return total, new, stats

    sharded = jax.shard_map(
        per_device_fn,
        mesh=mesh,
        in_specs=(P(), P(AXIS), P(AXIS)),
        out_specs=(P(), P(AXIS), P(AXIS)),
        check_vma=False,
    )

    def meta_step(theta, opt_state, agents, key):
        keys = jax.random.split(key, cfg.num_agents * 2).reshape(cfg.num_agents, 2)
        total, agents, stats = sharded(theta, agents, keys)
        grads = jax.tree.map(lambda g: g / cfg.num_agents, total)
        updates, opt_state = tx.update(grads, opt_state, theta)
        theta = optax.apply_updates(theta, updates)
        return theta, opt_state, agents, stats, optax.tree.norm(grads)

    # Fixed shardings: every call (fresh agents, a step's outputs, a restored checkpoint) then
    # runs the one compiled program.
    rep, shard = shardings(mesh)
    return jax.jit(
        meta_step,
        in_shardings=(rep, rep, shard, rep),
        out_shardings=(rep, rep, shard, shard, rep),
    )


def shardings(mesh: Any) -> tuple[Any, Any]:
    """(replicated, sharded along the agents) on `mesh`."""
    from jax.sharding import NamedSharding

    return NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))


def usable_devices(cfg: MetagradConfig, devices: list) -> list:
    """The most devices (of `devices`) the agents split evenly over."""
    for n in range(len(devices), 0, -1):
        if cfg.num_agents % n == 0:
            return devices[:n]
    return devices[:1]
