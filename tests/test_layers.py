"""The layering of docs/architecture.md, read from the source: imports point down, modules stay
small.

Every import counts, a function-level one included, so a lazy import cannot hide a dependency
that runs back up the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "metarl_cli"

# package (first path part below metarl_cli/, or a top-level module) -> packages it must never
# import.
FORBIDDEN = {
    "config": {"rl", "learned", "meta", "analysis", "evaluation", "cli", "artefacts"},
    "envs": {"rl", "learned", "meta", "analysis", "evaluation", "cli"},
    "artefacts": {"rl", "learned", "meta", "analysis", "evaluation", "cli", "envs"},
    "results": {"rl", "learned", "meta", "analysis", "evaluation", "cli"},
    "rl": {"learned", "meta", "analysis", "evaluation", "cli"},
    "learned": {"meta", "analysis", "evaluation", "cli"},
    "analysis": {"meta", "evaluation", "cli"},
    "evaluation": {"meta", "cli"},
    "meta": {"cli"},
    "distributed": {"rl", "learned", "meta", "analysis", "evaluation", "cli", "envs", "artefacts"},
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_parts(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "metarl_cli":
                names = [f"metarl_cli.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "metarl_cli" and len(parts) > 1:
                out.add(parts[1])
    return out


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path):
    forbidden = FORBIDDEN.get(_part(path), set())
    wrong = _imported_parts(ast.parse(path.read_text())) & forbidden
    assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}, a layer above it"


def test_only_the_entry_point_imports_the_cli():
    importers = [
        str(p.relative_to(PACKAGE))
        for p in _modules()
        if _part(p) != "cli" and "cli" in _imported_parts(ast.parse(p.read_text()))
    ]
    assert importers == ["__main__.py"]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    rel = str(path.relative_to(PACKAGE))
    source = path.read_text()
    assert len(source.splitlines()) <= 400, f"{rel} has over 400 lines: split it"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 80
    ]
    assert not long, f"{rel}: functions over 80 lines: {', '.join(long)}"
