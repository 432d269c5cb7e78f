"""The symbolic-kernel parser: text to a sympy expression without `eval`.

A symbolic kernel's text comes from artefacts, Operon output and users, so it is untrusted.
`sympy.sympify` and Python's `eval` would run it; here the text is parsed with `ast` and the
sympy expression is built node by node from a fixed grammar:

* statements: an optional `def name(...):` header (its parameters are not read), assignments
  to plain names, then `return EXPR` or a final bare expression (or the last assignment);
* expressions: int and float literals, names (inputs, their aliases, earlier assignments),
  unary `+ -`, binary `+ - * / // % **` (`^` is read as `**`), and calls of `FUNCTIONS`,
  optionally spelled `math.f(...)` or `jnp.f(...)`.

Everything else (attributes, subscripts, lambdas, comprehensions, strings, keywords...) is a
`KernelError` naming the line and the construct. Integer arithmetic on constants is bounded:
an exponent over `MAX_EXPONENT` or a constant over `MAX_INT_BITS` bits is refused, so
`10**10**10` fails at once instead of computing a ten-billion-digit number.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import sympy as sp

from metarl_cli.errors import KernelError

MAX_TEXT = 100_000  # characters
MAX_EXPONENT = 1024  # largest |integer exponent|
MAX_INT_BITS = 4096  # largest exact integer (or rational numerator/denominator) constant
MODULES = ("math", "jnp")  # `math.tanh(x)` is `tanh(x)`
FUNCTION_NAMES: tuple[str, ...] = (
    *("exp", "log", "tanh", "sin", "cos", "sqrt", "abs", "sign", "relu", "square"),
    *("neg", "min", "max", "sigmoid", "cube", "inv"),
)

_NAMES = {
    "Lambda": "lambda",
    "NamedExpr": "walrus assignment ':='",
    "JoinedStr": "f-string",
    "ListComp": "list comprehension",
    "SetComp": "set comprehension",
    "DictComp": "dict comprehension",
    "GeneratorExp": "generator expression",
    "IfExp": "conditional expression",
    "BoolOp": "and/or",
    "Compare": "comparison",
    "AugAssign": "augmented assignment",
    "AnnAssign": "annotated assignment",
    "ImportFrom": "import",
}
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}


def sympy_functions() -> dict[str, tuple[Callable[..., Any], int, int | None]]:
    """Function name -> (sympy builder, min arguments, max arguments or None)."""
    one = {
        "exp": sp.exp,
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
    }
    table: dict[str, tuple[Callable[..., Any], int, int | None]] = {
        k: (f, 1, 1) for k, f in one.items()
    }
    table["log"] = (sp.log, 1, 2)
    table["min"] = (sp.Min, 1, None)
    table["max"] = (sp.Max, 1, None)
    assert set(table) == set(FUNCTION_NAMES)
    return table


def _what(node: ast.AST) -> str:
    kind = type(node).__name__
    return _NAMES.get(kind, kind.lower())


def _fail(node: ast.AST, message: str) -> KernelError:
    return KernelError(f"symbolic kernel: line {getattr(node, 'lineno', 1)}: {message}")


def _int_bits(value: Any) -> int:
    """Bits of an exact integer or rational constant (0 for anything else)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value.bit_length()
    if isinstance(value, sp.Rational):
        return max(int(value.p).bit_length(), int(value.q).bit_length())
    return 0


