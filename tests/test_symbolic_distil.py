"""`metarl symbolic`: symbolic distillation with Operon, the export to JAX and its checks.

Acceptance: a known closed form is recovered with near-zero error and the round trip holds; a
real LPO teacher (PPO's own drift) gives a symbolic artefact that passes the drift checks and
trains CartPole without NaNs; bad teachers and an unusable backend fail in one line (exit 2).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import export_code

from metarl_cli.artefacts import load_artefact
from metarl_cli.cli.app import main
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.checks import check_drift
from metarl_cli.learned.io import save_kernel, save_learned
from metarl_cli.learned.lpo import SYMBOLIC_INPUTS as LPO_NAMES
from metarl_cli.learned.lpo import SymbolicDrift, teacher_fns
from metarl_cli.learned.lpo import ratio_inputs as lpo_inputs
from metarl_cli.learned.lpo import symbolic_grid as lpo_grid
from metarl_cli.learned.symbolic import compile_symbolic
from metarl_cli.meta.symbolic import export
from metarl_cli.meta.symbolic.data import DistilData, load_teacher, make_data
from metarl_cli.meta.symbolic.operon import OperonBackend
from metarl_cli.meta.symbolic.problem import choose, make_problem, pareto_front, score
from metarl_cli.meta.symbolic.search import default_config

TINY_RL = ["--timesteps", "64", "--set", "num_envs=4", "--set", "num_steps=8"]
TINY_RL += ["--set", "num_minibatches=2", "--set", "update_epochs=1"]
TINY_SEARCH = ["--iterations", "3", "--population", "64", "--num-points", "4096"]
TINY_SEARCH += ["--batch-size", "1000", "--threads", "2"]


def _teacher(path, name="lpo", theta=None, envs=("classic/cartpole",)):
    algorithm = get_algorithm(name)
    arch = {"hidden": 16, "gru": 8} if name.startswith("open") else {"hidden": 16}
    if name == "lpo":
        arch = {"hidden": 128}
    if theta is None:
        theta = algorithm.init(jax.random.key(0), **arch)
    save_learned(path, algorithm, theta, architecture=arch, training_envs=list(envs))
    return path


@pytest.fixture(scope="module")
def ppo_teacher(tmp_path_factory):
    """LPO at theta = 0: exactly PPO's clipped drift (a valid drift)."""
    return _teacher(tmp_path_factory.mktemp("teachers") / "ppo.safetensors")


# --- export: Operon trees, the r = 1 correction, printing ----------------------------------


def test_operon_programs_convert_exactly_and_the_population_round_trips():
    import pyoperon as op

    backend = OperonBackend()
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32) + 2.0
    hashes = [
        v.Hash for v in sorted(op.Dataset(np.asfortranarray(x)).Variables, key=lambda v: v.Index)
    ]

    def var(i, w=1.0):
        node = op.Node(op.NodeType.Variable, hashes[i])
        node.Value = w
        return node

    def fn(kind, arity=None):
        node = op.Node(getattr(op.NodeType, kind))
        if arity is not None:
            node.Arity = arity
        return node

    trees = [  # postfix; the child nearest the parent is the first operand
        [var(0), var(1, 2.5), fn("Sub")],
        [var(0), var(1), var(2, -0.5), fn("Div", 3)],
        [var(0), fn("Sub", 1), var(2), fn("Fmin"), var(1), fn("Fmax")],
        [var(2), fn("Div", 1), fn("Tanh"), var(0), fn("Square"), fn("Mul")],
    ]
    names = ("a", "b", "c")
    for nodes in trees:
        tree = op.Tree(nodes).UpdateNodes()
        program = backend.program(tree, hashes, names)
        ours = export.evaluate(program, {n: x[:, i] for i, n in enumerate(names)})
        assert export.compare(ours, backend.evaluate(tree, x), rtol=1e-6).passed
        again = backend._decode(backend._encode(tree, hashes), hashes)
        np.testing.assert_array_equal(backend.evaluate(again, x), backend.evaluate(tree, x))
    # Operon's Fmin/Fmax enum names are swapped; what a node computes is what counts.
    tree = op.Tree([var(0), var(1), fn("Fmin")]).UpdateNodes()
    assert backend.program(tree, hashes, names)[0] == "max"


