"""The learned-algorithm protocol carries everything algorithm-specific.

Two checks of "an algorithm is one module": no module outside `metarl_cli/learned/` names an
algorithm id, and a toy algorithm defined and registered here, in the test module alone, goes
through `train es`, `distil`, `evaluate`, `inspect` and `report` by the CLI.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from metarl_cli.cli.app import main
from metarl_cli.learned.distillation import DistilOptions

PACKAGE = Path(__file__).resolve().parent.parent / "metarl_cli"
ALGORITHM_IDS = {"lpo", "open", "open_ff", "nofeat", "lpg"}
# (module, string) pairs that are not algorithm ids although they spell one.
ALLOWED = {
    # The Python audit event `open` (a file open), which the sandbox's audit hook filters.
    ("meta/llm/audit.py", "open"),
}


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None) if isinstance(node, nodes) else None
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            out.add(id(body[0].value))
    return out


def algorithm_id_literals(package: Path = PACKAGE) -> list[str]:
    """`path:line: 'id'` for every string constant equal to an algorithm id outside
    `learned/` (docstrings and comments do not count; f-string text is not a whole constant)."""
    hits = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("learned/"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in ALGORITHM_IDS
                and id(node) not in docs
                and (rel, node.value) not in ALLOWED
            ):
                hits.append(f"{rel}:{node.lineno}: {node.value!r}")
    return hits


def test_no_algorithm_id_outside_learned():
    assert algorithm_id_literals() == [], (
        "ask the algorithm object (learned/base.py::LearnedAlgorithm) instead of comparing ids"
    )


def test_the_id_scan_finds_an_id(tmp_path):
    """The scan is not vacuous: a comparison against an id in a module is reported."""
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "leak.py").write_text(
        '"""A module."""\n\n\ndef f(a):\n    """lpo"""\n    return a.name == "open_ff"\n'
    )
    (tmp_path / "learned").mkdir()
    (tmp_path / "learned" / "own.py").write_text('NAME = "lpo"\n')
    assert algorithm_id_literals(tmp_path) == ["meta/leak.py:6: 'open_ff'"]


# --- the protocol's members, for every registered algorithm --------------------------------------


def _registered(feed_forward_only: bool = False) -> tuple[str, ...]:
    from metarl_cli.learned.base import algorithms

    return tuple(a.name for a in algorithms() if not (feed_forward_only and a.recurrent))


REGISTERED = _registered()  # learned/'s own algorithms (the toy below registers later)
FEED_FORWARD = _registered(feed_forward_only=True)


@pytest.mark.parametrize("name", REGISTERED)
def test_every_algorithm_answers_the_protocol(name):
    import jax
    import numpy as np

    from metarl_cli.baselines import BASELINES
    from metarl_cli.errors import ConfigError
    from metarl_cli.learned.base import display_name, get_algorithm
    from metarl_cli.rl.slots import SLOT_NAMES

    alg = get_algorithm(name)
    # PPO's slots, or the whole update (an update rule brings its own trainer: LPG).
    assert alg.slot in (*SLOT_NAMES, "update_rule")
    assert display_name(name) == alg.display_name != name
    assert alg.reference_baseline in BASELINES
    assert set(alg.distil_options) <= {"target", "rollout"}
    assert ("rollout" in alg.distil_options) == alg.recurrent  # only sequences need a rollout
    default = alg.default_architecture("minatar")
    assert set(alg.widths) <= set(default)
    assert alg.architecture_with({k: default[k] for k in alg.widths}) == default
    assert set(alg.architecture_for(8)) == set(default)
    with pytest.raises(ConfigError, match="--hsize must be"):
        alg.architecture_for(0)
    key = jax.random.key(0)
    init, start = alg.init(key, **default), alg.initial_theta(key, **default)
    assert jax.tree.structure(init) == jax.tree.structure(start)
    assert [x.shape for x in jax.tree.leaves(init)] == [x.shape for x in jax.tree.leaves(start)]
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(start))  # the paper's start
    if "code" in alg.forms:  # the LLM prompt's worked example (LPG has no code form)
        name_, thought, body = alg.prompt_example
        assert name_.isidentifier() and thought and body.startswith("    ")
    if alg.checkpoint_format is not None:  # OPEN's released .npy
        from conftest import TEST_DATA

        theta, arch = alg.import_checkpoint(TEST_DATA / "asterix_OPEN.npy")
        shapes = jax.eval_shape(lambda k: alg.init(k, **arch), key)
        assert jax.tree.structure(theta) == jax.tree.structure(shapes)


@pytest.mark.parametrize("name", REGISTERED)
def test_every_distillation_problem_compares_teacher_and_student_alike(name):
    import jax
    import numpy as np

    from metarl_cli.learned.base import get_algorithm

    alg = get_algorithm(name)
    arch = alg.default_architecture("brax")
    problem = alg.distillation_problem(DistilOptions(seq_len=3, schedule=(4, 2, 2)))
    student = problem.init_student(jax.random.key(1), arch)
    batch = problem.sample(jax.random.key(2), 16)
    teacher_out = problem.outputs(alg.init(jax.random.key(3), **arch), arch, batch)
    student_out = problem.outputs(student, arch, batch)
    assert teacher_out.shape == student_out.shape and teacher_out.shape[-1] == 16
    assert np.all(np.isfinite(np.asarray(teacher_out)))


# Symbolic distillation refuses recurrent algorithms (paper §6; test_symbolic_distil checks the
# refusal), so their symbolic data is not part of the contract.
@pytest.mark.parametrize("name", FEED_FORWARD)
def test_symbolic_data_columns_are_symbolic_variables(name):
    import jax
    import numpy as np

    from metarl_cli.learned.base import get_algorithm

    alg = get_algorithm(name)
    arch = alg.default_architecture("brax")
    theta = alg.init(jax.random.key(0), **arch)
    data = alg.symbolic_data(theta, arch, jax.random.key(1), 64, grad_loss=False, clip_eps=0.2)
    assert data.x.shape == (len(data), len(data.names)) and data.y.shape == (len(data),)
    known = {*alg.symbolic_variables, *alg.symbolic_aliases}
    assert set(data.names) <= known
    holdout = alg.symbolic_holdout(jax.random.key(2), 32)
    assert set(data.names) <= set(holdout) <= known
    assert all(np.asarray(v).shape == (32,) for v in holdout.values())
    if alg.slot == "drift":
        at_one = alg.symbolic_ratio_inputs(np.ones(3, np.float32))
        assert set(at_one) <= set(data.names)
        assert all(np.all(v == 0) for v in at_one.values())  # LPO's inputs vanish at r = 1


# --- a toy algorithm, registered from here ------------------------------------------------------

TOY = "toy_drift"


def _features(ratio, advantage):
    import jax.numpy as jnp

    one_minus = 1.0 - ratio
    return jnp.stack([one_minus, one_minus * advantage], axis=-1)


def _net(theta, ratio, advantage):
    import jax.numpy as jnp

    return (jnp.tanh(_features(ratio, advantage) @ theta["w1"]) @ theta["w2"])[..., 0]


@dataclass(frozen=True)
class ToyDrift:
    """`relu(ppo_drift + net(1 - r, (1 - r) A))`: PPO's drift at theta = 0."""

    hidden: int = 4

    def __call__(self, theta, ratio, advantage, clip_eps):
        import jax

        from metarl_cli.rl.slots import PPOClipDrift

        ppo = PPOClipDrift()({}, ratio, advantage, clip_eps)
        return jax.nn.relu(ppo + _net(theta, ratio, advantage))


