"""Untrusted code never runs outside the sandbox child: code kernels travel as verified StableHLO.

* `ExportedKernel` computes what the Python function computes, under `jit`, `vmap` (nested, with
  batched scalars) and `grad` together; the oracle is the function itself and JAX's own
  autodiff of it.
* Readers refuse modules with host callbacks, custom calls, effects, a wrong interface, garbage
  bytes, and old-format (Python-only) code artefacts.
* A hostile corpus through `metarl import code` (the real sandbox child): import-name bypasses
  through every allowed package, default-argument and decorator payloads, forbidden attributes,
  `/proc` reads of the parent, a sandbox-aware trojan, markup in the source. Each is refused or
  contained, and nothing is created outside the child's temp dir.
* A code artefact still runs after its source text is deleted from the manifest.
"""

from __future__ import annotations

import base64
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import export_code

from metarl_cli.artefacts import load_artefact, save_artefact
from metarl_cli.cli.app import main
from metarl_cli.errors import ArtefactError, KernelError
from metarl_cli.evaluation import evaluate
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.exported import (
    ExportedKernel,
    KernelSignature,
    export_function,
    signature_for,
)
from metarl_cli.learned.io import manifest_for, save_kernel
from metarl_cli.learned.loader import load_kernel
from metarl_cli.learned.source_check import load_function
from metarl_cli.meta.llm.export import kernel_of

LPO = get_algorithm("lpo")
TINY = {"num_envs": 4, "num_steps": 8, "num_minibatches": 2, "update_epochs": 1}
DRIFT_SIG = LPO.code_signature


def _drift(ratio, advantage, epsilon):
    """Not elementwise on purpose (a batch mean), so batching must not mix rows."""
    clipped = ratio - jnp.clip(ratio, 1 - epsilon, 1 + epsilon)
    return jax.nn.relu(clipped * advantage) + (jnp.log(ratio) ** 2) * jnp.mean(advantage**2)


def _kernel(fn=_drift, signature: KernelSignature = DRIFT_SIG) -> ExportedKernel:
    modules = export_function(fn, signature)
    return ExportedKernel.from_bytes(modules["primal"], modules.get("vjp"), signature)


# --- the exported kernel computes what the function computes --------------------------------


