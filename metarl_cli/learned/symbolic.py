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

The text is untrusted (artefacts, Operon, users): it is parsed by `symbolic_parse`, a whitelist
over `ast` that builds sympy objects directly; nothing here calls `eval` or `sympify`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jax.numpy as jnp
import sympy as sp

from metarl_cli.errors import KernelError
from metarl_cli.learned.symbolic_parse import FUNCTION_NAMES, parse_program

FUNCTIONS = list(FUNCTION_NAMES)


@dataclass(frozen=True)
class SymbolicKernel:
    """A compiled symbolic expression.

    Attributes:
        text: the source as given.
        expression: the single simplified-free sympy expression, as a string (`srepr`).
        variables: the variables it uses (a subset of the allowed names, canonical spelling).
        expr: the same expression as a sympy object (compiled from; never re-parsed).
    """

    text: str
    expression: str
    variables: tuple[str, ...]
    expr: Any = field(compare=False, repr=False)

    def __call__(self, **inputs: Any) -> Any:
        fn = _lambdify(self.expr, self.variables)
        args = [inputs[v] for v in self.variables]
        out = fn(*args)
        if args:
            shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in args))
            return jnp.broadcast_to(jnp.asarray(out, jnp.float32), shape)
        return jnp.asarray(out, jnp.float32)


@lru_cache(maxsize=256)
def _lambdify(expr: Any, variables: tuple[str, ...]) -> Callable[..., Any]:
    return sp.lambdify([sp.Symbol(v) for v in variables], expr, modules="jax")


def compile_symbolic(
    text: str | None, variables: Mapping[str, str], aliases: Mapping[str, str] | None = None
) -> SymbolicKernel:
    """Compiles `text` over `variables` (name -> meaning); `aliases` maps other spellings.

    The text is parsed by `symbolic_parse.parse_program` (a whitelist over `ast`, never
    `eval` or `sympify`).

    Raises:
        KernelError: empty text, a syntax error, an unknown variable or function, a construct
            outside the grammar, or a program that does not end in an expression.
    """
    if text is None:
        raise KernelError("a symbolic kernel needs its text")
    known = {name: sp.Symbol(name) for name in variables}
    known.update({alias: sp.Symbol(canon) for alias, canon in (aliases or {}).items()})
    result = parse_program(text, known)
    if result.free_symbols - set(known.values()):
        names = sorted(str(s) for s in result.free_symbols - set(known.values()))
        raise KernelError(f"symbolic kernel: unknown variable {names[0]!r}")
    used = tuple(sorted(str(s) for s in result.free_symbols))
    try:
        _lambdify(result, used)  # fail now, not inside jit
    except Exception as e:
        raise KernelError(f"symbolic kernel: cannot compile to JAX: {e}") from None
    return SymbolicKernel(text=text, expression=sp.srepr(result), variables=used, expr=result)
