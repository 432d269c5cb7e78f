"""From a backend's program to a symbolic kernel: text, pretty printing and the round trip.

Backends hand over programs as a small backend-neutral tree (`Program` nodes, nested tuples):

    ("const", 0.5)            a constant
    ("var", "log_r")          an input, by our variable name
    ("add", a, b, ...)        n-ary +; likewise "mul"
    ("sub", a, b, ...)        a - b - ...; unary: -a      ("div": a / b / ..., unary: 1 / a)
    ("min", a, b), ("max", a, b), ("exp", a), ("tanh", a), ("abs", a), ("square", a), ...

`kernel_text` writes it as the straight-line program that `learned/symbolic.py` compiles
(constants at float32 precision, long subexpressions hoisted into `termK = ...` lines, as the
paper prints its programs). `pretty_text` is the same program for reading: constants cut to two
significant figures and trivial scale factors (`1.0 * x`, `x + 0.0`) dropped, like Supplement
C.1; it is not exact and is never compiled. `round_trip` compiles the exact text to JAX and
compares it with the backend's own predictions on held-out inputs.

Drift programs are made to vanish at r = 1 by construction: LPO's `f(log_r, r_minus_1, A)` is
exported as `f(log_r, r_minus_1, A) - f(0, 0, A)` (see `vanishing`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Program = tuple  # ("op", *children) | ("const", float) | ("var", name)

UNARY = ("exp", "log", "tanh", "sin", "cos", "sqrt", "abs", "square", "neg", "relu")
BINARY = ("min", "max")
NARY = ("add", "sub", "mul", "div")
_INFIX = {"add": " + ", "sub": " - ", "mul": " * ", "div": " / "}

# Relative tolerance of the round trip (JAX vs the backend's own predictions).
ROUND_TRIP_RTOL = 1e-5


def substitute(program: Program, values: Mapping[str, float]) -> Program:
    """`program` with the named variables replaced by constants."""
    kind = program[0]
    if kind == "var":
        name = program[1]
        return ("const", float(values[name])) if name in values else program
    if kind == "const":
        return program
    return (kind, *(substitute(c, values) for c in program[1:]))


def variables(program: Program) -> set[str]:
    """The variable names a program uses."""
    if program[0] == "var":
        return {program[1]}
    if program[0] == "const":
        return set()
    return set().union(*(variables(c) for c in program[1:]))


def size(program: Program) -> int:
    """Number of nodes."""
    if program[0] in ("var", "const"):
        return 1
    return 1 + sum(size(c) for c in program[1:])


def fold_constants(program: Program) -> Program:
    """Replaces every subtree without variables by its value (float64, then float32 when
    printed) where that value is finite; everything else is kept, so IEEE semantics (0 * inf)
    are untouched."""
    kind = program[0]
    if kind in ("var", "const"):
        return program
    children = [fold_constants(c) for c in program[1:]]
    node = (kind, *children)
    if all(c[0] == "const" for c in children):
        value = evaluate(node, {})
        if np.isfinite(value):
            return ("const", float(value))
    return node


def vanishing(program: Program, at_identity: Mapping[str, float]) -> Program:
    """`f(x) - f(x with at_identity substituted)`: zero where the inputs take those values
    whatever `f` is (a drift's ratio inputs at r = 1, LPO: `f(log_r, r_minus_1, A) - f(0, 0,
    A)`)."""
    at_one = fold_constants(substitute(program, at_identity))
    return ("sub", program, at_one)


# --- numbers ------------------------------------------------------------------------------------


def exact_number(x: float) -> str:
    """The shortest decimal that reads back as the same float32 (the backends' precision)."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite constant {x}")
    text = np.format_float_positional(np.float32(x), unique=True, trim="-")
    if len(text) > 14:  # very small or large: scientific is shorter
        text = np.format_float_scientific(np.float32(x), unique=True, trim="-")
    return text


def short_number(x: float, digits: int = 2) -> str:
    """`x` to `digits` significant figures, trailing zeros kept (0.00030, 1.3, -0.86)."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else repr(x)
    if abs(x) >= 1e5 or abs(x) < 1e-4:
        return np.format_float_scientific(x, precision=digits - 1, unique=False, trim="k")
    return np.format_float_positional(
        x, precision=digits, unique=False, fractional=False, trim="k"
    ).rstrip(".")


# --- simplification for reading -------------------------------------------------------------


def _is_const(p: Program, value: float | None = None) -> bool:
    return p[0] == "const" and (value is None or p[1] == value)


def tidy(program: Program, digits: int = 2) -> Program:
    """Removes what only matters to the search: `x * 1`, `x + 0`, `0 * x` (display only: it
    may change the value where `x` is infinite), folds constant subtrees and rounds."""
    kind = program[0]
    if kind in ("var", "const"):
        return program
    children = [tidy(c, digits) for c in program[1:]]
    if all(_is_const(c) for c in children):
        value = evaluate((kind, *children), {})
        if np.isfinite(value):
            return ("const", float(value))
    rounded = [float(short_number(c[1], digits)) if _is_const(c) else None for c in children]
    if kind == "mul":
        if any(r == 0.0 for r in rounded):
            return ("const", 0.0)
        sign, kept = 1, []
        for c, r in zip(children, rounded, strict=True):
            if r in (1.0, -1.0):
                sign = sign * int(r)
            else:
                kept.append(c)
        body = ("const", 1.0) if not kept else kept[0] if len(kept) == 1 else ("mul", *kept)
        return ("neg", body) if sign < 0 else body
    elif kind == "div" and len(children) > 1 and rounded[0] == 0.0:
        return ("const", 0.0)
    elif kind == "add":
        children = [c for c, r in zip(children, rounded, strict=True) if r != 0.0] or [
            ("const", 0.0)
        ]
    elif kind == "sub" and len(children) > 1:
        head, rest = children[0], children[1:]
        rest = [c for c, r in zip(rest, rounded[1:], strict=True) if r != 0.0]
        if not rest:
            return head
        if _is_const(head) and float(short_number(head[1])) == 0.0:
            return ("neg", rest[0] if len(rest) == 1 else ("add", *rest))
        children = [head, *rest]
    if kind in ("add", "mul") and len(children) == 1:
        return children[0]
    return (kind, *children)


def evaluate(program: Program, inputs: Mapping[str, Any]) -> Any:
    """Evaluates a program with numpy (float64; used for folding and tests)."""
    kind = program[0]
    if kind == "const":
        return np.float64(program[1])
    if kind == "var":
        return np.asarray(inputs[program[1]], np.float64)
    args = [evaluate(c, inputs) for c in program[1:]]
    with np.errstate(all="ignore"):
        if kind == "add":
            return sum(args[1:], args[0])
        if kind == "mul":
            out = args[0]
            for a in args[1:]:
                out = out * a
            return out
        if kind == "sub":
            return -args[0] if len(args) == 1 else args[0] - sum(args[2:], args[1])
        if kind == "div":
            if len(args) == 1:
                return 1.0 / args[0]
            out = args[0]
            for a in args[1:]:
                out = out / a
            return out
        fns: dict[str, Callable[..., Any]] = {
            "min": np.minimum,
            "max": np.maximum,
            "exp": np.exp,
            "log": np.log,
            "tanh": np.tanh,
            "sin": np.sin,
            "cos": np.cos,
            "sqrt": np.sqrt,
            "abs": np.abs,
            "square": np.square,
            "neg": np.negative,
            "relu": lambda x: np.maximum(x, 0.0),
        }
        return fns[kind](*args)


# --- rendering ----------------------------------------------------------------------------


def _render(
    program: Program,
    number: Callable[[float], str],
    lines: list[str],
    width: int,
    top: bool = False,
) -> str:
    """Fully parenthesised infix text; subexpressions longer than `width` characters become
    `termK = ...` lines appended to `lines` (the caller's straight-line program)."""
    kind = program[0]
    if kind == "const":
        return number(program[1])
    if kind == "var":
        return program[1]
    args = [_render(c, number, lines, width) for c in program[1:]]
    if kind in _INFIX and len(args) > 1:
        # A negative operand after the first gets parentheses (`a - (-0.2)`, `x * (-3)`).
        rest = [f"({a})" if a.startswith("-") else a for a in args[1:]]
        text = "(" + _INFIX[kind].join([args[0], *rest]) + ")"
    elif kind in ("sub", "neg"):
        text = f"(-{args[0]})"
    elif kind == "div":
        text = f"(1 / {args[0]})"
    elif kind in ("add", "mul"):
        text = args[0]
    else:
        text = f"{kind}({', '.join(_strip(a) for a in args)})"
    if not top and len(text) > width:
        name = f"term{len(lines) + 1}"
        lines.append(f"{name} = {_strip(text)}")
        return name
    return text


def _strip(text: str) -> str:
    """Drops one pair of outer parentheses if they enclose the whole text."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return text
    return text[1:-1]


def _program_text(
    header: str, prologue: Sequence[str], program: Program, number, width: int
) -> str:
    lines: list[str] = list(prologue)
    body: list[str] = []
    result = _render(program, number, body, width, top=True)
    lines += body
    lines.append(f"return {_strip(result)}")
    return header + "\n" + "\n".join(f"    {line}" for line in lines) + "\n"


@dataclass(frozen=True)
class Signature:
    """How an algorithm's symbolic function is written.

    Attributes:
        name: the function name in the printed program.
        params: its parameters (the variables the slot passes in).
        prologue: lines computing derived inputs for reading (LPO: `log_r = log(r)`).
    """

    name: str
    params: tuple[str, ...]
    prologue: tuple[str, ...] = ()


def _header(signature: Signature) -> str:
    """`def name(params):`, wrapped five parameters a line when long (as Supplement C.1)."""
    header = f"def {signature.name}({', '.join(signature.params)}):"
    if len(header) <= 96:
        return header
    params = signature.params
    groups = [", ".join(params[i : i + 5]) for i in range(0, len(params), 5)]
    return f"def {signature.name}(\n    " + ",\n    ".join(groups) + ",\n):"


def kernel_text(program: Program, signature: Signature, width: int = 72) -> str:
    """The exact program as text `compile_symbolic` accepts (float32-exact constants)."""
    return _program_text(_header(signature), (), program, exact_number, width)


def pretty_text(program: Program, signature: Signature, digits: int = 2, width: int = 60) -> str:
    """The program for reading, with short constants (Supplement C.1 style; not exact)."""
    header = _header(signature)
    tidied = tidy(program, digits)
    return _program_text(
        header, signature.prologue, tidied, lambda x: short_number(x, digits), width
    )


# --- round trip ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundTrip:
    """The exported JAX function against the backend's own predictions.

    Attributes:
        passed: every finite output within `rtol`, and the same outputs non-finite.
        max_rel_error: max over points of |jax - backend| / max(|backend|, rms(backend)).
        points: how many held-out inputs were compared.
        nonfinite_mismatch: points finite on one side only.
        rtol: the tolerance.
    """

    passed: bool
    max_rel_error: float
    points: int
    nonfinite_mismatch: int
    rtol: float = ROUND_TRIP_RTOL

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "max_rel_error": self.max_rel_error,
            "points": self.points,
            "nonfinite_mismatch": self.nonfinite_mismatch,
            "rtol": self.rtol,
        }


def compare(jax_out: np.ndarray, backend_out: np.ndarray, rtol: float = ROUND_TRIP_RTOL):
    """`RoundTrip` of two output vectors (the relative error is floored at the outputs' RMS,
    so points where the output crosses zero are judged at the output's scale)."""
    a = np.asarray(jax_out, np.float64).reshape(-1)
    b = np.asarray(backend_out, np.float64).reshape(-1)
    fa, fb = np.isfinite(a), np.isfinite(b)
    mismatch = int(np.sum(fa != fb))
    both = fa & fb
    if not both.any():
        return RoundTrip(False, float("inf"), int(a.size), mismatch, rtol)
    scale = max(float(np.sqrt(np.mean(b[both] ** 2))), 1e-30)
    err = np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), scale)
    worst = float(err.max())
    return RoundTrip(mismatch == 0 and worst <= rtol, worst, int(a.size), mismatch, rtol)


def round_trip(
    text: str,
    algorithm: Any,
    inputs: Mapping[str, np.ndarray],
    backend_out: np.ndarray,
    rtol: float = ROUND_TRIP_RTOL,
) -> RoundTrip:
    """Compiles `text` as `algorithm`'s symbolic kernel and compares it with `backend_out` on
    `inputs` (variable name -> [n] array; every variable the kernel may use)."""
    import jax.numpy as jnp

    from metarl_cli.learned.symbolic import compile_symbolic

    kernel = compile_symbolic(text, algorithm.symbolic_variables, algorithm.symbolic_aliases)
    values = {k: jnp.asarray(v, jnp.float32) for k, v in inputs.items()}
    out = np.asarray(kernel(**values))
    n = len(next(iter(inputs.values())))
    return compare(np.broadcast_to(out, (n,)), backend_out, rtol)