def _toy_spec():
    from metarl_cli.learned.base import Feature, FeatureSpec

    return FeatureSpec(
        TOY,
        1,
        (
            Feature("one_minus_r", "1 - r", (-1.0, 1.0)),
            Feature("one_minus_r_adv", "(1 - r) * A", (-3.0, 3.0)),
        ),
    )


def _toy_problem(algorithm):
    from metarl_cli.learned.distillation import DistillationProblem

    @dataclass(frozen=True)
    class ToyProblem(DistillationProblem):
        def outputs(self, theta, architecture, batch):
            return _net(theta, batch["ratio"], batch["advantage"])

    return ToyProblem(algorithm)


@dataclass(frozen=True)
class ToyAlgorithm:
    """A drift with a two-input network: only what the protocol asks for."""

    name: str = TOY
    display_name: str = "Toy Drift"
    slot: str = "drift"
    forms: tuple[str, ...] = ("neural",)
    recurrent: bool = False
    widths: tuple[str, ...] = ("hidden",)
    distil_options: tuple[str, ...] = ()
    reference_baseline: str = "ppo"
    checkpoint_format: str | None = None

    @property
    def spec(self):
        return _toy_spec()

    def sample_inputs(self, key, n):
        import jax
        import jax.numpy as jnp

        k1, k2 = jax.random.split(key)
        return {
            "ratio": jnp.exp(jax.random.uniform(k1, (n,), minval=-1.0, maxval=1.0)),
            "advantage": jax.random.uniform(k2, (n,), minval=-3.0, maxval=3.0),
        }

    def default_architecture(self, suite):
        del suite
        return {"hidden": 4}

    def architecture_for(self, hsize):
        from metarl_cli.learned.base import check_hsize

        check_hsize(hsize)
        return {"hidden": int(hsize)}

    def architecture_with(self, widths):
        return {"hidden": int(widths["hidden"])}

    def init(self, key, hidden=4):
        import jax

        k1, k2 = jax.random.split(key)
        return {
            "w1": 0.5 * jax.random.normal(k1, (2, hidden)),
            "w2": 0.1 * jax.random.normal(k2, (hidden, 1)),
        }

    def initial_theta(self, key, hidden=4):
        import jax
        import jax.numpy as jnp

        return jax.tree.map(jnp.zeros_like, self.init(key, hidden))

    def kernel(self, cfg, architecture, form="neural", text=None, code=None):
        del cfg, form, text, code
        return ToyDrift(int(architecture["hidden"]))

    def validity(self, kernel, theta=None, *, clip_eps=0.2):
        from metarl_cli.learned.checks import check_drift

        return check_drift(kernel, theta, clip_eps=clip_eps)

    def distillation_problem(self, options=None):
        del options
        return _toy_problem(self)


