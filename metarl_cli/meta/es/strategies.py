"""evosax strategies configured as the paper configures OpenAI-ES, and their schedules.

The paper (Goldie et al., 2025, arXiv:2507.17668, Table 8) uses OpenAI-ES (Salimans et al.,
2017, arXiv:1703.03864) from evosax 0.1: antithetic sampling, centred-rank fitness shaping,
Adam (b1 0.99, b2 0.999, eps 1e-8) on the mean, and after every generation
`lr <- max(lr * lr_decay, 1e-3)` and `sigma <- max(sigma * sigma_decay, 1e-2)`. evosax 0.3
moved the lr into an optax optimizer and sigma into `std_schedule`; `std_schedule(g)` is the
sigma set by the g-th `tell`, so it is `sigma0 * decay^(g+1)` and the initial sigma is set
explicitly. Supplement F's gridworld runs shape with the identity instead of centred ranks
(`--fitness-shaping identity`). The other strategies are offered for experiments; only the lr
settings apply to PGPE, and only `--noise-level` to SNES and Sep-CMA-ES.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from metarl_cli.meta.es.config import ESConfig


def lr_schedule(cfg: ESConfig):
    """Adam step size of the mean at update `count` (0 for the first generation)."""

    def schedule(count):
        return jnp.maximum(cfg.lr * cfg.lr_decay ** jnp.asarray(count, jnp.float32), cfg.lr_floor)

    return schedule


def sigma_schedule(cfg: ESConfig):
    """Sigma after the `count`-th tell (so generation g samples with `schedule(g - 1)`)."""

    def schedule(count):
        power = jnp.asarray(count, jnp.float32) + 1.0
        return jnp.maximum(cfg.noise_level * cfg.sigma_decay**power, cfg.sigma_floor)

    return schedule


def host_lr(cfg: ESConfig, generation: int) -> float:
    """The lr generation `generation` uses (for display; float64 on the host)."""
    return max(cfg.lr * cfg.lr_decay**generation, cfg.lr_floor)


def _adam(cfg: ESConfig) -> optax.GradientTransformation:
    return optax.adam(learning_rate=lr_schedule(cfg), b1=0.99, b2=0.999, eps=1e-8)


def make_strategy(cfg: ESConfig, template: Any) -> tuple[Any, Any]:
    """Returns `(strategy, params)` for `cfg.strategy` over solutions shaped like `template`."""
    from evosax.algorithms import PGPE, SNES, Open_ES, Sep_CMA_ES

    if cfg.strategy == "open_es":
        from evosax.core.fitness_shaping import (
            centered_rank_fitness_shaping_fn,
            identity_fitness_shaping_fn,
        )

        es = Open_ES(
            cfg.popsize,
            template,
            use_antithetic_sampling=True,
            optimizer=_adam(cfg),
            std_schedule=sigma_schedule(cfg),
            fitness_shaping_fn=identity_fitness_shaping_fn
            if cfg.fitness_shaping == "identity"
            else centered_rank_fitness_shaping_fn,  # Supplement F's gridworld runs: identity
        )
        return es, es.default_params
    if cfg.strategy == "pgpe":
        es = PGPE(cfg.popsize, template, optimizer=_adam(cfg))
        return es, es.default_params.replace(std_init=cfg.noise_level)
    if cfg.strategy == "snes":
        es = SNES(cfg.popsize, template)
        return es, es.default_params.replace(std_init=jnp.float32(cfg.noise_level))
    if cfg.strategy == "sep_cma_es":
        es = Sep_CMA_ES(cfg.popsize, template)
        return es, es.default_params.replace(std_init=jnp.float32(cfg.noise_level))
    raise AssertionError(cfg.strategy)  # pragma: no cover - the config validates the name


def strong(tree: Any) -> Any:
    """The same values as concrete, strongly typed device arrays.

    jit caches on weak types, so a state that went through a checkpoint (numpy, strong) and
    one that did not (fresh `tell` output, partly weak) would compile different programs.
    Normalising after every step keeps resumed and uninterrupted runs on one program.
    """
    import jax

    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), tree)


def init_state(cfg: ESConfig, es: Any, params: Any, mean: Any, key: Any) -> Any:
    """The strategy's state with search mean `mean` (the algorithm's `initial_theta`; the
    paper's is all zeros) and sigma = noise level."""
    state = es.init(key, mean, params)
    if cfg.strategy == "open_es":
        state = state.replace(std=jnp.float32(cfg.noise_level))
    return strong(state)


def current_sigma(state: Any) -> float:
    """The mean search sigma of a state (a scalar for OpenAI-ES, per-dimension for others)."""
    return float(np.mean(np.asarray(state.std)))
