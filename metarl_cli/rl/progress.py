"""Progress of a long run from the host, without callbacks inside the compiled program.

`ProgressRunner` is a `ShardedRunner` whose run is split into segments of updates on the host:
one compiled program runs updates [start, stop) of every run (`Trainer.run_range`, traced
bounds, so every segment reuses it), another turns the collected per-update metrics into the
run's output (`Trainer.finish`). After each segment the host reports the fraction done. The
arithmetic of every update is `run`'s; results are bit-identical to `ShardedRunner`'s (tested).

A segment costs a fixed time besides its updates (measured here: about 0.1 s of CPU per call
of a Breakout program whose update takes 0.7 s; work XLA hoists out of the loop is redone per
call). So segments are sized from two probes, of 1 and 2 updates, which give the time per
update `b` and the fixed cost `c`: then each segment lasts at least `segment_s` and its fixed
cost is at most `fixed_share` of it; a run whose rest would take under `short_s` finishes in
one segment. A few segments are queued ahead (JAX dispatches asynchronously), so a device
does not wait at a boundary for a slower one. `benchmarks/progress_overhead.py` measures the
cost against one program.

Segments also keep memory flat. While two XLA:CPU executions run at once (one program over
two host devices, or two single-device programs dispatched side by side), the process's
resident memory grows for as long as they run (jaxlib 0.10.2: about 3 MiB/s for Breakout PPO on
2 devices) and is given back only when the execution ends; one execution per segment bounds it
(measured: Breakout, 2 seeds on 2 devices, 3e6 steps: 935 -> 1,132 MiB and rising in one
program, flat at 969 MiB in segments; docs/benchmarks.md). So every long run goes through this
runner, with or without a progress bar (`on_progress=None`): `evaluate`, ES fitness,
distillation's selection. Without a bar, runs of under `min_updates` (128) updates stay one
program: the segment and finish programs cost more to compile than the one, which matters for
many short runs (the test suite, toy budgets) and not for memory.

Trainers without `run_range` (an update rule's own trainer) run as one program, as before.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from metarl_cli.rl.parallel import AXIS, ShardedRunner


class ProgressRunner(ShardedRunner):
    """`ShardedRunner` that runs in segments of updates and calls `on_progress(fraction)` (0..1
    of this call's work, if given) after each; `segment_s`, `fixed_share`, `short_s`: the
    segment sizing above. Without `on_progress`, a run of under `min_updates` updates goes as
    one program (what it can grow is bounded by its length; one program compiles faster)."""

    def __init__(
        self,
        trainer: Any,
        mesh: Any = None,
        chunk: int | None = None,
        *,
        on_progress: Callable[[float], None] | None = None,
        segment_s: float = 2.0,
        fixed_share: float = 0.01,
        short_s: float = 30.0,
        min_updates: int = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(trainer, mesh, chunk, **kwargs)
        self.on_progress, self.min_updates = on_progress, min_updates
        self.segment_s, self.fixed_share, self.short_s = segment_s, fixed_share, short_s
        self._groups, self._group = 1, 0

    def __call__(self, theta: Any, keys: Any, on_phase: Any = None, *, per_run: bool = False):
        n = keys.shape[0]
        self._groups, self._group = self.padded(n) // self.group_size(n), 0
        return super().__call__(theta, keys, on_phase, per_run=per_run)

    def _program(self, mesh: Any, per_run: bool) -> Any:
        if not hasattr(self.trainer, "run_range"):
            return super()._program(mesh, per_run)
        if self.on_progress is None and self.trainer.cfg.num_updates < self.min_updates:
            return super()._program(mesh, per_run)  # short, no bar: one program compiles less
        return _Segmented(self, mesh, per_run)

    def _segment_done(self, updates_done: int, num_updates: int) -> None:
        fraction = (self._group + updates_done / num_updates) / self._groups
        if self.on_progress is not None:
            self.on_progress(min(1.0, fraction))
        if updates_done == num_updates:
            self._group += 1

    def segment_size(self, t1: float, t2: float, remaining: int) -> int:
        """Updates per segment after probes of 1 and 2 updates that took `t1` and `t2` s."""
        if t2 > t1:  # t1 = c + b, t2 = c + 2b
            per_update, fixed = t2 - t1, max(2 * t1 - t2, 0.0)
        else:  # noisy probes (a loaded machine): assume no fixed cost
            per_update, fixed = t2 / 2, 0.0
        per_update = max(per_update, 1e-9)
        if remaining * per_update < self.short_s:
            return max(remaining, 1)
        size = max(self.segment_s / per_update, fixed / (self.fixed_share * per_update))
        return max(1, min(remaining, math.ceil(size)))


class _Segmented:
    """Stands in for the runner's jitted program: `.lower(θ, states).compile()` compiles the
    segment and finish programs; calling the result runs one group of runs, segment by segment."""

    def __init__(self, runner: ProgressRunner, mesh: Any, per_run: bool) -> None:
        import jax
        from jax.sharding import PartitionSpec as P

        self.runner, self.mesh = runner, mesh
        trainer, out, chunk = runner.trainer, runner._output, runner.chunk
        self.num_updates = trainer.cfg.num_updates

        def segment(theta, states, metrics, start, stop):
            def one(th, s, m):
                return trainer.run_range(th, s, m, start, stop)

            if chunk == 1:  # unbatched, one run after another, as the runner's program
                if per_run:
                    return jax.lax.map(lambda x: one(*x), (theta, states, metrics))
                return jax.lax.map(lambda x: one(theta, *x), (states, metrics))
            return jax.vmap(one, in_axes=(0 if per_run else None, 0, 0))(theta, states, metrics)

        def finish(metrics):
            def one(m):
                return out(trainer.finish(m))

            return jax.lax.map(one, metrics) if chunk == 1 else jax.vmap(one)(metrics)

        theta_spec = P(AXIS) if per_run else P()
        self.segment = jax.jit(
            jax.shard_map(
                segment,
                mesh=mesh,
                in_specs=(theta_spec, P(AXIS), P(AXIS), P(), P()),
                out_specs=(P(AXIS), P(AXIS)),
                check_vma=False,
            )
        )
        self.finish = jax.jit(
            jax.shard_map(
                finish, mesh=mesh, in_specs=(P(AXIS),), out_specs=P(AXIS), check_vma=False
            )
        )

    def lower(self, theta: Any, states: Any) -> _Segmented:
        self.abstract = (theta, states)
        return self

    def compile(self) -> _Compiled:
        import jax
        import numpy as np
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        theta, states = self.abstract
        group = jax.tree.leaves(states)[0].shape[0]
        sharded = NamedSharding(self.mesh, P(AXIS))
        metrics = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct((group, *x.shape), x.dtype, sharding=sharded),
            jax.eval_shape(self.runner.trainer.empty_metrics),
        )
        bound = jax.ShapeDtypeStruct((), np.int32)
        segment = self.segment.lower(theta, states, metrics, bound, bound).compile()
        finish = self.finish.lower(metrics).compile()
        return _Compiled(self, segment, finish, metrics)


class _Compiled:
    """One group of runs, segment by segment, reporting as each finishes: two probes (1 and 2
    updates), then segments of `ProgressRunner.segment_size`, up to `AHEAD` queued at once."""

    AHEAD = 3

    def __init__(self, program: _Segmented, segment: Any, finish: Any, metrics: Any) -> None:
        self.program, self.segment, self.finish, self.metrics = program, segment, finish, metrics

    def __call__(self, theta: Any, states: Any) -> Any:
        import jax
        import numpy as np

        runner, n = self.program.runner, self.program.num_updates
        metrics = jax.tree.map(
            lambda a: jax.device_put(np.zeros(a.shape, a.dtype), a.sharding), self.metrics
        )
        queued: deque[tuple[int, Any]] = deque()
        probes = [1, 2][: max(0, n - 1)]  # sizes of the first segments
        size: int | None = None if probes else n  # later segments' (None: not yet known)
        took: list[float] = []
        dispatched = finished = 0
        clock = time.perf_counter()
        while finished < n:
            ahead = self.AHEAD if size is not None else len(probes) + len(queued)
            if dispatched < n and len(queued) < ahead:
                step = probes.pop(0) if probes else (size or n - dispatched)
                stop = min(n, dispatched + step)
                bounds = np.int32(dispatched), np.int32(stop)
                states, metrics = self.segment(theta, states, metrics, *bounds)
                queued.append((stop, metrics))
                dispatched = stop
                continue
            stop, done_marker = queued.popleft()
            jax.block_until_ready(done_marker)
            now = time.perf_counter()
            took.append(now - clock)
            finished, clock = stop, now
            if size is None and not probes and not queued:
                t1, t2 = (took + took)[:2] if len(took) < 2 else took[:2]
                size = runner.segment_size(t1, t2, n - finished)
            runner._segment_done(finished, n)
        return self.finish(metrics)
