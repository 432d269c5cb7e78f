"""The regression itself: jitted Adam steps on fresh synthetic batches, and the held-out loss.

Step s of a learning rate's run draws its batch from `fold_in(data_key, s)`: the data never
repeats within a run (the original reset its data key every epoch), every learning rate of the
sweep sees the same batches (a fair comparison), and a resumed run draws exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metarl_cli.meta.distil.problems import Problem


def make_optimiser(total_steps: int, end_factor: float = 0.0) -> optax.GradientTransformation:
    """Adam with a step factor annealed linearly from 1 to `end_factor` over `total_steps`;
    `Fitter.run` multiplies by the learning rate, a traced argument. With `end_factor =
    lr_end / lr` the learning rate decays linearly from `lr` to `lr_end`, as in the original
    scripts (`linear_schedule(lr, lr_stop)`)."""
    return optax.chain(
        optax.scale_by_adam(),
        optax.scale_by_schedule(optax.linear_schedule(1.0, end_factor, max(total_steps, 1))),
    )


class HeldOut(NamedTuple):
    """The held-out set: inputs, the teacher's outputs, the reference's outputs."""

    batch: dict
    target: jax.Array
    reference: jax.Array


@dataclass(frozen=True)
class Fitter:
    """Adam regression of `student_architecture`'s outputs on the teacher's.

    Args:
        problem: what is compared (see `problems.py`).
        teacher_architecture, student_architecture: the two networks' sizes.
        batch_size: synthetic points (or sequences) per step.
    """

    problem: Problem
    teacher_architecture: tuple[tuple[str, int], ...]
    student_architecture: tuple[tuple[str, int], ...]
    batch_size: int

    def teacher_outputs(self, teacher: Any, batch: dict) -> jax.Array:
        return self.problem.outputs(teacher, dict(self.teacher_architecture), batch)

    def student_outputs(self, params: Any, batch: dict) -> jax.Array:
        return self.problem.outputs(params, dict(self.student_architecture), batch)

    def loss(self, params: Any, teacher: Any, batch: dict) -> jax.Array:
        target = jax.lax.stop_gradient(self.teacher_outputs(teacher, batch))
        return jnp.mean((self.student_outputs(params, batch) - target) ** 2)

    @partial(jax.jit, static_argnums=(0, 1, 8))
    def run(self, optimiser, lr, params, opt_state, teacher, data_key, start, num_steps: int):
        """`num_steps` Adam steps of size `lr` (times the annealing factor) from global step
        `start`; returns (params, opt_state, mean training loss)."""

        def one(carry, step):
            params, opt_state = carry
            batch = self.problem.sample(jax.random.fold_in(data_key, step), self.batch_size)
            loss, grads = jax.value_and_grad(self.loss)(params, teacher, batch)
            updates, opt_state = optimiser.update(grads, opt_state, params)
            updates = jax.tree.map(lambda u: -lr * u, updates)
            return (optax.apply_updates(params, updates), opt_state), loss

        steps = start + jnp.arange(num_steps)
        (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), steps)
        return params, opt_state, jnp.mean(losses)

    @partial(jax.jit, static_argnums=0)
    def test(
        self, params: Any, batch: dict, target: jax.Array, reference: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """(MSE, relative L2 error) on the held-out set; the relative error is
        `||student - teacher|| / ||teacher - reference||` (`reference`: see
        `Problem.reference`; zeros for most problems)."""
        diff = self.student_outputs(params, batch) - target
        mse = jnp.mean(diff**2)
        scale = jnp.sum((target - reference) ** 2)
        rel = jnp.sqrt(jnp.sum(diff**2) / jnp.maximum(scale, 1e-30))
        return mse, rel

    def held_out(self, teacher: Any, key: jax.Array, n: int) -> HeldOut:
        """The fixed held-out set with the teacher's outputs and the reference's."""
        batch = self.problem.test_batch(key, n)
        target = self.teacher_outputs(teacher, batch)
        reference = self.problem.reference(batch)
        return HeldOut(batch, target, jnp.zeros_like(target) if reference is None else reference)


def run_epoch(
    fitter: Fitter,
    optimiser: optax.GradientTransformation,
    lr: float,
    params: Any,
    opt_state: Any,
    teacher: Any,
    data_key: jax.Array,
    start: int,
    iters: int,
    chunk: int = 100,
    on_chunk: Any = None,
) -> tuple[Any, Any, float]:
    """`iters` steps from global step `start` in compiled chunks of at most `chunk` steps
    (`on_chunk(steps_done)` after each); returns (params, opt_state, mean training loss)."""
    done, total = 0, 0.0
    while done < iters:
        n = min(chunk, iters - done)
        step0 = jnp.int32(start + done)
        params, opt_state, loss = fitter.run(
            optimiser, jnp.float32(lr), params, opt_state, teacher, data_key, step0, n
        )
        total += float(loss) * n
        done += n
        if on_chunk is not None:
            on_chunk(done)
    return params, opt_state, total / iters
