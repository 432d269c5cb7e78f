"""The one timing routine both sides of `purejaxrl_vs_metarl.py` use (it imports only JAX).

Each side runs in a fresh process with the persistent compilation cache pointed at a new, empty
directory (the driver sets JAX_COMPILATION_CACHE_DIR), so compile time is always cold and its
accounting is identical: the wall time of `jax.jit(train).lower(*args).compile()` over the whole
training run. Then one untimed warm-up call, then `repeat` timed calls, each ended by
`jax.block_until_ready`; the fastest timed call is the run time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def _cache_entries() -> int:
    where = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if not where or not Path(where).is_dir():
        return 0
    return sum(1 for p in Path(where).rglob("*") if p.is_file())


def measure(train: Any, args: tuple, repeat: int = 1) -> tuple[Any, dict[str, Any]]:
    """Compiles `train(*args)` in one `jit`, warms it up once, then times `repeat` calls.

    Returns:
        The last call's output and a dict of seconds (`compile_s`, `warmup_s`, `run_s` = the
        fastest timed call, `runs_s`) plus the cache's entry counts before and after compiling
        (the directory starts empty; entries before are the process's own small eager ops) and
        the JAX version and devices.
    """
    import jax

    before = _cache_entries()
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    warmup_s = time.perf_counter() - t0
    runs, out = [], None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    return out, {
        "compile_s": compile_s,
        "warmup_s": warmup_s,
        "run_s": min(runs),
        "runs_s": runs,
        "cache_entries_before": before,
        "cache_entries_after": _cache_entries(),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }
