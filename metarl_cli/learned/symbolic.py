"""Symbolic kernels: an expression (or a straight-line program) compiled through sympy to JAX.

The text is either one expression, `tanh(log_r) * A`, or a few assignments followed by the
result, as the paper prints its symbolic programs (Supplement C):

    log_r = log(r)
    term1 = min(0.15, r_minus_1 * -0.97)
    return max(term1 ** 2, -0.86)

An optional `def name(...):` header is ignored. Every assignment is substituted into the next
line, so the result is one sympy expression; unknown variables and unknown functions are
rejected by name. Functions: the usual elementwise ones (`exp log tanh sin cos sqrt abs sign
relu square neg`) and `min`/`max` of any number of arguments; `math.` and `jnp.` prefixes are
accepted and dropped. The compiled callable takes keyword arrays and broadcasts constants.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from metarl_cli.errors import KernelError

FUNCTIONS = [
    "exp",
    "log",
    "tanh",
    "sin",
    "cos",
    "sqrt",
    "abs",
    "sign",
    "relu",
    "square",
    "neg",
    "min",
    "max",
    "sigmoid",
    "cube",
    "inv",
]


def _sympy_functions() -> dict[str, Any]:
    import sympy as sp

    return {
        "exp": sp.exp,
        "log": sp.log,
        "tanh": sp.tanh,
        "sin": sp.sin,
        "cos": sp.cos,
        "sqrt": sp.sqrt,
        "abs": sp.Abs,
        "sign": sp.sign,
        "relu": lambda x: sp.Max(x, 0),
        "square": lambda x: x**2,
        "cube": lambda x: x**3,
        "neg": lambda x: -x,
        "inv": lambda x: 1 / x,
        "sigmoid": lambda x: 1 / (1 + sp.exp(-x)),
        "min": sp.Min,
        "max": sp.Max,
    }


@dataclass(frozen=True)
class SymbolicKernel:
    """A compiled symbolic expression.

    Attributes:
        text: the source as given.
        expression: the single simplified-free sympy expression, as a string.
        variables: the variables it uses (a subset of the allowed names, canonical spelling).
    """

    text: str
    expression: str
    variables: tuple[str, ...]

    def __call__(self, **inputs: Any) -> Any:
        fn = _lambdify(self.expression, self.variables)
        import jax.numpy as jnp

        args = [inputs[v] for v in self.variables]
        out = fn(*args)
        if args:
            shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in args))
            return jnp.broadcast_to(jnp.asarray(out, jnp.float32), shape)
        return jnp.asarray(out, jnp.float32)


@lru_cache(maxsize=256)
def _lambdify(expression: str, variables: tuple[str, ...]) -> Callable[..., Any]:
    import sympy as sp

    symbols = [sp.Symbol(v) for v in variables]
    expr = sp.sympify(expression, locals={v: s for v, s in zip(variables, symbols, strict=True)})
    return sp.lambdify(symbols, expr, modules="jax")


def _lines(text: str) -> list[str]:
    """The statements of `text` without a `def` header, comments or blank lines; lines inside
    open parentheses are joined."""
    text = text.replace("math.", "").replace("jnp.", "")
    text = re.sub(r"^\s*def\s+\w+\s*\(.*?\)\s*(->\s*[^:]+)?:", "", text, count=1, flags=re.S)
    body, current, depth = [], "", 0
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        current = f"{current} {line}".strip()
        depth += line.count("(") - line.count(")")
        if depth <= 0:
            body.append(current)
            current, depth = "", 0
    if current:
        body.append(current)
    return body


def compile_symbolic(
    text: str, variables: Mapping[str, str], aliases: Mapping[str, str] | None = None
) -> SymbolicKernel:
    """Compiles `text` over `variables` (name -> meaning); `aliases` maps other spellings.

    Raises:
        KernelError: empty text, a syntax error, an unknown variable or function, or a program
            that does not end in an expression.
    """
    import sympy as sp

    aliases = dict(aliases or {})
    lines = _lines(text)
    if not lines:
        raise KernelError("symbolic kernel: the expression is empty")
    functions = _sympy_functions()
    known = {name: sp.Symbol(name) for name in variables}
    known.update({alias: sp.Symbol(canon) for alias, canon in aliases.items()})
    local: dict[str, Any] = {}
    result = None
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        target, expr_text = None, line
        if line.startswith("return "):
            if not last:
                raise KernelError("symbolic kernel: 'return' must be the last statement")
            expr_text = line[len("return ") :]
        else:
            m = re.match(r"^([A-Za-z_]\w*)\s*=(?!=)\s*(.+)$", line)
            if m:
                target, expr_text = m.group(1), m.group(2)
        value = _parse(expr_text, known, local, functions)
        if target is not None:
            if target in functions:
                raise KernelError(f"symbolic kernel: cannot assign to {target!r}, a function")
            local[target] = value
            if last:
                result = value
        else:
            if not last:
                raise KernelError(
                    f"symbolic kernel: statement {i + 1} is a bare expression before the end"
                )
            result = value
    if result is None:
        raise KernelError("symbolic kernel: the program does not end in an expression")
    result = sp.sympify(result)
    if result.free_symbols - set(known.values()):
        names = sorted(str(s) for s in result.free_symbols - set(known.values()))
        raise KernelError(f"symbolic kernel: unknown variable {names[0]!r}")
    used = tuple(sorted(str(s) for s in result.free_symbols))
    expression = sp.srepr(result)
    _lambdify(expression, used)  # fail now, not inside jit
    return SymbolicKernel(text=text, expression=expression, variables=used)


def _parse(expr_text: str, known, local, functions) -> Any:
    try:
        tree = ast.parse(expr_text.replace("^", "**"), mode="eval")
    except SyntaxError as e:
        raise KernelError(f"symbolic kernel: syntax error in {expr_text!r}: {e.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in functions:
                name = getattr(node.func, "id", ast.unparse(node.func))
                raise KernelError(
                    f"symbolic kernel: unknown function {name!r} (known: {', '.join(FUNCTIONS)})"
                )
        elif isinstance(node, ast.Name):
            if node.id not in known and node.id not in local and node.id not in functions:
                raise KernelError(
                    f"symbolic kernel: unknown variable {node.id!r} "
                    f"(inputs: {', '.join(sorted(set(known)))})"
                )
        elif isinstance(node, ast.Attribute | ast.Subscript | ast.Lambda | ast.Compare):
            raise KernelError(
                f"symbolic kernel: {type(node).__name__.lower()} is not allowed in {expr_text!r}"
            )
    namespace = {**functions, **known, **local}  # assignments shadow inputs
    try:
        return eval(compile(tree, "<symbolic>", "eval"), {"__builtins__": {}}, namespace)
    except Exception as e:
        raise KernelError(f"symbolic kernel: cannot evaluate {expr_text!r}: {e}") from None