def test_lpo_export_vanishes_at_r_1_whatever_the_program():
    lpo = get_algorithm("lpo")
    f = (
        "mul",
        ("tanh", ("add", ("var", "log_r"), ("const", 1.0))),
        ("add", ("var", "A"), ("const", 2.0)),
    )
    identity = {"log_r": 0.0, "r_minus_1": 0.0}  # LPO's ratio inputs at r = 1
    text = export.kernel_text(export.vanishing(f, identity), export.Signature("f", LPO_NAMES))
    kernel = compile_symbolic(text, lpo.symbolic_variables, lpo.symbolic_aliases)
    adv = jnp.linspace(-4, 4, 9)
    at_one = SymbolicDrift(kernel)({}, jnp.ones_like(adv), adv, 0.2)
    # Zero up to float32 rounding: f(0, 0, A) is folded by sympy, f at r = 1 runs in float32.
    assert float(jnp.abs(at_one).max()) < 1e-6
    assert float(jnp.abs(kernel(log_r=0.3 + 0 * adv, r_minus_1=0.35 + 0 * adv, A=adv)).max()) > 0.1


def test_pretty_printer_short_constants_and_readable_program():
    assert export.short_number(0.000304) == "0.00030"
    assert export.short_number(-0.8591) == "-0.86"
    assert export.short_number(1.3245) == "1.3"
    assert export.short_number(123.4) == "120"
    program = ("add", ("mul", ("const", 1.0), ("tanh", ("mul", ("const", 0.98765), ("var", "g")))),
               ("mul", ("const", 0.000412345), ("var", "rand")), ("const", 0.0))  # fmt: skip
    sig = export.Signature("OPEN_Symbolic", ("p", "g", "rand"))
    pretty = export.pretty_text(program, sig)
    assert (
        pretty == "def OPEN_Symbolic(p, g, rand):\n    return tanh(0.99 * g) + (0.00041 * rand)\n"
    )
    exact = export.kernel_text(program, sig)
    assert "0.98765" in exact and "0.000412345" in exact
    variables = {"p": "", "g": "", "rand": ""}
    g, rand = jnp.linspace(-2, 2, 11), jnp.linspace(1, 3, 11)
    a = compile_symbolic(exact, variables)(p=g, g=g, rand=rand)
    b = compile_symbolic(pretty, variables)(p=g, g=g, rand=rand)
    np.testing.assert_allclose(a, b, rtol=2e-2)
    comparison = export.compare(np.array([1.0, 2.0, np.inf]), np.array([1.0, 2.0 + 1e-7, np.inf]))
    assert comparison.passed and comparison.nonfinite_mismatch == 0
    assert not export.compare(np.array([1.0, np.nan]), np.array([1.0, 2.0])).passed


# --- data ---------------------------------------------------------------------------------


def test_grad_loss_target_is_the_drift_gradient(tmp_path):
    k1, k2 = jax.random.split(jax.random.key(3))
    theta = {
        "w1": 0.3 * jax.random.normal(k1, (7, 128)),
        "w2": 0.3 * jax.random.normal(k2, (128, 1)),
    }
    teacher = load_teacher(_teacher(tmp_path / "t.safetensors", theta=theta))
    values = make_data(teacher, 4096, jax.random.key(0), grad_loss=False)
    grads = make_data(teacher, 4096, jax.random.key(0), grad_loss=True)
    np.testing.assert_array_equal(values.x, grads.x)
    np.testing.assert_array_equal(values.y, grads.drift)  # value mode: the target is the drift
    drift, _ = teacher_fns(teacher.theta, teacher.architecture, 0.2)
    r, a, h = grads.ratio, grads.x[:, 2], 1e-3
    numeric = (np.asarray(drift(r * (1 + h), a)) - np.asarray(drift(r * (1 - h), a))) / (2 * h * r)
    smooth = np.abs(numeric - grads.y) < 1e-2
    assert smooth.mean() > 0.97  # all but the points next to a ReLU kink
    assert np.abs(grads.y - grads.drift).max() > 1.0  # the original's bug: value as target
    # The grid contains r = 1, where the drift is 0.
    assert np.any(grads.x[:, 0] == 0) and np.all(grads.drift[grads.x[:, 0] == 0] == 0)


def test_open_ff_data_is_the_teachers_stochastic_update(tmp_path):
    from metarl_cli.learned.open import OpenNetwork

    teacher = load_teacher(_teacher(tmp_path / "o.safetensors", name="open_ff"))
    data = make_data(teacher, 2000, jax.random.key(1), grad_loss=False)
    assert data.x.shape == (2000, 20) and data.names[-1] == "rand"
    np.testing.assert_allclose(np.mean(data.x[:, :15] ** 2, axis=0), 1.0, rtol=1e-3)  # normalised
    out, _ = OpenNetwork(16, 8, recurrent=False).apply(teacher.theta, data.x[:, :19])
    out = np.asarray(out)
    expected = out[:, 0] * 1e-3 * np.exp(out[:, 1] * 1e-3) + out[:, 2] * 1e-3 * data.x[:, 19]
    np.testing.assert_allclose(data.y, expected, rtol=1e-5, atol=1e-9)


# --- acceptance 1: a known closed form ------------------------------------------------------


