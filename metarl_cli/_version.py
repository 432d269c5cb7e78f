"""Package version (kept in a module of its own so `metarl --version` imports nothing heavy),
and the installed versions of the numerical stack that artefacts and result files record."""

from __future__ import annotations

from importlib import metadata

__version__ = "0.1.0"

_VERSION_PACKAGES = ("metarl", "jax", "jaxlib", "flax", "optax", "gymnax", "brax", "craftax")


def package_versions() -> dict[str, str]:
    """Installed versions of metarl and its numerical stack (absent packages are left out)."""
    out = {}
    for name in _VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
