"""Whole lifetimes with an update rule (LPG) or with A2C, under the trainer protocol.

`LPGTrainer(cfg, env, rule, agent)` and `A2CTrainer(cfg, env, agent)` have the PPO trainer's
interface, `init(theta, key)` and `run(theta, state) -> TrainOutput`, so the sharded runner
(`rl/parallel.py`) runs them over seeds and population members unchanged: `cfg` gives the
rollout size (`num_envs` x `num_steps`), the budget, gamma and lambda and the curve settings;
`agent` (`rl/lpg_agent.AgentConfig`) the networks and optimisers. `LPGTrainer` takes the rule's
θ either bare (the meta-gradient learner differentiates through it) or as the `update_rule`
field of a `Theta` (what the runner passes from ES, evaluation and distillation).

A2C (Mnih et al., 2016, arXiv:1602.01783) is the hand-designed reference LPG is compared with:
one actor-critic step per rollout on GAE advantages, `cfg.ent_coef` entropy bonus and
`cfg.vf_coef` value loss, with the agent's networks and optimisers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_cli.config.models import TrainConfig
from metarl_cli.rl.lpg_agent import (
    AgentConfig,
    AgentState,
    LPGAgent,
    UpdateRule,
    agent_for,
    entropy,
)
from metarl_cli.rl.ppo import (
    TrainOutput,
    summarise,  # the PPO trainer's rule
)
from metarl_cli.rl.slots import Theta

# The rollout of every LPG and A2C agent, 64 envs x 20 steps per update (Goldie et al., 2025,
# arXiv:2507.17668, Table 3): the `train_defaults` of LPG and of the A2C baseline.
ROLLOUT_DEFAULTS = {"num_envs": 64, "num_steps": 20, "num_minibatches": 1}


@struct.dataclass
class LifetimeState:
    """An agent and the key of the rest of its lifetime."""

    agent: AgentState
    key: jax.Array


def rule_theta(theta: Any) -> Any:
    """The update rule's θ: `theta.update_rule` of a `Theta`, else `theta` itself."""
    return theta.update_rule if isinstance(theta, Theta) else theta


def _episodes(traj: Any) -> tuple[jax.Array, jax.Array]:
    done = traj.done.astype(jnp.float32)
    return jnp.sum(traj.episode_return * done), jnp.sum(done)


class _Lifetime:
    """What LPG and A2C share: a fresh agent per run, one update scanned `cfg.num_updates`
    times, and the PPO trainer's summary of the episodes."""

    cfg: TrainConfig
    agent: LPGAgent

    def init(self, theta: Any, key: jax.Array) -> LifetimeState:
        """A fresh agent (theta is not used: an update rule's parameters enter in `run`)."""
        del theta
        k_agent, key = jax.random.split(key)
        return LifetimeState(self.agent.init(k_agent), key)

    def __call__(self, theta: Any, key: jax.Array) -> TrainOutput:
        return self.run(theta, self.init(theta, key))

    def run(self, theta: Any, state: LifetimeState) -> TrainOutput:
        """The whole lifetime (each trainer's own update)."""
        raise NotImplementedError

    def _scan(self, body: Any, state: LifetimeState) -> TrainOutput:
        """`body(agent, key) -> (agent, (episode return sum, episodes, losses))` over the
        lifetime, summarised."""
        keys = jax.random.split(state.key, self.cfg.num_updates)
        _, (ep_sum, ep_count, losses) = jax.lax.scan(body, state.agent, keys)
        return summarise(self.cfg, ep_sum, ep_count, losses[-1])


class LPGTrainer(_Lifetime):
    """Trains a fresh agent for `cfg.num_updates` updates with the update rule `rule`."""

    def __init__(self, cfg: TrainConfig, env: Any, rule: UpdateRule, agent: AgentConfig) -> None:
        self.cfg, self.env = cfg, env
        self.agent = LPGAgent(agent, env, rule, cfg.num_steps)

    def run(self, theta: Any, state: LifetimeState) -> TrainOutput:
        """The whole lifetime; pure in (theta, state). `theta`: the rule's θ (`rule_theta`)."""
        theta = rule_theta(theta)

        def body(agent: AgentState, key: jax.Array):
            agent, out = self.agent.update(theta, agent, key)
            return agent, (*_episodes(out.rollout), out.losses)

        return self._scan(body, state)


class A2CTrainer(_Lifetime):
    """A2C with the LPG agent's networks and optimisers (module doc)."""

    def __init__(self, cfg: TrainConfig, env: Any, agent: AgentConfig) -> None:
        self.cfg, self.env = cfg, env
        self.agent = LPGAgent(agent, env, _no_rule, cfg.num_steps)

    def _loss(self, params: Any, traj: Any, last_obs: jax.Array):
        cfg, agent = self.cfg, self.agent
        v, adv = agent.values(params["value"], traj, last_obs, cfg.gamma, cfg.gae_lambda)
        adv, target = jax.lax.stop_gradient(adv), jax.lax.stop_gradient(v + adv)
        logits = agent.apply("actor", params["actor"], traj.obs)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits), traj.action[..., None], -1)
        actor = -jnp.mean(logp[..., 0] * adv)
        value = 0.5 * jnp.mean((v - target) ** 2)
        ent = entropy(logits).mean()
        return actor + cfg.vf_coef * value - cfg.ent_coef * ent, jnp.stack([actor, value, ent])

    def run(self, theta: Any, state: LifetimeState) -> TrainOutput:
        """The whole run; pure in state."""
        del theta
        agent = self.agent

        def body(s: AgentState, key: jax.Array):
            env_state, obs, traj = agent.rollout(s.params["actor"], s.env_state, s.obs, key)
            learn = {k: s.params[k] for k in ("actor", "value")}
            grads, losses = jax.grad(self._loss, has_aux=True)(learn, traj, obs)
            params, opt_state = dict(s.params), dict(s.opt_state)
            for name in learn:
                upd, opt_state[name] = agent.tx[name].update(grads[name], s.opt_state[name])
                params[name] = optax.apply_updates(learn[name], upd)
            s = s.replace(params=params, opt_state=opt_state, env_state=env_state, obs=obs)
            return s.replace(step=s.step + 1), (*_episodes(traj), losses)

        return self._scan(body, state)


@dataclass(frozen=True)
class OwnTrainer:
    """What fills the trainer for a target that is not PPO with slots: an update rule (LPG's
    kernel, its theta given at run time) or, with `rule=None`, A2C. `trainer(cfg, env)` builds
    it with the env's agent preset (`lpg_agent.agent_for`)."""

    rule: Any = None
    preset: str | None = None

    def trainer(self, cfg: TrainConfig, env: Any) -> LPGTrainer | A2CTrainer:
        """The trainer for `cfg` on `env`."""
        agent = agent_for(cfg.env_id, self.preset)
        if self.rule is None:
            return A2CTrainer(cfg, env, agent)
        return LPGTrainer(cfg, env, self.rule, agent)


def _no_rule(theta: Any, r, d, pi, y_t, y_tp1):  # A2C never calls the rule
    raise AssertionError("A2C has no update rule")