def _is_exact(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(
        value, sp.Rational
    )


class _Builder:
    """Builds one program's sympy expression; `known` maps input names to their symbols."""

    def __init__(self, known: Mapping[str, Any]):
        self.known = dict(known)
        self.local: dict[str, Any] = {}
        self.functions = sympy_functions()

    def _apply(self, node: ast.AST, op: Callable[..., Any], *args: Any) -> Any:
        try:
            value = op(*args)
        except KernelError:
            raise
        except Exception as e:  # sympy's and Python's arithmetic errors alike
            raise _fail(node, f"cannot evaluate {ast.unparse(node)!r}: {e}") from None
        if isinstance(value, complex):
            raise _fail(node, f"{ast.unparse(node)!r} is a complex number")
        if _int_bits(value) > MAX_INT_BITS:
            raise _fail(node, f"constant {ast.unparse(node)[:40]!r} is too large")
        return value

    def _power(self, node: ast.BinOp, base: Any, exponent: Any) -> Any:
        if _is_exact(exponent):
            size = abs(exponent)
            if size > MAX_EXPONENT:
                raise _fail(node, f"exponent {ast.unparse(node.right)[:40]!r} is too large")
            if _is_exact(base) and _int_bits(base) * size > MAX_INT_BITS:
                raise _fail(node, f"constant {ast.unparse(node)[:40]!r} is too large")
        return self._apply(node, _BINOPS[ast.Pow], base, exponent)

    def expr(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _fail(node, f"constant {ast.unparse(node)[:40]} is not allowed")
            if _int_bits(value) > MAX_INT_BITS:
                raise _fail(node, "integer constant is too large")
            return value
        if isinstance(node, ast.Name):
            if node.id in self.local:  # assignments shadow inputs
                return self.local[node.id]
            if node.id in self.known:
                return self.known[node.id]
            if node.id in self.functions:
                raise _fail(node, f"function {node.id!r} used without a call")
            inputs = ", ".join(sorted(self.known))
            raise _fail(node, f"unknown variable {node.id!r} (inputs: {inputs})")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self.expr(node.operand)
            sign = (lambda x: -x) if isinstance(node.op, ast.USub) else (lambda x: +x)
            return self._apply(node, sign, value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = self.expr(node.left), self.expr(node.right)
            if isinstance(node.op, ast.Pow):
                return self._power(node, left, right)
            return self._apply(node, _BINOPS[type(node.op)], left, right)
        if isinstance(node, ast.BinOp | ast.UnaryOp):
            op = type(node.op).__name__.lower()
            raise _fail(node, f"operator {op!r} is not allowed in {ast.unparse(node)[:60]!r}")
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Attribute):
            raise _fail(node, f"attribute access {ast.unparse(node)[:60]!r} is not allowed")
        raise _fail(node, f"{_what(node)} is not allowed in {ast.unparse(node)[:60]!r}")

    def call(self, node: ast.Call) -> Any:
        func = node.func
        name = None
        if isinstance(func, ast.Name):
            name = func.id
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in MODULES
        ):
            name = func.attr
        if name not in self.functions:
            spelled = ast.unparse(func)[:60]
            known = ", ".join(FUNCTION_NAMES)
            raise _fail(node, f"unknown function {spelled!r} (known: {known})")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _fail(node, f"{name}() takes positional arguments only")
        builder, low, high = self.functions[name]
        if len(node.args) < low or (high is not None and len(node.args) > high):
            raise _fail(node, f"{name}() takes {low}{'' if high == low else '+'} argument(s)")
        args = [self.expr(a) for a in node.args]
        return self._apply(node, builder, *args)

    def program(self, body: list[ast.stmt]) -> Any:
        result = None
        for i, stmt in enumerate(body):
            last = i == len(body) - 1
            if isinstance(stmt, ast.Return):
                if not last:
                    raise _fail(stmt, "'return' must be the last statement")
                if stmt.value is None:
                    raise _fail(stmt, "'return' needs an expression")
                result = self.expr(stmt.value)
            elif isinstance(stmt, ast.Assign):
                if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                    raise _fail(stmt, "assign to one plain name only")
                target = stmt.targets[0].id
                if target in self.functions:
                    raise _fail(stmt, f"cannot assign to {target!r}, a function")
                self.local[target] = self.expr(stmt.value)
                if last:
                    result = self.local[target]
            elif isinstance(stmt, ast.Expr):
                if not last:
                    raise _fail(stmt, f"statement {i + 1} is a bare expression before the end")
                result = self.expr(stmt.value)
            else:
                raise _fail(stmt, f"{_what(stmt)} statement is not allowed")
        return result


def _body(tree: ast.Module) -> list[ast.stmt]:
    """The statements, without a `def` header."""
    body = tree.body
    if body and isinstance(body[0], ast.FunctionDef | ast.AsyncFunctionDef):
        fn = body[0]
        if len(body) > 1:
            raise _fail(body[1], "only one function, and nothing after it")
        if isinstance(fn, ast.AsyncFunctionDef) or fn.decorator_list:
            raise _fail(fn, "only a plain 'def name(...):' header is allowed")
        return fn.body
    return body


def parse_program(text: str, known: Mapping[str, Any]) -> Any:
    """The sympy expression of `text` over `known` (name -> sympy symbol).

    Raises:
        KernelError: an empty program, a syntax error, or any construct outside the grammar.
    """
    if len(text) > MAX_TEXT:
        raise KernelError(f"symbolic kernel: longer than {MAX_TEXT:,} characters")
    source = textwrap.dedent(text).replace("^", "**")
    try:
        tree = ast.parse(source, "<symbolic>", mode="exec")
    except SyntaxError as e:
        where = f"line {e.lineno}: " if e.lineno else ""
        raise KernelError(f"symbolic kernel: {where}syntax error: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise KernelError(f"symbolic kernel: cannot parse: {e}") from None
    body = _body(tree)
    if not body:
        raise KernelError("symbolic kernel: the expression is empty")
    try:
        result = _Builder(known).program(body)
    except RecursionError:
        raise KernelError("symbolic kernel: the expression is nested too deeply") from None
    if result is None:
        raise KernelError("symbolic kernel: the program does not end in an expression")
    if isinstance(result, int):
        return sp.Integer(result)
    if isinstance(result, float):
        return sp.Float(result)
    if not isinstance(result, sp.Expr):
        raise KernelError("symbolic kernel: the program does not give a number")
    return result
