"""metarl's side of `purejaxrl_vs_metarl.py`; runs in metarl's venv.

`python run_metarl.py ENV_ID TIMESTEPS SEED REPEAT` builds the preset's PPO trainer (clip
objective, Adam) with the public `make_train(cfg, env) -> train(theta, key)`, times the whole
run in one `jit` with `_timing.py`, exactly as the PureJaxRL side is timed, and prints one JSON
line.
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
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jax
    from _timing import measure

    from metarl_cli import build_config, make_env, make_train
    from metarl_cli.rl.slots import empty_theta

    cfg = build_config(env_id, timesteps=timesteps)
    trainer = make_train(cfg, make_env(cfg))
    setup_s = time.perf_counter() - T_START
    out, timing = measure(trainer, (empty_theta(), jax.random.key(seed)), repeat)
    result = {"side": "metarl", "env_steps": cfg.env_steps, "setup_s": setup_s, **timing}
    result["final_return"] = float(out.final_return)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
