"""LPG meta-gradient smoke run: meta-loss and agent return over a short run, and the in-
distribution return of fresh agents trained by the initial and by the final LPG.

    .venv/bin/python tests/benchmarks/metagrad_smoke.py [--steps 40] [--agents 8] [--gru 32]
        [--env gridworld/sparse] [--lifetime 20] [--out /tmp/lpg-smoke]

Prints one JSON object (figures for docs/lpg.md and docs/benchmarks.md): throughput
(agent-updates/s, env steps/s, seconds per meta-step), the first and last meta-losses and agent
returns (means over the first and last fifth of the steps), and the evaluation returns.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--agents", type=int, default=8)
    p.add_argument("--gru", type=int, default=32)
    p.add_argument("--env", default="gridworld/sparse")
    p.add_argument("--lifetime", type=int, default=20)
    p.add_argument("--eval-runs", type=int, default=16)
    p.add_argument("--preset", default="paper")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", default="/tmp/lpg-smoke")
    a = p.parse_args()

    import jax
    import numpy as np

    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.meta.metagrad.config import MetagradConfig
    from metarl_cli.meta.metagrad.train import plan_metagrad, train_metagrad
    from metarl_cli.rl.lpg_train import LPGTrainer
    from metarl_cli.rl.parallel import ShardedRunner, enable_compilation_cache, make_mesh
    from metarl_cli.seeds import SELECTION, run_keys

    enable_compilation_cache()
    alg = get_algorithm("lpg")
    arch = alg.architecture_for(a.gru)
    cfg = MetagradConfig(
        algo=alg.name, envs=[a.env], architecture=arch, num_agents=a.agents,
        meta_steps=a.steps, num_mini_batches=min(a.agents, 4), lifetime=a.lifetime,
        agent_preset=a.preset, save_every_k=a.steps, eval_runs=0, lr=a.lr,
    )  # fmt: skip
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    plan = plan_metagrad(
        cfg, out / "lpg.safetensors", run_dir=out / "run", resume=False, force=True
    )
    records: list[dict] = []
    t0 = time.perf_counter()
    _, result = train_metagrad(plan, on_step=records.append)
    wall = time.perf_counter() - t0

    trainer = LPGTrainer(plan.train_config, _env(plan), alg.kernel(None, arch), plan.agent)
    runner = ShardedRunner(trainer, make_mesh(a.eval_runs))
    keys = run_keys(SELECTION, 0, a.eval_runs)
    start = alg.init(jax.random.fold_in(jax.random.key(cfg.seed), 2), **arch)

    def mean_return(theta):
        o, _ = runner(theta, keys)
        return float(np.nanmean(o.final_return)), float(np.nanmean(o.curve[:, -3:]))

    fifth = max(1, a.steps // 5)
    later = records[fifth:]
    summary = {
        "env": a.env, "agents": a.agents, "gru": a.gru, "steps": a.steps,
        "lifetime": a.lifetime, "preset": a.preset, "lr": a.lr,
        "wall_s": round(wall, 1),
        "s_per_step": round(float(np.median([r["step_s"] for r in later or records])), 3),
        "agent_updates_per_s": round(
            float(np.median([r["agent_updates_per_s"] for r in later or records])), 1
        ),
        "env_steps_per_s": round(
            float(np.median([r["env_steps_per_s"] for r in later or records])), 0
        ),
        "meta_loss_first": float(np.mean([r["meta_loss"] for r in records[:fifth]])),
        "meta_loss_last": float(np.mean([r["meta_loss"] for r in records[-fifth:]])),
        "agent_return_first": float(np.nanmean([r["agent_return"] for r in records[:fifth]])),
        "agent_return_last": float(np.nanmean([r["agent_return"] for r in records[-fifth:]])),
        "eval_initial_lpg": mean_return(start),
        "eval_final_lpg": mean_return(result.theta),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }  # fmt: skip
    json.dump(summary, sys.stdout, indent=1)
    print()


def _env(plan):
    from metarl_cli.envs import make_env

    return make_env(plan.train_config)


if __name__ == "__main__":
    main()
