"""Lazy public names of a package (PEP 562), so that importing it imports nothing heavy (JAX)
until a name is used: `__getattr__ = lazy_exports(__name__, {name: home module, ...})`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that returns `name` from the module `homes[name]`, imported on
    first use.

    Args:
        package: the package's `__name__` (for the error of an unknown name).
        homes: public name -> dotted path of the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
