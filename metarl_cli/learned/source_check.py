"""In-process source check of `code` kernels: an AST check, then a restricted namespace.

This is not a sandbox: it confines nothing. Code kernels come from people and from LLMs
(`metarl discover`), so their source is checked before any of it runs; untrusted source is only
*run* in the confined child (`meta/llm/sandbox.py`), which exports it as StableHLO
(`learned/exported.py`). The source must be a module of one top-level function definition
(docstrings, comments and imports of allowed modules around it are fine). Inside, only these
names reach the outside world:

* modules `jax` (and its submodules, e.g. `jax.numpy`, `jax.nn`, `jax.lax`), `math`, `numpy`;
  pre-bound as `jax`, `jnp`, `nn` (= `jax.nn`, so Supplement D's `nn.relu` works), `lax`,
  `math`, `np`;
* safe builtins (`abs`, `min`, `max`, `range`, `len`, `float`, `int`, `sum`, `zip`, ...).

Rejected, with the line number: imports of anything else, `from x import *`, names or
attributes with a leading/trailing double underscore, `open`/`exec`/`eval`/`compile`/
`globals`/`getattr`/... , `global`/`nonlocal`, `async`, `yield`, `lambda` is allowed. The
check is the first line of defence; evaluation then runs the compiled function under `jit`,
which cannot perform I/O, and the CLI runs everything with a wall-clock limit.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.errors import KernelError

ALLOWED_MODULES = ("jax", "math", "numpy")
_SAFE_BUILTINS = [
    "abs",
    "all",
    "any",
    "bool",
    "dict",
    "divmod",
    "enumerate",
    "float",
    "int",
    "isinstance",
    "len",
    "list",
    "max",
    "min",
    "pow",
    "range",
    "reversed",
    "round",
    "sorted",
    "sum",
    "tuple",
    "zip",
    "True",
    "False",
    "None",
    "print",
    "ValueError",
]
_FORBIDDEN_NAMES = frozenset(
    [
        "open",
        "exec",
        "eval",
        "compile",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "__import__",
        "input",
        "breakpoint",
        "help",
        "exit",
        "quit",
        "memoryview",
        "type",
        "object",
        "super",
        "classmethod",
        "staticmethod",
        "property",
        "os",
        "sys",
        "subprocess",
        "socket",
        "shutil",
        "pathlib",
        "importlib",
        "builtins",
        "ctypes",
        "signal",
        "threading",
        "multiprocessing",
        "pickle",
        "marshal",
        "io",
        "tempfile",
        "posix",
        "resource",
        "mmap",
        "fcntl",
        "urllib",
        "http",
        "dir",
    ]
)


# Attributes of the allowed packages that reach files, native code or host callbacks. The
# child is confined and kernels leave it as verified StableHLO only, so this list is a first
# line of defence and a clear message, not the guarantee.
_FORBIDDEN_ATTRIBUTES = frozenset(
    [
        "ctypeslib", "f2py", "distutils", "testing", "load_library", "DataSource",
        "fromfile", "tofile", "lib", "load", "loadtxt", "genfromtxt", "save", "savez",
        "savez_compressed", "savetxt", "memmap", "fromregex", "system",
        "callback", "pure_callback", "io_callback", "host_callback", "debug", "ffi",
        "experimental", "extend", "tools", "profiler", "distributed", "config",
    ]
)  # fmt: skip


def _allowed_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] in ALLOWED_MODULES and not any(p.startswith("_") for p in parts)


def check_source(source: str) -> ast.FunctionDef:
    """Parses and checks `source`; returns its one top-level function definition.

    Raises:
        KernelError: syntax errors and every forbidden construct, with its line number.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise KernelError(f"code kernel: syntax error on line {e.lineno}: {e.msg}") from None
    functions = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions.append(node)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or a bare string
        elif not isinstance(node, ast.Import | ast.ImportFrom):
            raise KernelError(
                f"code kernel: line {node.lineno}: only imports and one function definition "
                f"are allowed at the top level, found {type(node).__name__}"
            )
    if len(functions) != 1:
        raise KernelError(
            f"code kernel: expected exactly one top-level function, found {len(functions)}"
        )
    for sub in ast.walk(tree):
        _check_node(sub)
    return functions[0]


