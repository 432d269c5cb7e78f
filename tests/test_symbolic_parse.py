"""The symbolic-kernel parser: the paper's programs give the values the old `eval`-based
compiler gave, and hostile text is refused with a `KernelError` without running anything."""

from __future__ import annotations

import time

import numpy as np
import pytest

from metarl_cli.errors import KernelError
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.library import PAPER
from metarl_cli.learned.symbolic import compile_symbolic

# Outputs of the previous compiler (sympify/eval based) on `_inputs`, recorded before the
# parser was replaced: (variables used, float32 outputs).
REFERENCE = {
    "lpo_symbolic_ant": (
        ("A", "r"),
        [0.7461540699005127, 0.04204548895359039, 0.15718968212604523, 1.2262279987335205],
    ),
    "lpo_symbolic_minatar": (
        ("A", "r"),
        [0.38377290964126587, 0.012471132911741734, 0.06537780165672302, 0.6962919235229492],
    ),
    "nofeat_symbolic_ant": (
        ("g", "m_0_5", "m_0_99", "m_0_999", "p"),
        [
            1.0619252861943096e-05,
            0.00014435335469897836,
            0.0003565179358702153,
            0.0003565185470506549,
        ],
    ),
    "nofeat_symbolic_minatar": (
        ("g", "m_0_5", "m_0_9", "m_0_99", "m_0_999"),
        [0.0, 0.001164447981864214, 0.0026668282225728035, 0.004169196356087923],
    ),
    "open_ff_symbolic_ant": (
        ("log_m_0_999", "rand"),
        [
            -0.00027243245858699083,
            -0.00038859897176735103,
            -0.0004928612033836544,
            -0.0006113712443038821,
        ],
    ),
    "open_ff_symbolic_minatar": (
        ("log_g", "log_m_0_99", "p", "rand", "sign_m_0_99"),
        [0.000597774691414088, 0.0006139931501820683, 0.0007478709449060261, 0.0010663229040801525],
    ),
}


def _inputs(variables):
    ramp, ratio = np.linspace(-0.9, 1.3, 4, dtype=np.float32), np.float32([0.5, 0.9, 1.2, 1.7])
    return {
        v: ratio if v == "r" else ramp * np.float32(1 + 0.1 * i) for i, v in enumerate(variables)
    }


def _compile(entry):
    alg = get_algorithm(entry.algorithm)
    return compile_symbolic(entry.text, alg.symbolic_variables, alg.symbolic_aliases)


def test_every_paper_program_gives_the_recorded_values():
    names = [n for n in PAPER.names() if PAPER.get(n).form == "symbolic"]
    assert sorted(names) == sorted(REFERENCE)
    for name in names:
        variables, want = REFERENCE[name]
        kernel = _compile(PAPER.get(name))
        assert kernel.variables == variables, name
        got = np.asarray(kernel(**_inputs(variables)))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12, err_msg=name)


def test_paper_programs_match_hand_written_numpy():
    r = np.array([0.5, 0.9, 1.2, 1.7])
    a = np.array([-2.0, -0.3, 0.4, 3.0])
    log_r, rm1 = np.log(r), r - 1
    term1 = np.minimum(0.15, rm1 * -0.97)
    term2 = np.minimum(-0.28 - log_r, a**2)
    term3 = np.maximum(term1, term2) * np.tanh(np.abs(a - 0.46))
    numerator = term3**2 + np.tanh((rm1 * a) / np.maximum(1.32**2, a - log_r))
    want = np.maximum(numerator, -0.86)
    got = _compile(PAPER.get("lpo_symbolic_minatar"))(r=r, A=a)
    np.testing.assert_allclose(got, want, rtol=2e-6)

    m999, rand = np.array([-3.0, -1.0, 0.5, 2.0]), np.array([0.1, 0.5, 0.9, 0.3])
    term = np.tanh(np.exp(np.abs(m999))) * rand / 1.11**2 * -0.00041
    want = -0.00041 + term / 2.36
    got = _compile(PAPER.get("open_ff_symbolic_ant"))(log_m_0_999=m999, rand=rand)
    np.testing.assert_allclose(got, want, rtol=2e-6)