def test_exported_drift_matches_the_function_under_jit_vmap_and_grad():
    kernel = _kernel()
    k1, k2 = jax.random.split(jax.random.key(0))
    r = jnp.exp(0.3 * jax.random.normal(k1, (3, 4, 6)))
    a = jax.random.normal(k2, (3, 4, 6))
    eps = jnp.array([0.1, 0.2, 0.3])

    def ours(r, a, e):
        return kernel(r, a, e)[0]

    def loss(f):
        return lambda r, a, e: jnp.sum(jax.vmap(f, (0, 0, None))(r, a, e) ** 2)

    # nested vmap, the outer one over a batched scalar
    got = jax.jit(jax.vmap(jax.vmap(ours, (0, 0, None)), (0, 0, 0)))(r, a, eps)
    want = jax.vmap(jax.vmap(_drift, (0, 0, None)), (0, 0, 0))(r, a, eps)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # grad in ratio and advantage, vmapped over seeds, jitted
    g_ours = jax.jit(jax.vmap(jax.grad(loss(ours), argnums=(0, 1)), (0, 0, 0)))(r, a, eps)
    g_want = jax.vmap(jax.grad(loss(_drift), argnums=(0, 1)), (0, 0, 0))(r, a, eps)
    for x, y in zip(g_ours, g_want, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    # and against finite differences, independently of JAX's autodiff
    r0, a0, h = r[0, 0], a[0, 0], 1e-2
    f = jax.jit(lambda r: jnp.sum(ours(r, a0, 0.2)))
    g = jax.grad(lambda r: jnp.sum(ours(r, a0, 0.2)))(r0)
    e = jnp.zeros_like(r0).at[2].set(h)
    fd = (f(r0 + e) - f(r0 - e)) / (2 * h)
    np.testing.assert_allclose(g[2], fd, rtol=2e-2, atol=1e-3)


def test_recurrent_optimiser_kernel_returns_both_outputs():
    alg = get_algorithm("open")
    kernel = export_code(alg, alg.warm_start)
    fn = load_function(alg.warm_start, alg.code_parameters, trusted=True)
    n = 7
    key = jax.random.key(1)
    args = [
        jnp.float32(1e-3)
        if kind == "scalar"
        else jax.random.normal(jax.random.fold_in(key, i), (n,))
        for i, kind in enumerate(alg.code_signature.kinds)
    ]
    update, var = kernel(*args)
    want_update, want_var = fn(*args)
    np.testing.assert_allclose(update, want_update, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(var, jnp.broadcast_to(want_var, (n,)), rtol=1e-5, atol=1e-7)
    assert kernel.vjp is None  # an optimiser's update is never differentiated


# --- readers refuse what could reach the host -------------------------------------------------


def _cpu_module(fn, n_in=3) -> bytes:
    """A module as a hostile writer could make one: `fn` lowered for CPU (with a fixed length:
    callbacks cannot be exported with symbolic shapes) and put by hand into an `Exported`,
    since `jax.export` itself refuses to serialise host callbacks."""
    import dataclasses

    from jax import export
    from jax._src.interpreters import mlir

    avals = [jax.ShapeDtypeStruct((8,), jnp.float32)] * 2 + [jax.ShapeDtypeStruct((), jnp.float32)]
    avals = avals[:n_in]
    benign = export.export(jax.jit(lambda *xs: (xs[0],)), platforms=("cpu",))(*avals)
    module = jax.jit(fn).lower(*avals).compiler_ir("stablehlo")
    forged = dataclasses.replace(
        benign,
        mlir_module_serialized=mlir.module_to_bytecode(module),
        out_avals=tuple(jax.core.ShapedArray(a.shape, a.dtype) for a in jax.eval_shape(fn, *avals)),
        out_shardings_hlo=(None,) * len(jax.eval_shape(fn, *avals)),
        ordered_effects=benign.ordered_effects,
    )
    return bytes(forged.serialize())


def _host(x):
    return np.asarray(x)


HOSTILE_MODULES = {
    "pure_callback": (
        lambda r, a, e: (jax.pure_callback(_host, jax.ShapeDtypeStruct(r.shape, r.dtype), r),),
        "custom calls",
    ),
    "io_callback": (
        lambda r, a, e: (
            jax.experimental.io_callback(_host, jax.ShapeDtypeStruct(r.shape, r.dtype), r),
        ),
        "custom calls",
    ),
    "ordered_io_callback": (
        lambda r, a, e: (
            jax.experimental.io_callback(
                _host, jax.ShapeDtypeStruct(r.shape, r.dtype), r, ordered=True
            ),
        ),
        "custom calls",
    ),
    "debug_print": (lambda r, a, e: (jax.debug.print("{}", r) or r,), "custom calls"),
    "two_outputs": (lambda r, a, e: (r, a), "returns 2 values"),
}


@pytest.mark.parametrize("name", list(HOSTILE_MODULES))
def test_modules_that_reach_the_host_are_refused(name):
    import jax.experimental

    fn, needle = HOSTILE_MODULES[name]
    if name == "two_outputs":  # a legitimate export, of the wrong interface
        from jax import export

        (n,) = export.symbolic_shape("n")
        vec, scalar = jax.ShapeDtypeStruct((n,), jnp.float32), jax.ShapeDtypeStruct((), jnp.float32)
        data = bytes(export.export(jax.jit(fn))(vec, vec, scalar).serialize())
    else:
        data = _cpu_module(fn)
    with pytest.raises(KernelError, match=needle):
        ExportedKernel.from_bytes(data, data, DRIFT_SIG)
    # the same through the path a forged sandbox result takes
    forged = {"primal_b64": base64.b64encode(data).decode(), "vjp_b64": None}
    with pytest.raises(KernelError):
        kernel_of(LPO, forged)


def test_garbage_and_wrong_interfaces_are_refused():
    with pytest.raises(KernelError, match="not a valid serialised"):
        ExportedKernel.from_bytes(b"\x00garbage" * 10, b"\x00garbage", DRIFT_SIG)
    two_in = _cpu_module(lambda r, a: (r,), n_in=2)
    with pytest.raises(KernelError, match="takes 2 inputs"):
        ExportedKernel.from_bytes(two_in, two_in, DRIFT_SIG)
    ok = _kernel()
    with pytest.raises(KernelError, match="no gradient"):
        ExportedKernel.from_bytes(ok.primal, None, DRIFT_SIG)
    with pytest.raises(KernelError, match="no valid exported program"):
        kernel_of(LPO, {"primal_b64": "%%% not base64"})


def test_old_format_code_artefacts_are_refused_with_the_reimport_command(tmp_path, capsys):
    path = tmp_path / "old.safetensors"
    manifest = manifest_for(LPO, "code", source=LPO.warm_start, meta_learner=None)
    save_artefact(path, {}, manifest)
    with pytest.raises(ArtefactError, match=r"metarl import code SOURCE\.py --algo lpo"):
        load_kernel(path)
    rc = main(["evaluate", str(path), "--envs", "cartpole", "-n", "1", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "old format" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_code_artefact_runs_from_stablehlo_after_its_source_is_deleted(tmp_path):
    kernel = export_code(LPO, LPO.warm_start)
    with_source = tmp_path / "with.safetensors"
    save_kernel(with_source, LPO, "code", LPO.warm_start, code=kernel)
    manifest, tensors = load_artefact(with_source)
    without = tmp_path / "without.safetensors"
    save_artefact(without, tensors, manifest.model_copy(update={"source": None}))
    assert load_artefact(without)[0].source is None

    def run(path):
        return evaluate(str(path), ["classic/cartpole"], num_runs=2, timesteps=256, overrides=TINY)

    a, b, ppo = run(with_source), run(without), run("ppo")
    assert a.envs[0].curves == b.envs[0].curves
    # Supplement D's warm start is PPO's clipped drift: the same training as the baseline.
    np.testing.assert_allclose(
        np.asarray(a.envs[0].curves, float), np.asarray(ppo.envs[0].curves, float), rtol=1e-4
    )


# --- the hostile corpus, through `metarl import code` (the real sandbox child) ---------------

OK = "    return jnp.maximum(jnp.log(ratio), 0.0) ** 2 * jnp.abs(advantage)\n"
HEAD = "def f(ratio, advantage, epsilon):\n"
PACKAGES = ("jax", "jax.numpy", "jax.lax", "jax.nn", "numpy", "math")
ESCAPES = ("os", "subprocess", "ctypes", "builtins", "sys", "socket")

# Rejected by the parse in the parent, before any child starts: (source, words of the error).
PARSE_REJECTED = [
    *[(f"from {p} import {m}\n{HEAD}{OK}", f"importing {m!r}") for p in PACKAGES for m in ESCAPES],
    (f"from jax._src import api\n{HEAD}{OK}", "import from 'jax._src'"),
    (f"from numpy.ctypeslib import load_library\n{HEAD}{OK}", "import from 'numpy.ctypeslib'"),
    (f"import numpy.f2py\n{HEAD}{OK}", "import of 'numpy.f2py'"),
    (f"{HEAD}    np.ctypeslib.load_library('libc', '/lib')\n{OK}", "attribute 'load_library'"),
    (f"{HEAD}    x = np.fromfile('/proc/1/environ')\n{OK}", "attribute 'fromfile'"),
    (f"{HEAD}    jax.pure_callback(print, ratio, ratio)\n{OK}", "attribute 'pure_callback'"),
    (f"{HEAD}    jax.debug.callback(print, ratio)\n{OK}", "attribute 'callback'"),
    (f"{HEAD}    jax.config.update('jax_disable_jit', True)\n{OK}", "attribute 'config'"),
    ("import os\n@os.system\n" + HEAD + OK, "import of 'os'"),
    ("@jax.jit\n" + HEAD + OK, "a decorator"),
    ("def f(ratio, advantage, epsilon=__import__('os').system('true')):\n" + OK, "'system'"),
    ("def f(ratio, advantage, *, e=open('/etc/passwd').read()):\n" + OK, "name 'open'"),
    (f"{HEAD}    k = ratio.__class__.__base__.__subclasses__()\n{OK}", "dunder attribute"),
    (f"{HEAD}    b = dir(ratio)\n{OK}", "name 'dir'"),
    ("def f(ratio, advantage):\n" + OK, "do not match the slot's interface"),
]


@pytest.mark.parametrize("source,needle", PARSE_REJECTED)
def test_import_code_refuses_before_anything_runs(source, needle, tmp_path, capsys):
    src, out = tmp_path / "k.py", tmp_path / "k.safetensors"
    src.write_text(source)
    before = set(os.listdir(tmp_path))
    assert main(["import", "code", str(src), "--algo", "lpo", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert set(os.listdir(tmp_path)) == before


def test_the_corpus_is_large_enough():
    assert len(PARSE_REJECTED) + len(CONTAINED) + len(HOSTILE_MODULES) >= 40


# Run in the sandbox child, which refuses or contains them: (source, words of the error).
CONTAINED = [
    # a default argument's payload runs at definition time, in the child only
    (
        "def f(ratio, advantage, epsilon=[0] * 10**11):\n" + OK,
        "MemoryError",
    ),
    (
        "def f(ratio, advantage, epsilon=float(np.asarray(jnp.zeros(12_500_000_000))[0])):\n" + OK,
        "memory",
    ),
    # Python-level control flow on traced values cannot be exported
    (f"{HEAD}    if float(jnp.mean(ratio)) > 1.0:\n        return ratio\n{OK}", "jax.jit"),
]


@pytest.mark.parametrize("source,needle", CONTAINED)
def test_import_code_contains_what_runs_in_the_child(source, needle, tmp_path, capsys):
    src, out = tmp_path / "k.py", tmp_path / "k.safetensors"
    src.write_text(source)
    assert main(["import", "code", str(src), "--algo", "lpo", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not out.exists()


TROJAN = """def trojan(ratio, advantage, epsilon):
    clipped = ratio - jnp.clip(ratio, 1 - epsilon, 1 + epsilon)
    drift = nn.relu(clipped * advantage)
    # In the sandbox the child has one device; on the user's 2-device host the "payload" runs.
    if len(jax.devices()) > 1:
        return drift + 1000.0 * (ratio - 1.0) ** 2
    return drift
"""


def test_a_sandbox_aware_trojan_behaves_as_it_did_in_the_sandbox(tmp_path):
    """The trojan's Python ran once, in the sandbox; the host runs what the sandbox traced."""
    assert len(jax.devices()) == 2  # conftest: two host devices, as on the user's machine
    src, out = tmp_path / "trojan.py", tmp_path / "trojan.safetensors"
    src.write_text(TROJAN)
    assert main(["import", "code", str(src), "--algo", "lpo", "-o", str(out)]) == 0
    r = jnp.linspace(0.5, 1.5, 11)
    a = jnp.ones_like(r)
    ppo = jax.nn.relu((r - jnp.clip(r, 0.8, 1.2)) * a)
    (exported,) = load_kernel(out).code(r, a, 0.2)
    np.testing.assert_allclose(exported, ppo, atol=1e-6)
    # the test has power: run as Python on this host, the payload branch is taken
    native = load_function(TROJAN, LPO.code_parameters, trusted=True)(r, a, 0.2)
    assert float(jnp.max(jnp.abs(native - ppo))) > 10.0


def test_markup_in_source_is_kept_verbatim_and_harmless(tmp_path):
    source = (
        "def f(ratio, advantage, epsilon):\n"
        "    # [conceal]hidden[/conceal] [false] [bold red]x[/]\n" + OK
    )
    src, out = tmp_path / "m.py", tmp_path / "m.safetensors"
    src.write_text(source)
    assert main(["import", "code", str(src), "--algo", "lpo", "-o", str(out)]) == 0
    assert load_kernel(out).text == source


def test_exported_modules_are_pure_and_multi_platform():
    kernel = _kernel()
    from jax import export

    exported = export.deserialize(bytearray(kernel.primal))
    assert set(exported.platforms) >= {"cpu", "cuda"}
    assert "custom_call @shape_assertion" in exported.mlir_module()
    assert not exported.ordered_effects and not exported.unordered_effects


def test_signature_kinds():
    sig = signature_for(("p", "g", "lr", "iteration", "var"), ("update", "var"))
    assert sig.kinds == ("vector", "vector", "scalar", "scalar", "vector")


def test_code_is_never_executed_in_this_process_unless_trusted():
    """Outside the sandbox child, executing a code kernel is refused: every path runs StableHLO."""
    with pytest.raises(KernelError, match="executed only in the sandbox child"):
        load_function(LPO.warm_start, LPO.code_parameters)
    assert callable(load_function(LPO.warm_start, LPO.code_parameters, trusted=True))
