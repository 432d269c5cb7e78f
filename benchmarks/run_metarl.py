"""metarl's side of `purejaxrl_vs_metarl.py`; runs in metarl's venv.

`python run_metarl.py ENV_ID TIMESTEPS SEED REPEAT [SEEDS]` builds the preset's PPO trainer
(clip objective, Adam) with the public `make_train(cfg, env) -> train(theta, key)`, times the
whole run in one `jit` with `_timing.py`, exactly as the PureJaxRL side is timed, and prints one
JSON line. With SEEDS > 1 it exposes every core as a device and times the program `metarl
evaluate` runs: `ShardedRunner`'s sharded run over the seeds, initialisation included.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

T_START = time.perf_counter()


def main() -> None:
    env_id, timesteps = sys.argv[1], sys.argv[2]
    seed, repeat = int(sys.argv[3]), int(sys.argv[4])
    seeds = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from metarl_cli.rl import parallel

    if seeds > 1:
        parallel.expose_cpu_cores()
    import jax
    from _timing import measure

    from metarl_cli import build_config, make_env, make_train
    from metarl_cli.rl.slots import Theta

    cfg = build_config(env_id, timesteps=timesteps)
    trainer = make_train(cfg, make_env(cfg))
    if seeds == 1:
        train, args = trainer, (Theta(), jax.random.key(seed))
    else:
        runner = parallel.ShardedRunner(trainer)
        program = runner._program(runner.mesh_for(seeds), False)
        init = runner._init

        def train(theta, keys):
            return program(theta, init(theta, keys))

        args = (Theta(), jax.random.split(jax.random.key(seed), seeds))
    setup_s = time.perf_counter() - T_START
    out, timing = measure(train, args, repeat)
    steps = cfg.env_steps * seeds
    result = {"side": "metarl", "env_steps": steps, "setup_s": setup_s, **timing}
    result["final_return"] = float(out.final_return.mean())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