@pytest.fixture
def toy():
    from metarl_cli.learned.base import ALGORITHMS, get_algorithm

    get_algorithm("lpo")  # the package's own algorithms are registered first
    algorithm = ALGORITHMS.register(TOY, ToyAlgorithm())
    yield algorithm
    ALGORITHMS.unregister(TOY)
    assert TOY not in ALGORITHMS


def test_registry_unregister_removes_the_entry_and_its_aliases():
    from metarl_cli.errors import UnknownNameError
    from metarl_cli.registry import Registry

    reg: Registry[int] = Registry("thing")
    reg.register("a", 1, aliases=("alpha",))
    reg.register("b", 2)
    assert reg.unregister("alpha") == 1
    assert reg.names() == ["b"] and "alpha" not in reg and reg.aliases() == {}
    with pytest.raises(UnknownNameError):
        reg.unregister("a")


def test_es_starts_from_the_algorithms_initial_theta(toy, tmp_path):
    """The ES search mean starts at `initial_theta` (zeros here), not at `init` (random)."""
    import jax
    import numpy as np

    from metarl_cli.meta.es.config import ESConfig
    from metarl_cli.meta.es.strategies import init_state, make_strategy
    from metarl_cli.meta.es.train import RLProblem, plan_es

    cfg = ESConfig(
        algo=TOY, envs=["classic/cartpole"], architecture={"hidden": 3}, popsize=2, eval_runs=0,
        select="final",
        timesteps=256, overrides={"num_envs": 4, "num_steps": 16, "num_minibatches": 2},
    )  # fmt: skip
    plan = plan_es(cfg, tmp_path / "x.safetensors", run_dir=None, resume=False, force=False)
    problem = RLProblem(plan)
    assert np.abs(problem.template["w1"]).max() > 0 and problem.template["w1"].shape == (2, 3)
    es, params = make_strategy(cfg, problem.template)
    state = init_state(cfg, es, params, problem.start, jax.random.key(0))
    mean = es.get_mean(state)
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(mean))
    assert jax.tree.structure(mean) == jax.tree.structure(problem.template)