def _check_node(node: ast.AST) -> None:
    line = getattr(node, "lineno", "?")

    def bad(what: str) -> KernelError:
        return KernelError(f"code kernel: line {line}: {what} is not allowed")

    if isinstance(node, ast.Import):
        for alias in node.names:
            if not _allowed_module(alias.name) or _FORBIDDEN_ATTRIBUTES.intersection(
                alias.name.split(".")
            ):
                raise bad(f"import of {alias.name!r} (allowed: {', '.join(ALLOWED_MODULES)})")
    elif isinstance(node, ast.ImportFrom):
        module_parts = (node.module or "").split(".")
        if (
            node.level
            or not node.module
            or not _allowed_module(node.module)
            or _FORBIDDEN_ATTRIBUTES.intersection(module_parts)
        ):
            raise bad(f"import from {node.module or '.'!r} (allowed: {', '.join(ALLOWED_MODULES)})")
        if any(a.name == "*" for a in node.names):
            raise bad("'from ... import *'")
        for alias in node.names:
            for name in (alias.name, alias.asname):
                forbidden = name in _FORBIDDEN_NAMES or name in _FORBIDDEN_ATTRIBUTES
                if name and (name.startswith("_") or forbidden):
                    raise bad(f"importing {name!r} from {node.module!r}")
    elif isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise bad(f"private or dunder attribute {node.attr!r}")
        if node.attr in _FORBIDDEN_ATTRIBUTES:
            raise bad(f"attribute {node.attr!r} (files, native code and callbacks)")
    elif isinstance(node, ast.Name):
        if node.id.startswith("__") or node.id in _FORBIDDEN_NAMES:
            raise bad(f"name {node.id!r}")
    elif isinstance(
        node,
        ast.Global | ast.Nonlocal | ast.AsyncFunctionDef | ast.Await | ast.Yield | ast.YieldFrom
        | ast.ClassDef | ast.With | ast.AsyncWith | ast.Try | ast.Raise | ast.Delete,
    ):  # fmt: skip
        raise bad(type(node).__name__.lower())
    elif isinstance(node, ast.FunctionDef) and node.decorator_list:
        raise bad("a decorator")
    elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute):
                    raise bad(f"assigning to an attribute ({ast.unparse(sub)})")


def _namespace() -> dict[str, Any]:
    safe = {name: getattr(builtins, name) for name in _SAFE_BUILTINS if hasattr(builtins, name)}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        parts = name.split(".")
        if level or not _allowed_module(name) or _FORBIDDEN_ATTRIBUTES.intersection(parts):
            raise KernelError(f"code kernel: import of {name!r} is not allowed")
        module = __import__(name, globals, locals, fromlist, level)
        for attr in fromlist or ():
            value = getattr(module, attr, None)
            owner = getattr(value, "__module__", None) or getattr(value, "__name__", None)
            foreign = not isinstance(owner, str) or owner.split(".")[0] not in ALLOWED_MODULES
            if (inspect.ismodule(value) or callable(value)) and foreign:
                raise KernelError(
                    f"code kernel: {attr!r} from {name!r} comes from {owner!r}, which is "
                    "not allowed"
                )
        return module

    safe["__import__"] = guarded_import
    return {
        "__builtins__": safe,
        "__name__": "metarl_kernel",
        "jax": jax,
        "jnp": jnp,
        "nn": jax.nn,
        "lax": jax.lax,
        "math": math,
        "np": np,
    }


_EXECUTION = {"allowed": False}


def allow_execution() -> None:
    """Lets `load_function` execute code in this process: called only by the sandbox child
    (`meta/llm/sandbox_runner.py`) once it is confined. Everywhere else code kernels run from
    their exported StableHLO, so executing one is a bug that this refusal makes loud."""
    _EXECUTION["allowed"] = True


def load_function(
    source: str, parameters: Sequence[str] | None = None, *, trusted: bool = False
) -> Callable[..., Any]:
    """Checks `source`, executes it in a restricted namespace and returns its function.

    Args:
        source: Python source defining one function.
        parameters: the parameter names the slot will pass, in order; the function's positional
            parameters must be exactly these (a missing or extra one is an error).
        trusted: the source is this package's or a test's own (never a user's or a model's):
            it may run outside the sandbox child.

    Raises:
        KernelError: a check fails, or execution is not allowed in this process.
    """
    fn_node = check_source(source)
    if not (trusted or _EXECUTION["allowed"]):
        raise KernelError(
            "code kernel: Python source is executed only in the sandbox child; export it with "
            "`metarl import code` and run the artefact"
        )
    namespace = _namespace()
    try:
        exec(compile(ast.parse(source), "<kernel>", "exec"), namespace)
    except KernelError:
        raise
    except Exception as e:
        raise KernelError(f"code kernel: executing the definition failed: {e}") from None
    fn = namespace[fn_node.name]
    if parameters is not None:
        got = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if got != list(parameters):
            raise KernelError(
                f"code kernel {fn_node.name!r}: parameters ({', '.join(got)}) do not match the "
                f"slot's interface ({', '.join(parameters)})"
            )
    return fn


def check_parameters(source: str, parameters: Sequence[str]) -> ast.FunctionDef:
    """`check_source`, plus the function's positional parameters against the slot's, read
    from the tree (nothing runs)."""
    fn = check_source(source)
    args = fn.args
    got = [a.arg for a in (*args.posonlyargs, *args.args)]
    if got != list(parameters):
        raise KernelError(
            f"code kernel {fn.name!r}: parameters ({', '.join(got)}) do not match the "
            f"slot's interface ({', '.join(parameters)})"
        )
    return fn


def function_name(source: str) -> str:
    """The name of the one function `source` defines (checked)."""
    return check_source(source).name
