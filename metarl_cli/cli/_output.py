"""Shared rendering: rich console on stderr for progress, stdout for results and --json."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

out = Console()
err = Console(stderr=True)
if not out.is_terminal:  # piped or captured: rich would assume 80 columns and squeeze tables
    out.width = 120


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (nothing else is printed there with --json)."""
    print(json.dumps(data, indent=2, default=str))


def fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"
