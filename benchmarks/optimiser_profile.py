"""Where the time of one learned-optimiser step goes, phase by phase, on an env's real network.

    .venv/bin/python benchmarks/optimiser_profile.py [--env minatar/breakout] [--iters 200]

On one device: the env's preset actor and critic (`metarl_cli.rl.ppo.Trainer.init`), gradients
from PPO's own loss on one minibatch of the preset's size, then each optimiser slot's `update`
timed alone (jitted, `--iters` calls, median of 5 blocks), and the phases of the per-parameter
optimisers timed as separate programs of the same shapes: flatten + momenta, features, the
per-parameter network, the rest (noise, zero-mean, unflatten). Also the PPO gradient of one
minibatch (what every optimiser step comes with) and the FLOPs of the per-parameter network
against this machine's measured matmul throughput (the bound the network cannot beat).

Each phase compiled alone can fuse less than inside the whole step, so phases need not sum to
the step; the step's own time is the figure that matters.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def _timeit(fn, *args, iters: int) -> float:
    """Median ms per call of `fn(*args)` over 5 blocks of `iters` calls (after a warm-up)."""
    jax.block_until_ready(fn(*args))
    blocks = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = fn(*args)
        jax.block_until_ready(out)
        blocks.append((time.perf_counter() - t0) / iters * 1e3)
    return statistics.median(blocks)


def _in_loop(step, state, *, k: int = 20) -> float:
    """ms per call of `state -> state` run `k` times inside one compiled loop: buffers are
    allocated once per program, as inside a training run (a standalone call also pays for
    allocating and first touching its large temporaries)."""
    run = jax.jit(lambda s: jax.lax.fori_loop(0, k, lambda i, s: step(s), s))
    jax.block_until_ready(run(state))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(run(state))
        times.append((time.perf_counter() - t0) / k * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="minatar/breakout")
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()

    from metarl_cli.envs import make_env
    from metarl_cli.evaluation import build_configs
    from metarl_cli.learned.base import get_algorithm, slots_for
    from metarl_cli.learned.open_network import flat_features as open_features
    from metarl_cli.learned.perparam import DECAYS, Inputs, Layout
    from metarl_cli.rl.ppo import Batch, make_train
    from metarl_cli.rl.slots import OptContext, Slots, Theta

    (cfg,) = build_configs([args.env])
    trainer = make_train(cfg, make_env(cfg), Slots())
    state = trainer.init(Theta(), jax.random.key(0))
    params = state.params
    layout = Layout(params)
    n = layout.size
    mb = cfg.num_envs * cfg.num_steps // cfg.num_minibatches
    obs = jax.random.normal(jax.random.key(1), (mb, trainer.env.spec.obs_dim))
    batch = Batch(obs, jnp.zeros((mb,), jnp.int32), jnp.zeros((mb,)), jnp.zeros((mb,)) - 1.0)
    adv, tgt = jax.random.normal(jax.random.key(2), (2, mb))
    print(f"{args.env}: {n:,} parameters (actor + critic), minibatch {mb}, iters {args.iters}")

    rows: list[tuple[str, float]] = []
    loss_grad = jax.jit(jax.value_and_grad(trainer._loss, argnums=1, has_aux=True))
    rows.append(
        (
            "PPO loss + gradient, one minibatch",
            _timeit(loss_grad, Theta(), params, batch, adv, tgt, iters=args.iters),
        )
    )
    (_, (_, acts)), grads = loss_grad(Theta(), params, batch, adv, tgt)
    capture = jax.jit(
        lambda p: jax.value_and_grad(
            lambda q: _capture_loss(trainer, q, batch, adv, tgt), has_aux=True
        )(p)
    )
    rows.append(
        ("... with per-unit activations captured", _timeit(capture, params, iters=args.iters))
    )
    (_, (_, acts)), _ = capture(params)
    ctx = OptContext(
        jnp.float32(0.3), jnp.float32(0.5), jnp.float32(0.5), jnp.float32(0.9), acts,
        jax.random.key(3),
    )  # fmt: skip

    def slot_step(slot, theta):
        opt_state = slot.init(theta, params, jax.random.key(4))

        def step(carry):
            new_params, new_state = slot.update(theta, grads, carry[1], carry[0], ctx)
            return new_params, new_state

        return _in_loop(step, (params, opt_state))

    from metarl_cli.rl.slots import fill_slots

    adam = fill_slots(cfg, None, None).optimiser
    rows.append(("Adam step (optax), in a loop", slot_step(adam, None)))
    thetas = {}
    for name in ("nofeat", "open_ff", "open"):
        alg = get_algorithm(name)
        arch = alg.default_architecture(cfg.suite)
        theta = alg.init(jax.random.key(5), **arch)
        thetas[name] = (alg, arch, theta)
        slot = slots_for(alg, cfg, arch).optimiser
        rows.append((f"{name} step, in a loop", slot_step(slot, theta)))

    # Phases of OPEN (recurrent), as separate programs of the step's shapes.
    alg, arch, theta = thetas["open"]
    decays = jnp.asarray(DECAYS, jnp.float32)
    mom0 = jnp.zeros((n, len(DECAYS)), jnp.float32)

    @jax.jit
    def phase_flatten(params, grads, mom):
        p, g = layout.flatten(params), layout.flatten(grads)
        return p, g, decays * mom + (1.0 - decays) * g[:, None]

    p, g, mom = phase_flatten(params, grads, mom0)
    rows.append(
        (
            "  OPEN: flatten p, g + 6 momenta",
            _timeit(phase_flatten, params, grads, mom0, iters=args.iters),
        )
    )

    @jax.jit
    def phase_dormancy(acts):
        return layout.dormancy(acts)

    rows.append(("  OPEN: dormancy table", _timeit(phase_dormancy, acts, iters=args.iters)))
    dorm = phase_dormancy(acts)

    def inputs_of(p, g, mom, dorm):
        return Inputs(
            p, g, mom, jnp.float32(0.3), jnp.float32(0.5), jnp.asarray(layout.layer_prop()), dorm,
            jnp.asarray(layout.actor_mask()), jnp.float32(1.0), jnp.float32(1.0),
            jax.random.key(6), layout,
        )  # fmt: skip

    @jax.jit
    def phase_features(p, g, mom, dorm):
        return open_features(inputs_of(p, g, mom, dorm))

    x = phase_features(p, g, mom, dorm)
    rows.append(
        (
            "  OPEN: 19 features (standalone call)",
            _timeit(phase_features, p, g, mom, dorm, iters=args.iters),
        )
    )
    net = alg.kernel(cfg, arch).rule.network
    carry = jnp.zeros((n, int(arch["gru"])), jnp.float32)
    phase_net = jax.jit(net.apply)
    rows.append(
        (
            "  OPEN: GRU + MLP over all parameters (standalone call)",
            _timeit(phase_net, theta, x, carry, iters=args.iters),
        )
    )
    out, _ = phase_net(theta, x, carry)

    def net_loop(s):  # the output feeds back, so nothing is hoisted out of the loop
        o, c = net.apply(theta, s[0], s[1])
        return s[0] + 1e-6 * o[:, :1], c

    rows.append(("  OPEN: GRU + MLP, in a loop", _in_loop(net_loop, (x, carry))))

    @jax.jit
    def phase_rest(out, p, key):
        eps = jax.random.normal(key, p.shape)
        u = out[:, 0] * 1e-3 * jnp.exp(out[:, 1] * 1e-3) + out[:, 2] * eps * 1e-3
        return layout.unflatten(p - (u - u.mean()))

    rows.append(
        (
            "  OPEN: noise, zero-mean, unflatten (standalone)",
            _timeit(phase_rest, out, p, jax.random.key(7), iters=args.iters),
        )
    )

    # The network's FLOPs against measured matmul throughput.
    a = jax.random.normal(jax.random.key(8), (n, 32))
    w = jax.random.normal(jax.random.key(9), (32, 32))
    mm_ms = _in_loop(lambda a: a @ w * 0.03, a)
    gflops = 2 * n * 32 * 32 / mm_ms / 1e6
    rows.append((f"  [N,32] @ [32,32] matmul in a loop ({gflops:.1f} GFLOP/s)", mm_ms))
    print(f"{'phase':58s} {'ms':>8s}")
    for name, ms in rows:
        print(f"{name:58s} {ms:8.3f}")
    for name, (_, arch, _) in thetas.items():
        macs = _network_macs(name, int(arch["hidden"]), int(arch.get("gru", 0)))
        flops = 2 * macs * n
        print(
            f"{name} network: {macs} multiply-adds per parameter, {flops / 1e6:.0f} MFLOP per "
            f"step: {flops / gflops / 1e6:.2f} ms at the measured {gflops:.1f} GFLOP/s"
        )
    per_update = cfg.update_epochs * cfg.num_minibatches
    print(f"optimiser steps per PPO update: {per_update}")


def _network_macs(name: str, hidden: int, gru: int) -> int:
    """Multiply-adds per parameter of the per-parameter network (inputs padded to 4s)."""
    mlp = hidden * hidden + hidden * (2 if name == "nofeat" else 3)
    if name == "nofeat":
        return 8 * hidden + mlp
    if name == "open_ff":
        return 20 * hidden + mlp
    return (20 + gru) * 3 * gru + gru * hidden + mlp


def _capture_loss(trainer, params, batch, adv, tgt):
    """PPO's loss with activations captured (what OPEN's dormancy reads)."""
    from metarl_cli.rl.slots import Theta

    opt = trainer.opt
    object.__setattr__(trainer, "opt", _Capturing(opt))
    try:
        return trainer._loss(Theta(), params, batch, adv, tgt)
    finally:
        object.__setattr__(trainer, "opt", opt)


class _Capturing:
    """Stands in for the trainer's optimiser so that `_loss` captures activations."""

    needs_activations = True

    def __init__(self, inner) -> None:
        self.inner = inner


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
