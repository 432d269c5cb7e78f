"""Seed streams: the PRNG key of every RL run, derived from its purpose.

Seeds that select a checkpoint are never seeds that meta-test it. Every RL run metarl starts
belongs to one named stream:

* `META_TEST` ("meta_test"): `metarl evaluate`, the scores a report shows.
* `SELECTION` ("selection"): scores that choose among candidates during meta-training: ES
  `--select best-eval` evaluations, distillation's checkpoint scores, symbolic distillation's
  per-round RL scores, and discover's candidate fitness.
* `ES_FITNESS` ("es_fitness"): ES population fitness; generation g draws runs
  `g * num_rollouts ...` of the stream, so a resumed run draws the same keys.

Scheme: run i of stream p under master seed s trains from the threefry2x32 key whose two
32-bit words are `(p << 24 | i, s)`. The map (p, i, s) -> key is injective on its domain
(p < 256, i < 2**24, 0 <= s < 2**32; anything else is refused), so two runs of different
streams, seeds or indices never share a key: a proof, not a collision probability. Stream ids
start at 1, so no stream key is a plain `jax.random.key(s)` (whose first word is 0) either.
`run_key_data` is the pure NumPy definition; `run_keys` wraps it as JAX keys.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.errors import ConfigError

META_TEST = "meta_test"
SELECTION = "selection"
ES_FITNESS = "es_fitness"

STREAM_IDS: dict[str, int] = {META_TEST: 1, SELECTION: 2, ES_FITNESS: 3}
"""Stream name -> id (the top byte of a key's first word). Never renumber: ids are results."""

MAX_SEED = 2**32 - 1
MAX_RUNS = 2**24  # run indices per stream and seed


def run_key_data(stream: str, seed: int, num_runs: int, start: int = 0) -> np.ndarray:
    """The raw key words of runs `start .. start + num_runs - 1` of `stream` under `seed`.

    Returns:
        uint32 array [num_runs, 2].

    Raises:
        ConfigError: an unknown stream, a seed outside [0, 2**32), or a run index past 2**24.
    """
    if stream not in STREAM_IDS:
        raise ConfigError(f"unknown seed stream {stream!r}; one of {', '.join(STREAM_IDS)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"--seed must be an integer, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed must be between 0 and {MAX_SEED}, got {seed}")
    if num_runs < 0 or start < 0 or start + num_runs > MAX_RUNS:
        raise ConfigError(
            f"runs {start}..{start + num_runs - 1} of the {stream} stream are past its "
            f"{MAX_RUNS} runs per seed; use fewer runs or generations"
        )
    index = np.arange(start, start + num_runs, dtype=np.uint64)
    first = (np.uint64(STREAM_IDS[stream]) << np.uint64(24)) | index
    return np.stack([first, np.full_like(first, seed)], axis=1).astype(np.uint32)


def run_keys(stream: str, seed: int, num_runs: int, start: int = 0) -> Any:
    """JAX keys [num_runs] of runs `start ..` of `stream` under `seed` (see the module doc)."""
    data = jnp.asarray(run_key_data(stream, seed, num_runs, start))
    return jax.random.wrap_key_data(data, impl="threefry2x32")


def es_fitness_keys(seed: int, generation: int, num_rollouts: int) -> Any:
    """The ES population's shared run keys [num_rollouts] for generation `generation` (0-based)."""
    return run_keys(ES_FITNESS, seed, num_rollouts, start=generation * num_rollouts)


def record(stream: str, seed: int, num_runs: int) -> dict[str, Any]:
    """What a manifest or result records about the runs that scored it."""
    return {"seed": int(seed), "stream": stream, "num_runs": int(num_runs)}
