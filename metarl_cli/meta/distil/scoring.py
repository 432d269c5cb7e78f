"""Scoring a student checkpoint by RL return, for automatic checkpoint selection.

The paper "evaluate[s] the RL performance of the student on the original meta-training
environments periodically, and select[s] the best-performing checkpoint" (§4.2). A score is
the mean final return over `num_runs` PPO seeds per env, the same runs and the same mean as
`metarl evaluate` on the selection seed stream (`evaluate(..., stream="selection")`, see
`seeds.py`: never the seeds `metarl evaluate` meta-tests with; the student in the algorithm's
slot, runs that finished no episode left out); with several envs, each env's mean is divided
by its PPO return normaliser and the results are averaged (`meta/normalisers.py`). A run
whose losses diverged, or an env where no run finished an episode, makes the checkpoint's
score NaN (never selected).

`RLScorer` builds and compiles each env's trainer once per architecture and reuses the
compiled program for every checkpoint (calling `evaluate()` per checkpoint would retrace the
whole PPO program each time). Any callable with `RLScorer.__call__`'s signature can replace it
(the `scorer` argument of `distil`): that is the hook for other selection criteria, and how
the tests drive a controlled selection.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from metarl_cli.config import TrainConfig
from metarl_cli.seeds import SELECTION, run_keys


class Scorer(Protocol):
    """Scores a student (higher is better)."""

    def __call__(self, theta: Any, architecture: dict[str, int]) -> dict[str, Any]:
        """Returns {"score": float (NaN: failed), "per_env": {env_id: mean final return}}."""
        ...


def combine(per_env: dict[str, float], normalisers: dict[str, float | None]) -> float:
    """One score from per-env mean returns: raw for one env, else the mean normalised return."""
    from metarl_cli.meta.normalisers import divisors

    values = np.array(list(per_env.values()), dtype=np.float64)
    if len(per_env) > 1:
        by = divisors({e: normalisers.get(e) for e in per_env})
        values = values / np.array([by[e] for e in per_env])
    return float(values.mean()) if np.all(np.isfinite(values)) else float("nan")


class RLScorer:
    """Mean final PPO return of a theta on `configs`' envs (module doc).

    Args:
        algorithm: the learned algorithm (its slot receives theta).
        configs: one `TrainConfig` per env.
        num_runs: PPO seeds per env.
        seed: master seed of the runs (their keys: the `selection` stream).
    """

    def __init__(self, algorithm: Any, configs: list[TrainConfig], num_runs: int, seed: int):
        self.algorithm, self.configs, self.num_runs, self.seed = algorithm, configs, num_runs, seed
        self.normalisers = {c.env_id: c.ppo_normaliser for c in configs}
        self._runners: dict[tuple, list[Any]] = {}
        self.steps_per_score = num_runs * sum(c.env_steps for c in configs)

    def _runners_for(self, architecture: dict[str, int]) -> list[Any]:
        key = tuple(sorted(architecture.items()))
        if key not in self._runners:
            from metarl_cli.envs import make_env
            from metarl_cli.learned.trainers import make_trainer
            from metarl_cli.rl.parallel import make_mesh
            from metarl_cli.rl.progress import ProgressRunner

            def trainer(c: TrainConfig) -> Any:  # PPO with slots, or an update rule's own
                return make_trainer(self.algorithm, c, make_env(c), architecture)

            self._runners[key] = [
                ProgressRunner(trainer(c), make_mesh(self.num_runs)) for c in self.configs
            ]
        return self._runners[key]

    def __call__(self, theta: Any, architecture: dict[str, int]) -> dict[str, Any]:
        import jax
        import jax.numpy as jnp

        from metarl_cli.rl.slots import Theta

        full = Theta.for_slot(self.algorithm.slot, jax.tree.map(jnp.asarray, theta))
        keys = run_keys(SELECTION, self.seed, self.num_runs)
        per_env = {}
        for cfg, runner in zip(self.configs, self._runners_for(architecture), strict=True):
            out, _ = runner(full, keys)
            finals = np.asarray(out.final_return, np.float64)
            finished = finals[np.isfinite(finals)]
            diverged = not np.all(np.isfinite(np.asarray(out.losses)))
            ok = finished.size > 0 and not diverged
            per_env[cfg.env_id] = float(finished.mean()) if ok else float("nan")
        return {"score": combine(per_env, self.normalisers), "per_env": per_env}