TINY_PPO = [
    "--timesteps", "256", "--set", "num_envs=4", "--set", "num_steps=16",
    "--set", "num_minibatches=2", "--set", "update_epochs=1",
]  # fmt: skip


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_toy_algorithm_goes_through_every_command(toy, tmp_path, capsys):
    from metarl_cli.artefacts import artefact_digest, load_artefact
    from metarl_cli.results import read_result

    es = tmp_path / "toy-es.safetensors"
    code, _, err = run(
        capsys, "train", "es", "--algo", TOY, "--envs", "cartpole", "-o", es,
        "--num-generations", "2", "--popsize", "2", "--noise-level", "1.0", "--eval-runs", "0",
        "--save-every-k", "2", *TINY_PPO,
    )  # fmt: skip
    assert code == 0, err
    manifest, tensors = load_artefact(es)
    assert (manifest.algorithm, manifest.slot, manifest.generation) == (TOY, "drift", 2)
    assert manifest.feature_spec.digest == toy.spec.digest
    assert tensors["w1"].shape == (2, 4) and tensors["w2"].shape == (4, 1)

    small = tmp_path / "toy-small.safetensors"
    code, _, err = run(
        capsys, "distil", es, "--size", "smaller", "-o", small, "--lr", "0.02", "--epochs", "1",
        "--iters", "5", "--batch-size", "64", "--test-size", "64", "--num-runs", "0",
    )  # fmt: skip
    assert code == 0, err
    manifest, tensors = load_artefact(small)
    assert manifest.algorithm == TOY and manifest.meta_learner.name == "distil"
    assert dict(manifest.architecture) == {"hidden": 2} and tensors["w1"].shape == (2, 2)
    assert manifest.parent_digest == artefact_digest(es)

    code, out, err = run(capsys, "inspect", small, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert json.dumps(shown).count(TOY) >= 1 and "drift" in json.dumps(shown)

    results = []
    for artefact in (es, small):
        result = artefact.with_suffix(".eval.json")
        code, _, err = run(
            capsys, "evaluate", artefact, "--envs", "cartpole", "-n", "2", *TINY_PPO, "-o",
            result,
        )  # fmt: skip
        assert code == 0, err
        evaluated = read_result(result)
        assert evaluated.target.algorithm == TOY and len(evaluated.envs[0].final_returns) == 2
        results.append(result)

    report = tmp_path / "report"
    code, _, err = run(capsys, "report", *results, "-o", report, "--reps", "200")
    assert code == 0, err
    text = (report / "report.md").read_text()
    assert "Toy Drift, meta-trained on Cartpole" in text  # the study named by the protocol
    # A drift: its objective's slope is drawn, as LPO's is.
    assert (report / f"{TOY}_gradients.png").exists()


# --- the meta-learner scaffold ----------------------------------------------------------------


def test_every_meta_learners_plan_has_the_scaffolds_fields():
    import dataclasses
    import importlib
    import typing

    from metarl_cli.meta.rundir import RunDirBase
    from metarl_cli.meta.scaffold import META_LEARNERS, MetaPlan

    assert {m.name for m in META_LEARNERS} == {"es", "distil", "symbolic", "llm"}
    shared = set(typing.get_type_hints(MetaPlan))
    for m in META_LEARNERS:
        module, cls = m.plan_type.split(":")
        plan_type = getattr(importlib.import_module(module), cls)
        fields = {f.name for f in dataclasses.fields(plan_type)}
        assert shared <= fields, (m.name, shared - fields)
        hints = typing.get_type_hints(plan_type)
        assert issubclass(hints["run_dir"], RunDirBase), m.name
        assert hints["output"] is Path and hints["force"] is bool, m.name
