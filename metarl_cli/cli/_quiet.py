"""Third-party log noise off the terminal unless `--verbose`.

XLA writes C++ log lines to stderr (warnings, and "slow operation alarms" while it constant-folds
or compiles, which are logged at ERROR level but are not errors: a failure of the run is raised
as an exception and reported as one). JAX, Flax, Brax and their dependencies emit
FutureWarnings and DeprecationWarnings meant for their developers. A `metarl` command without
`--verbose` hides both; `--verbose` (or a TF_CPP_MIN_LOG_LEVEL set by the user) shows them.
Warnings raised by metarl itself are always shown.
"""

from __future__ import annotations

import os
import warnings

_THIRD_PARTY = r"(jax|jaxlib|flax|optax|chex|brax|mujoco|gymnax|craftax|evosax|orbax|absl)(\.|$)"


def quiet_third_party(verbose: bool, env: dict[str, str] | None = None) -> None:
    """Must run before JAX is imported (XLA reads TF_CPP_MIN_LOG_LEVEL when it loads)."""
    if verbose:
        return
    target = os.environ if env is None else env
    target.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # XLA's C++ logging: fatal lines only
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module=r"metarl_cli(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, module=_THIRD_PARTY)
