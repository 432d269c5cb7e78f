"""PPO (Schulman et al., 2017, arXiv:1707.06347) with pluggable drift and optimiser slots.

`make_train(cfg, env, slots)` captures everything static and returns a `Trainer` whose
`run(theta, state)` is one pure function over the whole run (nested `lax.scan`s), so it can be
jitted once, vmapped over seeds and population members, and sharded over devices. Parameters
are initialised by `init(theta, key)`, separately, because an orthogonal initialiser inside a
multi-device CPU program can deadlock. Metrics are reduced inside the run: per update only the
sum and count of finished-episode returns are kept, then thinned into a curve.

The file is long and linear on purpose: the whole PPO step reads in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_cli.config.models import TrainConfig
from metarl_cli.rl import networks as nets
from metarl_cli.rl.gae import gae
from metarl_cli.rl.slots import OptContext, Slots, Theta, context_reads, fill_slots


class Batch(NamedTuple):
    """What the loss reads of a transition (the rest is not shuffled into minibatches)."""

    obs: jax.Array
    action: jax.Array
    value: jax.Array
    log_prob: jax.Array


class Transition(NamedTuple):
    """One environment step of the rollout, batched over the envs."""

    obs: jax.Array
    action: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array
    log_prob: jax.Array
    episode_return: jax.Array
    truncated: Any = None  # [N] bool, when the env can truncate
    prev_final_value: Any = None  # V(final obs of the previous step), [N], when it can truncate


@struct.dataclass
class RunnerState:
    """What one PPO run carries through its `scan`s (named fields, never a positional tuple)."""

    params: Any  # {"actor": ..., "critic": ...}
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    # The previous step's pre-reset observation, whose value is bootstrapped one step late
    # (batched with the next step's critic pass); `obs` at the start of a run.
    final_obs: jax.Array

    if TYPE_CHECKING:  # flax adds `replace` at run time

        def replace(self, **changes: Any) -> RunnerState: ...


class TrainOutput(NamedTuple):
    """What one training run returns (leading axes are added by vmap over seeds/members).

    Attributes:
        final_return: mean raw return of episodes finished in the last `final_window` of
            updates (NaN when none finished).
        final_episodes: how many episodes that mean is over.
        curve: mean return of episodes finished in each of `curve_points` chunks of updates
            (NaN where none finished).
        curve_episodes: episodes per chunk.
        losses: final update's mean (actor, value, entropy) losses, [3].
    """

    final_return: jax.Array
    final_episodes: jax.Array
    curve: jax.Array
    curve_episodes: jax.Array
    losses: jax.Array


def curve_steps(cfg: TrainConfig) -> list[int]:
    """Env steps at the end of each curve chunk (host-side, static)."""
    n, p = cfg.num_updates, min(cfg.curve_points, cfg.num_updates)
    ends = [((i + 1) * n + p - 1) // p for i in range(p)]
    return [e * cfg.batch_size for e in ends]


class Trainer:
    """A compiled-once PPO run: `init(theta, key)`, `run(theta, state)`, `__call__(theta, key)`."""

    def __init__(self, cfg: TrainConfig, env: Any, slots: Slots) -> None:
        slots = fill_slots(cfg, slots.drift, slots.optimiser)
        self.cfg, self.env, self.slots = cfg, env, slots
        spec = env.spec
        self.actor = nets.Actor(
            spec.action_dim, spec.continuous, cfg.hidden_size, cfg.num_hidden_layers, cfg.activation
        )
        self.critic = nets.Critic(cfg.hidden_size, cfg.num_hidden_layers, cfg.activation)
        assert slots.optimiser is not None  # fill_slots put Adam in an empty slot
        self.drift, self.opt = slots.drift, slots.optimiser

    def init(self, theta: Theta, key: jax.Array) -> RunnerState:
        """Initial parameters, optimiser state and environments for one run."""
        theta = Theta.of(theta)
        k_actor, k_critic, k_env, k_opt, key = jax.random.split(key, 5)
        dummy = jnp.zeros((1, self.env.spec.obs_dim))
        params = {
            "actor": self.actor.init(k_actor, dummy)["params"],
            "critic": self.critic.init(k_critic, dummy)["params"],
        }
        obs, env_state = self.env.reset(k_env)
        opt_state = self.opt.init(theta.optimiser, params, k_opt)
        return RunnerState(params, opt_state, env_state, obs, key, final_obs=obs)

    def __call__(self, theta: Theta, key: jax.Array) -> TrainOutput:
        return self.run(theta, self.init(theta, key))

    def _policy(self, params: Any, obs: jax.Array, capture: bool = False) -> Any:
        """(logits or mean, log std, activations or None) of the actor."""
        return self.actor.apply({"params": params}, obs, capture)

    def _value(self, params: Any, obs: jax.Array, capture: bool = False) -> Any:
        """(value, activations or None) of the critic."""
        return self.critic.apply({"params": params}, obs, capture)

    def _loss(self, theta: Theta, params: Any, batch: Batch, advantages: Any, targets: Any) -> Any:
        """PPO's loss with the drift slot: (total, ([actor, value, entropy], activations))."""
        cfg, capture = self.cfg, self.opt.needs_activations
        out, log_std, actor_acts = self._policy(params["actor"], batch.obs, capture)
        value, critic_acts = self._value(params["critic"], batch.obs, capture)
        if self.env.spec.continuous:
            log_prob = nets.gaussian_log_prob(out, log_std, batch.action)
            entropy = nets.gaussian_entropy(log_std, log_prob.shape).mean()
        else:
            log_prob = nets.categorical_log_prob(out, batch.action)
            entropy = nets.categorical_entropy(out).mean()
        ratio = jnp.exp(log_prob - batch.log_prob)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        drift = self.drift(theta.drift, ratio, adv, cfg.clip_eps)
        actor_loss = -jnp.mean(ratio * adv - drift)
        v_clipped = batch.value + jnp.clip(value - batch.value, -cfg.clip_eps, cfg.clip_eps)
        value_loss = 0.5 * jnp.mean(jnp.maximum((value - targets) ** 2, (v_clipped - targets) ** 2))
        total = actor_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        acts = {"actor": actor_acts, "critic": critic_acts}
        return total, (jnp.stack([actor_loss, value_loss, entropy]), acts)

    def _clip_grads(self, grads: Any) -> Any:
        """Global-norm clip: actor and critic separately on the learned-optimiser path."""
        if self.opt.separate_clip:
            return {k: _clip(g, self.cfg.max_grad_norm) for k, g in grads.items()}
        return _clip(grads, self.cfg.max_grad_norm)

    def _env_step(self, runner: RunnerState, _: Any) -> tuple[RunnerState, Transition]:
        """COLLECT TRAJECTORIES: one env step of every env."""
        spec, bootstrap = self.env.spec, self.env.spec.can_truncate
        key, k_act, k_env = jax.random.split(runner.key, 3)
        out, log_std, _ = self._policy(runner.params["actor"], runner.obs)
        value, prev_final_value = self._step_values(runner)
        action, log_prob = nets.sample_action(k_act, out, log_std, spec.continuous)
        step = self.env.step(k_env, runner.env_state, action)
        transition = Transition(
            runner.obs,
            action,
            value,
            step.reward,
            step.done,
            log_prob,
            step.episode_return,
            truncated=step.truncated if bootstrap else None,
            prev_final_value=prev_final_value,
        )
        final_obs = step.final_obs if bootstrap else runner.final_obs
        runner = runner.replace(env_state=step.state, obs=step.obs, key=key, final_obs=final_obs)
        return runner, transition

    def _step_values(self, runner: RunnerState) -> tuple[jax.Array, jax.Array | None]:
        """V(obs) and, when episodes can be truncated, V(the previous step's pre-reset obs),
        from one critic pass over both (half the kernels of two passes on a small batch)."""
        critic = runner.params["critic"]
        if not self.env.spec.can_truncate:
            return self._value(critic, runner.obs)[0], None
        both, _ = self._value(critic, jnp.concatenate([runner.obs, runner.final_obs]))
        value, prev_final_value = jnp.split(both, 2)
        return value, prev_final_value

    def _bootstrap(self, runner: RunnerState, traj: Transition) -> tuple[jax.Array, jax.Array]:
        """(V(s_T), rewards) after a rollout. A time limit is not a terminal state: a truncated
        step's reward gets gamma * V(s_final), its pre-reset observation's value, which the
        next step's critic pass computed (the last step's comes from the pass for V(s_T))."""
        last_value, last_final_value = self._step_values(runner)
        if last_final_value is None:
            return last_value, traj.reward
        final_values = jnp.concatenate([traj.prev_final_value[1:], last_final_value[None]])
        return last_value, traj.reward + self.cfg.gamma * final_values * traj.truncated

    def _update_fn(self, theta: Theta) -> Any:
        """One PPO update, the body of the run's scan: `update(runner, update_idx)` ->
        (runner, (sum of finished returns, finished episodes, [3] mean losses))."""
        theta = Theta.of(theta)
        cfg, opt = self.cfg, self.opt
        reads = context_reads(opt)

        grad_fn = jax.value_and_grad(self._loss, argnums=1, has_aux=True)

        def update(carry, update_idx):
            runner = carry
            runner, traj = jax.lax.scan(self._env_step, runner, None, cfg.num_steps)
            # CALCULATE ADVANTAGE
            last_value, rewards = self._bootstrap(runner, traj)
            advantages, targets = gae(
                traj.value, rewards, traj.done, last_value, cfg.gamma, cfg.gae_lambda
            )
            training_prop = update_idx / jnp.maximum(cfg.num_updates - 1, 1)
            lr_scale = 1.0 - update_idx / cfg.num_updates if cfg.anneal_lr else jnp.float32(1.0)

            # UPDATE NETWORK: epochs of shuffled minibatches.
            def epoch(carry, epoch_idx):
                runner = carry
                # The optimiser's keys come from their own branch, so the rest of the run's
                # random stream is the same whether or not the optimiser reads a key.
                key, k_perm, k_opt_epoch = jax.random.split(runner.key, 3)
                batch = Batch(traj.obs, traj.action, traj.value, traj.log_prob)
                shuffled = _minibatches(cfg, k_perm, (batch, advantages, targets))

                def minibatch(carry, xs):
                    params, opt_state = carry
                    mb_idx, (batch, adv, tgt) = xs
                    k_opt = None
                    if "key" in reads:  # drawn only for a stochastic optimiser
                        k_opt = jax.random.fold_in(k_opt_epoch, mb_idx)
                    (_, (losses, acts)), grads = grad_fn(theta, params, batch, adv, tgt)
                    ctx = _context(
                        reads,
                        training_prop=training_prop,
                        epoch_prop=epoch_idx / max(cfg.update_epochs - 1, 1),
                        minibatch_prop=mb_idx / max(cfg.num_minibatches - 1, 1),
                        lr_scale=lr_scale,
                        activations=acts if opt.needs_activations else None,
                        key=k_opt,
                    )
                    params, opt_state = opt.update(
                        theta.optimiser, self._clip_grads(grads), opt_state, params, ctx
                    )
                    return (params, opt_state), losses

                (params, opt_state), losses = jax.lax.scan(
                    minibatch,
                    (runner.params, runner.opt_state),
                    (jnp.arange(cfg.num_minibatches), shuffled),
                )
                runner = runner.replace(params=params, opt_state=opt_state, key=key)
                return runner, losses.mean(0)

            runner, losses = jax.lax.scan(epoch, runner, jnp.arange(cfg.update_epochs))
            done = traj.done.astype(jnp.float32)
            metrics = (jnp.sum(traj.episode_return * done), jnp.sum(done), losses.mean(0))
            return runner, metrics

        return update

    def run(self, theta: Theta, state: RunnerState) -> TrainOutput:
        """The whole training run; pure in (theta, state)."""
        _, (ep_sum, ep_count, losses) = jax.lax.scan(
            self._update_fn(theta), state, jnp.arange(self.cfg.num_updates, dtype=jnp.float32)
        )
        return summarise(self.cfg, ep_sum, ep_count, losses[-1])

    def run_range(self, theta: Theta, state: RunnerState, metrics: Any, start: Any, stop: Any):
        """Updates [start, stop) of `run`, their metrics written into `metrics`
        (`empty_metrics()`): the bounds are traced, so one program runs every segment of a
        run, and `finish(metrics)` after the last gives `run`'s output. For progress bars
        (`rl/progress.py`); returns (state, metrics)."""
        update = self._update_fn(theta)

        def body(i: Any, carry: Any) -> Any:
            runner, (sums, counts, losses) = carry
            runner, (s, c, loss) = update(runner, i.astype(jnp.float32))
            return runner, (sums.at[i].set(s), counts.at[i].set(c), losses.at[i].set(loss))

        return jax.lax.fori_loop(start, stop, body, (state, metrics))

    def empty_metrics(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Zeroed per-update metrics of one run, for `run_range`."""
        n = self.cfg.num_updates
        return jnp.zeros(n), jnp.zeros(n), jnp.zeros((n, 3))

    def finish(self, metrics: Any) -> TrainOutput:
        """`run`'s output from the metrics of all its updates (`run_range`)."""
        ep_sum, ep_count, losses = metrics
        return summarise(self.cfg, ep_sum, ep_count, losses[-1])


def _context(reads: frozenset[str], **fields: Any) -> OptContext:
    """The optimiser's context with only the fields it reads (the rest None, never traced)."""
    kept: dict[str, Any] = {k: (v if k in reads else None) for k, v in fields.items()}
    return OptContext(**kept)


def _minibatches(cfg: TrainConfig, key: jax.Array, data: Any) -> Any:
    """`data` ([num_steps, num_envs, ...] leaves) flattened, shuffled and split into
    [num_minibatches, minibatch_size, ...]."""
    flat = jax.tree.map(lambda x: x.reshape((cfg.batch_size, *x.shape[2:])), data)
    perm = jax.random.permutation(key, cfg.batch_size)
    return jax.tree.map(
        lambda x: jnp.take(x, perm, axis=0).reshape(
            (cfg.num_minibatches, cfg.minibatch_size, *x.shape[1:])
        ),
        flat,
    )


def _clip(tree: Any, max_norm: float) -> Any:
    norm = optax.tree.norm(tree)
    scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    return jax.tree.map(lambda g: g * scale, tree)


def summarise(cfg: TrainConfig, ep_sum, ep_count, losses) -> TrainOutput:
    """A run's output from its per-update episode sums and counts and its final losses: the
    curve in `cfg.curve_points` chunks, the final return over the last `cfg.final_window` of
    the updates."""
    n = cfg.num_updates
    points = min(cfg.curve_points, n)
    chunk = (jnp.arange(n) * points) // n
    c_sum = jax.ops.segment_sum(ep_sum, chunk, num_segments=points)
    c_count = jax.ops.segment_sum(ep_count, chunk, num_segments=points)
    window = max(1, round(cfg.final_window * n))
    f_sum, f_count = ep_sum[-window:].sum(), ep_count[-window:].sum()
    nan = jnp.float32(jnp.nan)
    return TrainOutput(
        final_return=jnp.where(f_count > 0, f_sum / jnp.maximum(f_count, 1), nan),
        final_episodes=f_count,
        curve=jnp.where(c_count > 0, c_sum / jnp.maximum(c_count, 1), nan),
        curve_episodes=c_count,
        losses=losses,
    )


def make_train(cfg: TrainConfig, env: Any, slots: Slots | None = None) -> Trainer:
    """Builds a PPO trainer for `cfg` on `env` with `slots` (defaults: PPO clip + Adam)."""
    return Trainer(cfg, env, slots or Slots())
