"""PureJaxRL's side of `benchmarks/purejaxrl_vs_metarl.py`; runs in PureJaxRL's own venv.

`python run_ppo.py CONFIG_JSON SEED REPEAT [SEEDS]` builds the vendored `ppo.py`'s
`make_train(config)` (the config dict is PureJaxRL's own, filled in by the driver from metarl's
preset), times it with `../_timing.py` and prints one JSON line. Several seeds run as PureJaxRL's
README does: `jax.jit(jax.vmap(train))(keys)`, on one device. Imports nothing from metarl.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
HERE = Path(__file__).resolve().parent


def final_return(metrics: dict, window_frac: float = 0.05) -> float:
    """Mean return of episodes finished in the last `window_frac` of updates (metarl's rule)."""
    import numpy as np

    returns = np.asarray(metrics["returned_episode_returns"])  # [(seeds,) updates, steps, envs]
    done = np.asarray(metrics["returned_episode"])
    if returns.ndim == 4:  # several seeds: their episodes pooled
        returns, done = np.concatenate(list(returns), 1), np.concatenate(list(done), 1)
    window = max(1, round(window_frac * returns.shape[0]))
    finished = returns[-window:][done[-window:]]
    return float(finished.mean()) if finished.size else float("nan")


def main() -> None:
    config, seed, repeat = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    seeds = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    import jax
    import ppo  # the vendored PureJaxRL file
    from _timing import measure

    train = ppo.make_train(config)  # fills in NUM_UPDATES (PureJaxRL mutates its config)
    key = jax.random.PRNGKey(seed)
    args = (key,) if seeds == 1 else (jax.random.split(key, seeds),)
    train = train if seeds == 1 else jax.vmap(train)
    setup_s = time.perf_counter() - T_START
    out, timing = measure(train, args, repeat)
    steps = config["NUM_UPDATES"] * config["NUM_STEPS"] * config["NUM_ENVS"] * seeds
    result = {"side": "purejaxrl", "env_steps": steps, "setup_s": setup_s, **timing}
    result["final_return"] = final_return(out["metrics"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
