"""Test setup: two host devices (sharding is tested on CPU) and the persistent compile cache."""

from __future__ import annotations

import os
from pathlib import Path

# Must happen before anything imports JAX.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault(
    "METARL_CACHE_DIR", str(Path(os.environ.get("METARL_TEST_CACHE", "~/.cache/metarl/jax-tests")))
)

import pytest

# Released OPEN checkpoints and oracle fixtures (tests/data/README.md says where they come from).
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache():
    from metarl_cli.rl.parallel import enable_compilation_cache

    return enable_compilation_cache()


def tiny_config(env_id: str, **overrides):
    """The preset shrunk to a few small updates (for end-to-end tests)."""
    from metarl_cli.config import build_config

    small = dict(num_envs=4, num_steps=8, num_minibatches=2, update_epochs=1, curve_points=4)
    small.update(overrides)
    return build_config(
        env_id, timesteps=small["num_envs"] * small["num_steps"] * 2, overrides=small
    )


def export_code(algorithm, source: str):
    """A code kernel exported in this process, for tests of our own trusted kernels (the
    paper's warm starts): `metarl import code` and `discover` export in the sandbox child,
    which tests/test_untrusted_code.py exercises."""
    from metarl_cli.learned.exported import ExportedKernel, export_function
    from metarl_cli.learned.source_check import load_function

    fn = load_function(source, algorithm.code_parameters, trusted=True)
    modules = export_function(fn, algorithm.code_signature)
    return ExportedKernel.from_bytes(
        modules["primal"], modules.get("vjp"), algorithm.code_signature
    )
