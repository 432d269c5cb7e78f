"""LPG beyond meta-gradients: black-box `train es --algo lpg`, `distil` of an LPG teacher,
LPG's own rollout sizes in `evaluate`, and `inspect` / `report` of an LPG artefact.

Real gridworlds, real LPG networks (GRU 8) and real trainers, at budgets of a few updates.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from metarl_cli.artefacts import load_artefact
from metarl_cli.cli.app import main
from metarl_cli.learned.base import get_algorithm

LPG = get_algorithm("lpg")
GRID = "gridworld/debug"
# 8 envs x 20 steps (LPG's window; num_envs shrunk from Table 3's 64), 3 updates per lifetime.
ES_TINY = [
    "train", "es", "--algo", "lpg", "--envs", GRID, "--popsize", "4", "--num-generations", "2",
    "--hsize", "8", "--timesteps", "480", "--set", "num_envs=8", "--noise-level", "1.0",
    "--eval-runs", "0", "--select", "final",
]  # fmt: skip


def _flat(tree) -> np.ndarray:
    return np.asarray(jax.flatten_util.ravel_pytree(tree)[0])


# LPG's own trainer on the debug gridworld, 8 envs x 20 steps, 3 updates; 2 seeds.
EVAL_TINY = ["--envs", GRID, "-n", "2", "--timesteps", "480", "--set", "num_envs=8"]


@pytest.fixture(scope="module")
def es_lpg(tmp_path_factory):
    """(an ES-trained LPG artefact, its `evaluate` result file)."""
    d = tmp_path_factory.mktemp("es")
    out, result = d / "lpg_es.safetensors", d / "es.eval.json"
    assert main([*ES_TINY, "-o", str(out)]) == 0
    assert main(["evaluate", str(out), *EVAL_TINY, "-o", str(result)]) == 0
    return out, result


def test_train_es_lpg_evolves_an_update_rule_that_evaluates(es_lpg):
    """ES members are update rules run by LPG's own trainer over whole lifetimes: members
    differ in fitness (theta reaches the rule), the mean moves off the all-zero start, the
    rollouts are LPG's 20 steps unless `--set`, and the artefact runs in `evaluate`."""
    artefact, result = es_lpg
    manifest, tensors = load_artefact(artefact)
    assert manifest.algorithm == "lpg" and manifest.slot == "update_rule"
    assert manifest.meta_learner.name == "es" and manifest.training_envs == [GRID]
    assert manifest.architecture == {"gru": 8, "embed": 1, "target": 8}
    shapes = jax.eval_shape(lambda k: LPG.init(k, gru=8, embed=1, target=8), jax.random.key(0))
    assert _flat(tensors).size == sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    assert np.abs(_flat(tensors)).max() > 0  # ES starts from zeros; the mean moved
    config = manifest.meta_learner.config
    train = config["train"][GRID]
    assert (train["num_envs"], train["num_steps"], train["num_minibatches"]) == (8, 20, 1)
    best, mean = config["history"]["fitness_best"], config["history"]["fitness_mean"]
    # With theta ignored, every member would train identical agents on shared seeds.
    assert any(b > m for b, m in zip(best, mean, strict=True))
    assert config["env_steps"] == 2 * 4 * 480 and config["chosen"] == "final-mean"
    env = json.loads(result.read_text())["envs"][0]
    # LPG's sizes beneath --set (the gridworld preset has 1024 envs and 16 minibatches)
    assert (env["config"]["num_envs"], env["config"]["num_steps"]) == (8, 20)
    assert env["config"]["num_minibatches"] == 1
    assert all(np.isfinite(env["final_returns"])) and len(env["final_returns"]) == 2


def test_evaluate_runs_lpg_and_a2c_on_their_own_rollouts(es_lpg, tmp_path):
    """On MinAtar (PPO preset 64 x 128, 8 minibatches) an LPG artefact and `a2c` run on
    Table 3's 64 x 20 by default; a config file's and `--set`'s values still win, and PPO
    keeps its preset."""
    from metarl_cli.evaluation import build_configs, target_train_defaults

    def sizes(target, **kw):
        (cfg,) = build_configs(["minatar/breakout"], defaults=target_train_defaults(target), **kw)
        return cfg.num_envs, cfg.num_steps, cfg.num_minibatches

    artefact = str(es_lpg[0])
    assert sizes(artefact) == sizes("a2c") == (64, 20, 1)
    assert sizes("ppo") == (64, 128, 8)
    assert sizes(artefact, overrides={"num_steps": 10}) == (64, 10, 1)
    assert sizes(artefact, file_values={"num_envs": 16}) == (16, 20, 1)


# --- distil an LPG teacher ----------------------------------------------------------------------


def _lpg_teacher(path, widths: dict[str, int], scale: float = 3.0):
    """An LPG teacher of `widths` with flax's initialisation scaled by `scale` (so its
    outputs vary across inputs more than a fresh network's), trained on `GRID`."""
    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.learned.io import save_learned

    arch = LPG.architecture_with(widths)
    theta = jax.tree.map(lambda x: scale * x, LPG.init(jax.random.key(1), **arch))
    save_learned(
        path, LPG, theta, architecture=arch, meta_learner=MetaLearnerInfo(name="metagrad"),
        training_envs=[GRID],
    )  # fmt: skip
    return theta, arch


def _held_out_mse(theta, arch, teacher, teacher_arch) -> float:
    """Mean squared difference of (pi_hat, y_hat/sqrt 8) from the teacher's on fresh synthetic
    rollouts (keys no run draws from)."""
    from metarl_cli.learned.lpg import LPGProblem

    problem = LPGProblem(LPG)
    batch = problem.sample(jax.random.key(12345), 256)
    diff = problem.outputs(theta, arch, batch) - problem.outputs(teacher, teacher_arch, batch)
    return float(np.mean(np.square(diff)))