def test_known_lpo_closed_form_is_recovered_and_round_trips(ppo_teacher):
    teacher = load_teacher(ppo_teacher)
    cfg = default_config(teacher, population=100, iterations=10, num_points=4096, num_runs=0,
                         threads=2, selection_points=2000, holdout_points=2000)  # fmt: skip
    ratio, adv = lpo_grid(4096)
    d = lpo_inputs(ratio)

    def known(log_r, r_minus_1, a):  # a valid drift: >= 0, zero with zero slope at r = 1
        return 0.5 * np.square(log_r) * np.abs(a)

    y = known(d["log_r"], d["r_minus_1"], adv).astype(np.float32)
    x = np.stack([d["log_r"], d["r_minus_1"], adv], axis=1)
    data = DistilData(LPO_NAMES, x, y, drift=y, ratio=ratio)
    problem = make_problem(cfg, teacher, data=data)
    backend, population = OperonBackend(), None
    rows = np.random.default_rng(0).permutation(len(data))
    for k in range(3):
        task = problem.task(data.take(rows[(k % 2) * 2000 : (k % 2 + 1) * 2000]))
        result = backend.fit_round(task, cfg.settings(), population, seed=k + 1)
        population = result.population
        scored = score(problem, result.candidates)
        if scored[0].l2 < 1e-8 * np.mean(y**2):
            break
    chosen = choose(problem, scored, require_valid=True)
    assert chosen["l2"] / np.mean(y**2) < 1e-6
    assert chosen["round_trip"]["passed"] and chosen["round_trip"]["max_rel_error"] < 1e-5
    assert chosen["validity"] == []
    # The compiled kernel is the known function (not just the backend's program).
    lpo = get_algorithm("lpo")
    kernel = compile_symbolic(chosen["text"], lpo.symbolic_variables, lpo.symbolic_aliases)
    h = problem.holdout
    got = np.asarray(kernel(**{k: jnp.asarray(v) for k, v in h.items()}))
    want = known(h["log_r"], h["r_minus_1"], h["A"])
    assert np.max(np.abs(got - want)) < 1e-3 * np.max(np.abs(want))
    front = pareto_front(scored)
    assert [s.l2 for s in front] == sorted((s.l2 for s in front), reverse=True)


# --- acceptance 2: a real LPO teacher, end to end, with resume ---------------------------


def test_cli_distils_ppo_drift_into_a_valid_symbolic_drift_that_trains(ppo_teacher, tmp_path):
    out = tmp_path / "sym.safetensors"
    args = ["symbolic", str(ppo_teacher), "-o", str(out), "--rounds", "2", "-n", "1"]
    assert main([*args, *TINY_SEARCH, *TINY_RL]) == 0
    manifest, tensors = load_artefact(out)
    assert manifest.form == "symbolic" and manifest.algorithm == "lpo" and tensors == {}
    from metarl_cli.artefacts import artefact_digest

    assert manifest.parent_digest == artefact_digest(ppo_teacher)
    info = manifest.meta_learner.config
    assert manifest.meta_learner.name == "symbolic" and info["backend"] == "operon"
    assert info["round_trip"]["passed"] and info["round_trip"]["max_rel_error"] <= 1e-5
    assert info["variables"] == {"X1": "log_r", "X2": "r_minus_1", "X3": "A"}
    assert info["validity"] == {"student": [], "teacher": []}
    assert info["selection_seeds"] == {"seed": 0, "stream": "selection", "num_runs": 1}
    assert "def LPO_Symbolic(r, A):" in info["pretty"] and info["pretty"] in manifest.notes
    lpo = get_algorithm("lpo")
    kernel = compile_symbolic(manifest.expression, lpo.symbolic_variables, lpo.symbolic_aliases)
    assert check_drift(SymbolicDrift(kernel)) == []
    # Bounded against its teacher, PPO's clipped drift relu((r - clip(r, 0.8, 1.2)) A) written
    # out here, on the distillation's domain (log r in [-1, 1], A in [-4, 4]): relative RMS error
    # measured 0.39 at this tiny search (0.28 and 0.35 with --seed 1, 2); a zero drift gives 1.
    r, a = np.meshgrid(np.exp(np.linspace(-1, 1, 201)), np.linspace(-4, 4, 121))
    r, a = r.ravel().astype(np.float32), a.ravel().astype(np.float32)
    student = np.asarray(SymbolicDrift(kernel)({}, jnp.asarray(r), jnp.asarray(a), 0.2))
    teacher = np.maximum((r - np.clip(r, 0.8, 1.2)) * a, 0.0)
    rel = np.sqrt(np.mean((student - teacher) ** 2) / np.mean(teacher**2))
    assert rel < 0.5, rel
    run = out.with_suffix(".run")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    assert all(np.isfinite(r["rl_score"]) for r in records)
    assert (run / "round_0002.safetensors").exists() and (run / "pareto_0002.json").exists()
    front = json.loads((run / "pareto.json").read_text())
    assert [f["l2"] for f in front] == sorted((f["l2"] for f in front), reverse=True)
    # The most accurate program among those passing the drift checks (the teacher does).
    valid = [r["best_l2"] for r in records if not r["validity"]]
    assert manifest.fitness_summary["l2"] == min(valid)

    from metarl_cli.evaluation import evaluate

    result = evaluate(str(out), ["classic/cartpole"], num_runs=2, timesteps=512,
                      overrides={"num_envs": 4, "num_steps": 16, "num_minibatches": 2,
                                 "update_epochs": 1})  # fmt: skip
    env = result.envs[0]
    assert env.diverged == [False, False]  # finite losses throughout: no NaN
    assert all(r is not None and np.isfinite(r) and r > 0 for r in env.final_returns)


