"""Symbolic and code kernels: the sandbox, the sympy compiler, every form of every algorithm,
the paper's Supplement C functions, and the Adam oracle."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import export_code, tiny_config

from metarl_cli.artefacts import load_artefact
from metarl_cli.cli.app import main
from metarl_cli.errors import KernelError
from metarl_cli.evaluation import evaluate
from metarl_cli.learned.base import ALGORITHMS, check_form, get_algorithm
from metarl_cli.learned.io import save_kernel
from metarl_cli.learned.library import PAPER
from metarl_cli.learned.perparam import Layout
from metarl_cli.learned.source_check import check_source, load_function
from metarl_cli.learned.symbolic import compile_symbolic
from metarl_cli.rl.slots import OptContext

get_algorithm("lpo")
NAMES = [n for n in ALGORITHMS.names() if "code" in ALGORITHMS.get(n).forms]
SYMBOLIC = {
    "lpo": "square(log_r) * abs(A)",
    # Steps of ~0.03 per parameter, so that 8 updates change the policy's actions (at 0.001
    # the curves equal PPO's and the test could not tell the kernel was used).
    "open": "0.03 * sign_g + 0.003 * rand",
    "open_ff": "0.03 * sgn_g * tanh(dorm)",
    "nofeat": "0.03 * tanh(g + m_9)",
}
TINY = {"num_envs": 4, "num_steps": 8, "num_minibatches": 2, "update_epochs": 1}
# Algorithms whose code warm start is a hand-designed baseline (PPO's drift; SGD).
TWINS = {"lpo": "ppo", "nofeat": "sgd", "open_ff": "sgd"}


# --- the sandbox ----------------------------------------------------------------------------

FORBIDDEN = {
    "import os\ndef f(ratio, advantage, epsilon):\n    return ratio": "import of 'os'",
    "def f(ratio, advantage, epsilon):\n    import subprocess\n    return ratio": "subprocess",
    "from pathlib import Path\ndef f(ratio, advantage, epsilon):\n    return ratio": "pathlib",
    "def f(ratio, advantage, epsilon):\n    return ratio.__class__": "__class__",
    "def f(ratio, advantage, epsilon):\n    open('x', 'w')\n    return ratio": "'open'",
    "def f(ratio, advantage, epsilon):\n    return eval('1')": "'eval'",
    "def f(ratio, advantage, epsilon):\n    return getattr(ratio, 'x')": "'getattr'",
    "def f(ratio, advantage, epsilon):\n    return __builtins__": "__builtins__",
    "def f(ratio, advantage, epsilon):\n    return jnp._src": "'_src'",
    "x = 1\ndef f(ratio, advantage, epsilon):\n    return ratio": "top level",
    "def f(a):\n    return a\ndef g(a):\n    return a": "exactly one",
    "def f(ratio, advantage, epsilon):\n    jnp.mean = jnp.sum\n    return ratio": "attribute",
    "def f(ratio, advantage, epsilon)\n    return ratio": "syntax error",
}


@pytest.mark.parametrize("source,needle", list(FORBIDDEN.items()))
def test_sandbox_rejects(source, needle):
    with pytest.raises(KernelError, match="code kernel") as e:
        load_function(source, ("ratio", "advantage", "epsilon"))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_sandbox_allows_jax_math_numpy_and_checks_the_signature():
    source = (
        "import math\nimport numpy as np\nimport jax.numpy as jnp\n"
        "def f(ratio, advantage, epsilon):\n"
        "    import jax.nn as jnn\n"
        "    return jnn.relu(jnp.log(ratio) * advantage * math.pi * np.float32(1.0))\n"
    )
    fn = load_function(source, ("ratio", "advantage", "epsilon"), trusted=True)
    out = fn(jnp.array([2.0]), jnp.array([1.0]), 0.2)
    np.testing.assert_allclose(out, np.log(2.0) * np.pi, rtol=1e-6)
    with pytest.raises(KernelError, match="do not match"):
        load_function(source, ("ratio", "advantage"), trusted=True)
    assert check_source(source).name == "f"


# --- the symbolic compiler ------------------------------------------------------------------


def test_symbolic_program_matches_numpy():
    text = "x = log(r)\ny = max(x, -0.5, A)\nreturn relu(y) * tanh(A) + square(r - 1)"
    k = compile_symbolic(text, {"r": "ratio", "A": "advantage"})
    r, a = np.array([0.5, 1.0, 2.0], np.float32), np.array([-1.0, 0.3, 2.0], np.float32)
    want = np.maximum(np.maximum.reduce([np.log(r), -0.5 * np.ones(3), a]), 0) * np.tanh(a)
    want = want + (r - 1) ** 2
    np.testing.assert_allclose(k(r=r, A=a), want, rtol=1e-6)
    assert k.variables == ("A", "r")


@pytest.mark.parametrize(
    "text,needle",
    [
        ("foo * r", "unknown variable 'foo'"),
        ("exp(r) + bogus(r)", "unknown function 'bogus'"),
        ("r.real", "attribute"),
        ("r +", "syntax error"),
        ("", "empty"),
        ("y = r\nr\nreturn y", "bare expression"),
    ],
)
def test_symbolic_rejects(text, needle):
    with pytest.raises(KernelError, match=needle):
        compile_symbolic(text, {"r": "ratio"})


# --- every algorithm x form -----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("form", ["symbolic", "code"])
def test_form_trains_and_round_trips(name, form, tmp_path):
    alg = get_algorithm(name)
    text = SYMBOLIC[name] if form == "symbolic" else alg.warm_start
    path = tmp_path / f"{name}-{form}.safetensors"
    code = export_code(alg, text) if form == "code" else None
    save_kernel(path, alg, form, text, code=code)
    manifest, tensors = load_artefact(path)
    assert (manifest.form, manifest.algorithm) == (form, name)
    assert (manifest.expression if form == "symbolic" else manifest.source) == text
    if form == "code":  # the program is StableHLO; the source is text to read
        assert manifest.kernel_format == "stablehlo/1" and set(tensors) == {"code"}
        assert tensors["code"]["primal"].dtype == np.uint8
    else:
        assert tensors == {}

    def run(target):  # 8 updates: enough for different rules to give different curves
        return evaluate(
            target, ["classic/cartpole"], num_runs=1, chunk=1, timesteps=256, overrides=TINY
        )

    result = run(str(path))
    assert result.target.form == form and result.target.spec_digest == alg.spec.digest
    curves = result.envs[0].curves
    assert result.envs[0].diverged == [False]  # finite losses under jit
    if form == "code" and name in TWINS:
        # An independent oracle: the warm start is this hand-designed baseline, exactly.
        assert curves == run(TWINS[name]).envs[0].curves
    else:
        # The kernel is in the slot: training differs from the default (PPO with Adam).
        assert curves != run("ppo").envs[0].curves


# --- the paper's functions ------------------------------------------------------------------


@pytest.mark.parametrize("name", PAPER.names())
def test_paper_function_trains(name, tmp_path):
    entry = PAPER.get(name)
    path = tmp_path / "k.safetensors"
    assert main(["import", "paper", name, "-o", str(path)]) == 0
    result = evaluate(
        str(path), ["classic/cartpole"], num_runs=1, chunk=1, timesteps=256, overrides=TINY
    )
    assert result.target.form == entry.form and result.target.algorithm == entry.algorithm
    env_result = result.envs[0]
    # Measured (4 seeds each, this budget): none of the 13 diverges, and every first run ends
    # with finished episodes (returns 12-23); a NaN or a missing result is a failure.
    assert env_result.diverged == [False]
    final = env_result.final_returns[0]
    assert final is not None and 8.0 <= final <= 500.0  # CartPole's range of episode returns


def test_a_diverging_kernel_is_reported_not_raised(tmp_path):
    alg = get_algorithm("nofeat")
    source = alg.warm_start.replace("update = g * lr", "update = g * lr * jnp.nan")
    path = tmp_path / "nan.safetensors"
    save_kernel(path, alg, "code", source, code=export_code(alg, source))
    result = evaluate(str(path), ["classic/cartpole"], num_runs=2, timesteps=64, overrides=TINY)
    assert result.envs[0].diverged == [True, True]


# --- oracles ---------------------------------------------------------------------------------


def test_adam_code_kernel_matches_optax_adam():
    """The recurrent warm start (Supplement D's Adam) is Adam with eps inside the sqrt."""
    alg = get_algorithm("open")
    cfg = tiny_config("classic/cartpole")
    opt = alg.kernel(cfg, {}, form="code", code=export_code(alg, alg.warm_start))
    keys = jax.random.split(jax.random.key(0), 22)
    params = {
        "actor": {"w": jax.random.normal(keys[0], (3, 4))},
        "critic": {"w": jax.random.normal(keys[1], (4,))},
    }
    ref = optax.adam(cfg.l2o_lr, b1=0.9, b2=0.999, eps=0.0, eps_root=1e-8)
    ref_state = ref.init(params)
    state = opt.init(None, params, keys[2])
    ours = params
    theirs = params
    update = jax.jit(opt.update)
    for i in range(20):
        grads = jax.tree.map(lambda x, i=i: jax.random.normal(keys[i + 2], x.shape), params)
        ctx = OptContext(jnp.float32(0.0), jnp.float32(0.0), jnp.float32(0.0), jnp.float32(1.0),
                         None, keys[i + 2])  # fmt: skip
        ours, state = update(None, grads, state, ours, ctx)
        step, ref_state = ref.update(grads, ref_state, theirs)
        theirs = optax.apply_updates(theirs, step)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert np.asarray(state["rule"]["var"]).max() > 0  # the recurrent `var` is carried


def test_flat_layout_round_trips_and_normalises_per_tensor():
    params = {
        "actor": {"mlp": {"dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}},
        "critic": {"mlp": {"dense_0": {"kernel": 2 * jnp.ones((3, 1)), "bias": jnp.ones(1)}}},
    }
    layout = Layout(params)
    flat = layout.flatten(params)
    assert flat.shape == (layout.size,) == (12,)
    back = layout.unflatten(flat)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    normed = layout.segment_rms_normalise(flat[:, None])[:, 0]
    np.testing.assert_allclose(normed, 1.0 / np.sqrt(1.0 + 1e-5) * (flat != 0), rtol=1e-5)
    np.testing.assert_array_equal(layout.actor_mask(), [1.0] * 8 + [0.0] * 4)


# --- bad input through the CLI --------------------------------------------------------------


def test_cli_rejects_bad_kernels_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\ndef f(ratio, advantage, epsilon):\n    return ratio\n")
    out = tmp_path / "x.safetensors"
    assert main(["import", "code", str(bad), "--algo", "lpo", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "import of 'os'" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main(["import", "symbolic", "r * bogus", "--algo", "lpo", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown variable 'bogus'" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main(["import", "code", str(bad), "-o", str(out)]) == 2  # no --algo
    assert "--algo" in capsys.readouterr().err


def test_cli_refuses_an_artefact_of_another_algorithm(tmp_path, capsys):
    path = tmp_path / "open.safetensors"
    assert main(["import", "paper", "robust_extrapolated", "-o", str(path)]) == 0
    capsys.readouterr()
    code = main(["evaluate", str(path), "--algo", "lpo", "--envs", "cartpole", "-n", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "'open_ff' artefact" in err and "expected a 'lpo'" in err
    assert len(err.splitlines()) == 1


def test_check_form_names_the_forms():
    with pytest.raises(KernelError, match="has no 'tree' form"):
        check_form(get_algorithm("lpo"), "tree", "x")