def test_smaller_lpg_student_is_the_halved_network(tmp_path):
    """At paper sizes `--size smaller` is GRU 128, embedding 8 (y stays 8): paper §4.2."""
    from metarl_cli.meta.distil import plan_distil

    teacher = tmp_path / "lpg.safetensors"
    _lpg_teacher(teacher, {"gru": 256, "embed": 16}, scale=1.0)
    plan = plan_distil(teacher, tmp_path / "s.safetensors", size="smaller", num_runs=0)
    assert plan.cfg.student_architecture == {"gru": 128, "embed": 8, "target": 8}
    same = plan_distil(teacher, tmp_path / "t.safetensors", size="same", num_runs=0)
    assert same.cfg.student_architecture == {"gru": 256, "embed": 16, "target": 8}


# `smaller` only (the suite's time): `same` runs the same code with the teacher's widths, and
# the planned widths of both are checked above.
@pytest.mark.parametrize("size, student", [("smaller", (8, 1))])
def test_distil_lpg_student_moves_toward_its_teacher(tmp_path, capsys, size, student):
    """`metarl distil lpg.safetensors --size same|smaller`: the student (its network halved for
    `smaller`) ends much closer to the teacher's outputs on held-out synthetic rollouts than a
    fresh network of its size; `smaller` also selects by RL return on the teacher's gridworld,
    through LPG's own trainer at LPG's 20-step rollouts."""
    teacher_path, out = tmp_path / "teacher.safetensors", tmp_path / f"{size}.safetensors"
    teacher, teacher_arch = _lpg_teacher(teacher_path, {"gru": 16, "embed": 2})
    runs = ["--num-runs", "2", "--timesteps", "480", "--set", "num_envs=8"]
    args = [
        "distil", str(teacher_path), "--size", size, "-o", str(out), "--lr", "0.03",
        "--epochs", "2", "--iters", "150", "--batch-size", "128", "--test-size", "512",
        *(runs if size == "smaller" else ["--num-runs", "0"]),
    ]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    manifest, tensors = load_artefact(out)
    arch = {"gru": student[0], "embed": student[1], "target": 8}
    assert manifest.algorithm == "lpg" and manifest.architecture == arch
    fresh = LPG.init(jax.random.key(7), **arch)
    before = _held_out_mse(fresh, arch, teacher, teacher_arch)
    after = _held_out_mse(tensors, arch, teacher, teacher_arch)
    assert after < 0.5 * before, (before, after)
    config = manifest.meta_learner.config
    if size == "smaller":
        assert config["chosen"]["by"] == "rl_score"
        assert np.isfinite(config["teacher_rl_score"]["per_env"][GRID])


# --- report and inspect ---------------------------------------------------------------------------


def test_report_table1_and_inspect_know_lpg(es_lpg, tmp_path, capsys):
    """A meta-gradient LPG kernel is Table 1's Black-Box Learning row "(meta-gradients)", with
    the samples and wall time `train metagrad` records; beside it the ES-made LPG kernel and A2C.
    `inspect` shows the update-rule slot, the recorded decisions and the 64 x 20 rollouts."""
    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.learned.io import save_learned

    arch = {"gru": 8, "embed": 1, "target": 8}
    costs = {"env_steps": 5_000_000, "eval_env_steps": 1_000, "wall_s": 3600.0}
    decisions = {"num_agents": 512, "value_baseline": "trained", "lpg_max_grad_norm": None}
    metagrad = tmp_path / "lpg_mg.safetensors"
    save_learned(
        metagrad, LPG, LPG.init(jax.random.key(3), **arch), architecture=arch,
        meta_learner=MetaLearnerInfo(name="metagrad", config={**costs, **decisions}),
        training_envs=[GRID],
    )  # fmt: skip
    results = [tmp_path / "mg.eval.json", tmp_path / "a2c.eval.json", es_lpg[1]]
    for target, result in zip((metagrad, "a2c"), results, strict=False):
        code = main(["evaluate", str(target), *EVAL_TINY, "-o", str(result)])
        assert code == 0, capsys.readouterr().err
    report = tmp_path / "report"
    assert main(["report", *map(str, results), "-o", str(report)]) == 0, capsys.readouterr().err
    rows = {r["file"]: r for r in json.loads((report / "table1.json").read_text())}
    mg, a2c, es = (rows[str(p)] for p in results)
    assert mg["approach"].startswith("Black-Box Learning (meta-gradients)")
    assert (mg["samples"], mg["meta_train_text"]) == (5_001_000, "1.00 h")
    params = sum(
        int(np.prod(x.shape)) for x in jax.tree.leaves(LPG.init(jax.random.key(0), **arch))
    )
    assert mg["interpretability_text"] == f"low ({params:,} parameters)"
    assert mg["scalability_text"] == "19 inputs; paper: best"
    assert "meta-gradients" not in es["approach"] and es["approach"].startswith("Black-Box")
    assert es["samples"] == 2 * 4 * 480  # 2 generations of 4 members, one lifetime each
    assert a2c["approach"] == "A2C (hand-designed)" and a2c["samples"] == 0
    capsys.readouterr()
    assert main(["inspect", str(metagrad)]) == 0
    shown = capsys.readouterr().out
    assert "lpg (update_rule slot, neural form)" in shown and "meta-learned (metagrad)" in shown
    assert "value_baseline=trained," in shown and "lpg_max_grad_norm=None" in shown
    assert "num_envs=64," in shown and "num_steps=20," in shown