def test_resume_continues_exactly_and_refuses_another_config(tmp_path, capsys):
    teacher = _teacher(tmp_path / "nf.safetensors", name="nofeat")
    base = ["symbolic", str(teacher), "-n", "0", *TINY_SEARCH]
    whole, parts = tmp_path / "whole.safetensors", tmp_path / "parts.safetensors"
    assert main([*base, "-o", str(whole), "--rounds", "2"]) == 0
    assert main([*base, "-o", str(parts), "--rounds", "1"]) == 0
    assert main([*base, "-o", str(parts), "--rounds", "2", "--resume", "--force"]) == 0
    first, _ = load_artefact(whole)
    second, _ = load_artefact(parts)
    assert first.expression == second.expression and second.generation == 2
    state = json.loads((tmp_path / "parts.run" / "state.json").read_text())
    assert state["round"] == 2 and [h["round"] for h in state["history"]] == [1, 2]
    capsys.readouterr()
    changed = [*base, "-o", str(parts), "--rounds", "3", "--resume", "--force", "--seed", "9"]
    assert main(changed) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed" in err and "cannot resume" in err


# --- acceptance 3: bad input --------------------------------------------------------------


def test_bad_teachers_and_backends_fail_in_one_line(ppo_teacher, tmp_path, capsys):
    recurrent = _teacher(tmp_path / "open.safetensors", name="open")
    code = tmp_path / "code.safetensors"
    lpo = get_algorithm("lpo")
    save_kernel(code, lpo, "code", lpo.warm_start, code=export_code(lpo, lpo.warm_start))
    nofeat = _teacher(tmp_path / "nf.safetensors", name="nofeat")
    out = str(tmp_path / "x.safetensors")
    cases = [
        ([str(recurrent)], "recurrent"),
        ([str(code)], "needs a neural teacher"),
        ([str(ppo_teacher), "--backend", "pysr"], "--backend operon"),
        ([str(nofeat), "--grad-loss"], "LPO only"),
        ([str(tmp_path / "missing.safetensors")], "missing.safetensors"),
    ]
    for extra, needle in cases:
        capsys.readouterr()
        assert main(["symbolic", *extra, "-o", out, "-n", "0"]) == 2, needle
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error:"), err
        assert needle in err and "Traceback" not in err
    (tmp_path / "busy.run").mkdir()
    (tmp_path / "busy.run" / "state.json").write_text("{}")
    busy = str(tmp_path / "busy.safetensors")
    assert main(["symbolic", str(ppo_teacher), "-o", busy, "-n", "0"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_pysr_without_julia_is_refused_before_anything_runs(monkeypatch):
    import importlib.util

    from metarl_cli.errors import ConfigError
    from metarl_cli.meta.symbolic.backends import check_available

    real = importlib.util.find_spec
    monkeypatch.setattr(  # as if `pip install pysr` had been run, on a machine without Julia
        importlib.util, "find_spec", lambda name, *a: real("json") if name == "pysr" else real(name)
    )
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE", raising=False)
    with pytest.raises(ConfigError, match=r"needs Julia.*--backend operon"):
        check_available("pysr")


def test_a_stop_request_ends_the_round_at_the_next_generation():
    from metarl_cli.meta.symbolic.backends import FitTask, RoundInterrupted, SearchSettings

    x = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    task = FitTask(x, x[:, 0] * x[:, 1], ("a", "b"))
    settings = SearchSettings(("add", "mul"), max_size=10, max_depth=5, population=50,
                              generations=1000)  # fmt: skip
    seen = []
    with pytest.raises(RoundInterrupted):
        OperonBackend().fit_round(
            task,
            settings,
            None,
            seed=1,
            on_generation=seen.append,
            should_stop=lambda: len(seen) >= 2,
        )
    assert seen == [1, 2]  # stopped at generation 3 of 1000