@pytest.mark.parametrize(
    "text,value",
    [
        ("r ^ 2", 4.0),  # `^` is the power, as in Operon's output
        ("math.tanh(r) * 0 + jnp.exp(0) + r", 3.0),
        ("x = 1\nx = x + r\nx", 3.0),
        ("  y = r * 2\n  return y", 4.0),  # indented as pasted from a function body
        ("def f(r: jnp.ndarray) -> jnp.ndarray:\n    r = r // 1.5  # shadows\n    return r", 1.0),
        ("min(r, 5, 7) + log(8, 2) + 7 % 4", 8.0),
        ("ratio * 2 ** 3", 16.0),
    ],
)
def test_grammar_keeps_what_it_accepted(text, value):
    k = compile_symbolic(text, {"r": "ratio"}, {"ratio": "r"})
    assert float(k(r=np.float32(2.0))) == pytest.approx(value)


HOSTILE = {
    "__import__('os').system('touch {m}')": 'unknown function "__import__',
    "__import__('os')": "unknown function '__import__'",
    "().__class__.__bases__[0].__subclasses__()": "unknown function",
    "r.__class__": "attribute access 'r.__class__'",
    "(lambda: __import__('os').system('touch {m}'))()": "unknown function",
    "tanh(lambda: 0)": "lambda is not allowed",
    "[__import__('os').system('touch {m}') for _ in (1,)]": "list comprehension",
    "max(*[open('{m}', 'w')])": "positional arguments only",
    "os.system('touch {m}')": "unknown function 'os.system'",
    "np.tanh(r) + math.__dict__": "unknown function 'np.tanh'",
    "open('{m}', 'w')": "unknown function 'open'",
    "Symbol('r') + sympify('r')": "unknown function 'Symbol'",
    "'touch {m}'": "constant 'touch",
    "f\"{{__import__('os').system('touch {m}')}}\"": "f-string",
    "(x := __import__('os'))": "walrus",
    "r[0]": "subscript",
    "import os\nos.system('touch {m}')\nreturn r": "line 1: import statement",
    "y = r\nexec(\"open('{m}', 'w')\")\nreturn y": "line 2: statement 2 is a bare expression",
    "tanh(r, key=__import__('os'))": "positional arguments only",
    "def f(r):\n    return r\nopen('{m}', 'w')": "line 3: only one function",
    "@__import__('os').system\ndef f(r):\n    return r": "plain 'def name",
    "r if r else 1": "conditional expression",
    "r < 1": "comparison",
    "r << 2": "operator 'lshift'",
    "10**10**10": "exponent '10 \\*\\* 10' is too large",
    "r ** 10**10": "exponent",
    "abs(10) ** abs(10) ** abs(10)": "exponent",
    "square(square(square(square(square(square(square(square(9**400))))))))": "too large",
    "(2 ** 1000) ** 1000": "too large",
    "2 ** 0.5j": "constant 0.5j",
    "x: float = r\nreturn x": "annotated assignment",
    "a, b = r, r\nreturn a": "assign to one plain name",
    "tanh = r\nreturn tanh": "cannot assign to 'tanh'",
    "exp + r": "function 'exp' used without a call",
    "r\x00": "cannot parse|syntax error",
    "-" * 200_000 + "r": "longer than",
}


@pytest.mark.parametrize("template,needle", list(HOSTILE.items()))
def test_hostile_text_is_refused_without_running(template, needle, tmp_path):
    marker = tmp_path / "pwned"
    text = template.format(m=marker)
    start = time.perf_counter()
    with pytest.raises(KernelError, match=needle) as e:
        compile_symbolic(text, {"r": "ratio"})
    assert time.perf_counter() - start < 5.0
    message = str(e.value)
    assert message.startswith("symbolic kernel: ") and "\n" not in message
    assert not marker.exists()


def test_errors_name_the_line():
    with pytest.raises(KernelError, match=r"^symbolic kernel: line 3: unknown variable 'q'"):
        compile_symbolic("a = r\nb = a * 2\nreturn b + q", {"r": "ratio"})
    with pytest.raises(KernelError, match=r"line 2: syntax error"):
        compile_symbolic("a = r\nb = (a *\n", {"r": "ratio"})
