"""ES meta-training: the core loop on a known optimum, exact resume, the CLI end to end, bad input.

Real evosax and real CartPole, at budgets of a few PPO updates so the file stays short.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from metarl_cli.cli.app import main
from metarl_cli.meta.es.config import ESConfig

# A tiny PPO budget: 4 envs x 16 steps, 8 updates of 2 minibatches. sigma 1 so that members
# differ in return at this budget (with 0.03 most members tie and the mean hardly moves).
TINY = [
    "--algo", "lpo", "--envs", "cartpole", "--popsize", "8", "--timesteps", "512",
    "--noise-level", "1.0", "--hsize", "8", "--set", "num_envs=4", "--set", "num_steps=16",
    "--set", "num_minibatches=2", "--set", "update_epochs=1",
]  # fmt: skip


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- the ES core on a problem with a known answer -----------------------------------------


class Quadratic:
    """fitness(x) = -|x - target|^2 over a small pytree; optionally NaN beyond a bound."""

    def __init__(self, target: float = 0.5, nan_above: float | None = None) -> None:
        import jax.numpy as jnp

        self.target, self.nan_above = target, nan_above
        self.template = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
        self.start = self.template
        self.env_steps_per_generation = 0

    def fitness(self, population, key):
        import jax
        import jax.numpy as jnp

        from metarl_cli.meta.es.fitness import combine_fitness

        flat = jax.vmap(lambda t: jax.flatten_util.ravel_pytree(t)[0])(population)
        f = -jnp.sum((flat - self.target) ** 2, axis=1)
        if self.nan_above is not None:
            f = jnp.where(flat[:, 0] > self.nan_above, jnp.nan, f)
        return combine_fitness({"toy": np.asarray(f)[:, None]}, {"toy": None})


def toy_config(**kw) -> ESConfig:
    base = dict(
        algo="toy", envs=["toy"], architecture={}, popsize=16, lr=0.05, lr_decay=0.98,
        noise_level=0.1, sigma_decay=1.0, num_generations=150, eval_runs=0, save_every_k=5,
        select="final",
    )  # fmt: skip
    return ESConfig(**{**base, **kw})


def _flat(tree):
    import jax

    return np.asarray(jax.flatten_util.ravel_pytree(tree)[0])


def test_es_core_finds_the_optimum_of_a_quadratic():
    from metarl_cli.meta.es.loop import evolve

    records = []
    cfg = toy_config(num_generations=300)
    result = evolve(cfg, Quadratic(0.5), on_generation=records.append)
    mean = _flat(result.mean)
    assert np.abs(mean - 0.5).max() < 0.05, mean
    # -1.75 at the zero start; about -7 * sigma^2 = -0.07 around the optimum.
    assert records[-1]["fitness_mean"] > 10 * records[0]["fitness_mean"]
    assert [r["generation"] for r in records] == list(range(1, 301))


@pytest.mark.parametrize("strategy", ["pgpe", "snes", "sep_cma_es"])
def test_other_strategies_improve_the_quadratic(strategy):
    from metarl_cli.meta.es.loop import evolve

    records = []
    evolve(
        toy_config(strategy=strategy, num_generations=60), Quadratic(), on_generation=records.append
    )
    assert records[-1]["fitness_mean"] > 0.5 * records[0]["fitness_mean"]


def test_failed_members_get_the_worst_fitness_and_are_counted():
    from metarl_cli.meta.es.loop import evolve

    records = []
    result = evolve(
        toy_config(num_generations=40), Quadratic(0.5, nan_above=0.6), on_generation=records.append
    )
    assert sum(r["failed"] for r in records) > 0
    assert all(np.isfinite(r["fitness_mean"]) for r in records)
    assert np.isfinite(_flat(result.mean)).all()
    assert _flat(result.mean)[0] < 0.6  # pushed away from the failing region


def test_combine_fitness_normalises_averages_and_marks_failures():
    from metarl_cli.meta.es.fitness import WORST_FITNESS, combine_fitness

    returns = {
        "a": np.array([[10.0, 30.0], [np.nan, 5.0], [0.0, 0.0]]),
        "b": np.array([[100.0, 100.0], [50.0, 50.0], [np.inf, 1.0]]),
    }
    out = combine_fitness(returns, {"a": 10.0, "b": 100.0})
    assert out.fitness[0] == pytest.approx((2.0 + 1.0) / 2)
    assert out.fitness[1] == WORST_FITNESS and out.fitness[2] == WORST_FITNESS
    assert out.failed.tolist() == [False, True, True]
    assert out.raw_means["a"][0] == 20.0


def test_core_resume_continues_bit_for_bit(tmp_path):
    import jax

    from metarl_cli.meta.es.loop import evolve
    from metarl_cli.meta.es.rundir import RunDir

    full = evolve(toy_config(num_generations=20), Quadratic())
    rd = RunDir(tmp_path / "run")
    rd.prepare(resume=False, force=False)
    evolve(toy_config(num_generations=10), Quadratic(), run_dir=rd)
    resumed = evolve(toy_config(num_generations=20), Quadratic(), run_dir=rd, resume=True)
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lines = rd.metrics.read_text().splitlines()
    assert [json.loads(x)["generation"] for x in lines] == list(range(1, 21))


def test_first_generation_uses_the_initial_sigma_and_lr_then_decays():
    from metarl_cli.meta.es.loop import evolve

    records = []
    cfg = toy_config(num_generations=3, sigma_decay=0.5, lr_decay=0.5, sigma_limit=0.0)
    evolve(cfg, Quadratic(), on_generation=records.append)
    assert [r["sigma"] for r in records] == pytest.approx([0.1, 0.05, 0.025])
    assert [r["lr"] for r in records] == pytest.approx([0.05, 0.025, 0.0125])


# --- the sharded population program -------------------------------------------------------


def test_population_fitness_pads_over_devices_and_shares_seeds():
    """Identical thetas give identical returns (common random numbers), seeds differ, and a
    run count that does not divide over the 2 devices is padded and the padding dropped. Same
    trainer and per-device batch (4) as the CLI runs below, so the compilation is shared."""
    import jax

    from metarl_cli.config import build_config
    from metarl_cli.envs import make_env
    from metarl_cli.learned.base import get_algorithm, slots_for
    from metarl_cli.meta.es.fitness import PopulationFitness
    from metarl_cli.rl.ppo import make_train

    small = dict(num_envs=4, num_steps=16, num_minibatches=2, update_epochs=1)
    cfg = build_config("classic/cartpole", timesteps=512, overrides=small)
    alg, arch = get_algorithm("lpo"), {"hidden": 8}
    fitness = PopulationFitness(make_train(cfg, make_env(cfg), slots_for(alg, cfg, arch)), "drift")
    theta = jax.tree.map(lambda x: x + 0.5, alg.init(jax.random.key(0), **arch))

    def population(n):
        return jax.tree.map(lambda x: jax.numpy.stack([x] * n), theta)

    keys = jax.random.split(jax.random.key(1), 2)
    seven = fitness(population(7), keys[:1])  # 7 runs -> 8, one padding run
    assert seven.shape == (7, 1) and np.isfinite(seven).all()
    assert (seven == seven[0]).all()
    four = fitness(population(4), keys)  # 8 runs: members x 2 shared seeds
    assert four.shape == (4, 2) and (four == four[0]).all()
    assert four[0, 0] == seven[0, 0] and four[0, 0] != four[0, 1]


# --- the CLI on CartPole ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lpo_run(tmp_path_factory):
    """One real run: 4 generations, checkpoints at 2 and 4 with a 2-seed evaluation."""
    out = tmp_path_factory.mktemp("es") / "lpo.safetensors"
    code = main(
        [
            "train", "es", *TINY, "--num-generations", "4", "--save-every-k", "2",
            "--eval-runs", "2", "--select", "best-eval", "-o", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    return out


def test_cli_run_writes_artefact_checkpoints_and_metrics(lpo_run):
    from metarl_cli.artefacts import load_artefact
    from metarl_cli.learned.base import get_algorithm

    manifest, tensors = load_artefact(lpo_run)
    alg = get_algorithm("lpo")
    assert manifest.algorithm == "lpo" and manifest.feature_spec.digest == alg.spec.digest
    assert manifest.architecture == {"hidden": 8} and manifest.training_envs == ["classic/cartpole"]
    assert tensors["w1"].shape == (7, 8) and tensors["w2"].shape == (8, 1)
    config = manifest.meta_learner.config
    assert manifest.meta_learner.name == "es" and config["es"]["popsize"] == 8
    assert config["train"]["classic/cartpole"]["num_steps"] == 16
    assert config["env_steps"] == 4 * 8 * 512 and config["eval_env_steps"] == 2 * 2 * 512
    assert len(config["history"]["fitness_mean"]) == 4
    evals = config["evals"]
    assert [e["generation"] for e in evals] == [2, 4]
    best = max(evals, key=lambda e: e["score"])
    assert config["chosen"] == "best-eval-mean" and manifest.generation == best["generation"]
    assert manifest.fitness_summary["chosen_eval_score"] == best["score"]
    assert config["selection_seeds"] == {"seed": 0, "stream": "selection", "num_runs": 2}
    assert config["fitness_seeds"] == {"seed": 0, "stream": "es_fitness", "num_runs": 1}
    run_dir = lpo_run.with_suffix(".run")
    periodic_manifest, periodic = load_artefact(
        run_dir / f"gen_{best['generation']:04d}.safetensors"
    )
    np.testing.assert_array_equal(periodic["w1"], tensors["w1"])
    assert periodic_manifest.generation == best["generation"]
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["generation"] for x in lines] == [1, 2, 3, 4]
    assert {"fitness_best", "fitness_mean", "sigma", "lr", "env_steps_per_s", "eta_s"} <= set(
        lines[0]
    )


def test_kill_and_ctrl_c_then_resume_equal_an_uninterrupted_run(tmp_path, capsys):
    from metarl_cli.artefacts import load_artefact
    from metarl_cli.meta.es.rundir import RunDir

    args = [*TINY, "--save-every-k", "2", "--eval-runs", "0"]
    ref = tmp_path / "ref.safetensors"
    assert main(["train", "es", *args, "--num-generations", "12", "-o", str(ref)]) == 0
    capsys.readouterr()

    out, rd = tmp_path / "cut.safetensors", RunDir(tmp_path / "cut.run")
    # `python -m metarl_cli`, with Python's own Ctrl-C handler installed first: a shell runs
    # background jobs (CI's, for one) with SIGINT ignored, children inherit that, and Python then
    # installs no handler. A terminal's Ctrl-C reaches the default handler; so does this one.
    enter = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from metarl_cli.cli.app import run; sys.argv[0] = 'metarl'; run()"
    )
    cmd = [sys.executable, "-c", enter, "train", "es", *args, "-o", str(out)]

    def start_and_stop(extra, sig, after_generation):
        proc = subprocess.Popen([*cmd, *extra], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            saved = rd.read_saved() if rd.checkpoint.exists() else None
            if saved and saved[1] >= after_generation:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be stopped"
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        return proc.returncode, stderr, rd.read_saved()[1]

    # Ctrl-C: checkpoint of the last completed generation, exit 130, a resume hint.
    code, stderr, gen_int = start_and_stop(["--num-generations", "400"], signal.SIGINT, 2)
    assert code == 130 and "--resume" in stderr, stderr
    assert 2 <= gen_int < 12
    # kill -9 of the resumed run, after a later checkpoint.
    code, _, gen_kill = start_and_stop(
        ["--num-generations", "400", "--resume"], signal.SIGKILL, gen_int + 2
    )
    assert code == -signal.SIGKILL and gen_int < gen_kill < 12
    assert not out.exists()
    code = main(["train", "es", *args, "--num-generations", "12", "-o", str(out), "--resume"])
    assert code == 0
    (m_ref, t_ref), (m_out, t_out) = load_artefact(ref), load_artefact(out)
    assert m_ref.tensors_sha256 == m_out.tensors_sha256
    for key in t_ref:
        np.testing.assert_array_equal(t_ref[key], t_out[key])
    assert m_ref.fitness_summary == m_out.fitness_summary
    assert np.abs(t_ref["w1"]).max() > 0  # the search moved: the comparison is not trivial
    lines = [json.loads(x) for x in rd.metrics.read_text().splitlines()]
    assert [x["generation"] for x in lines] == list(range(1, 13))


def test_es_repairs_a_deliberately_bad_drift_on_cartpole(tmp_path):
    """ES from a bad LPO drift raises its normalised fitness on CartPole.

    The start is `relu(ppo + 0.5 (r - 1) A)` near r = 1 (w1 picks (r - 1) A twice, w2 sums
    it): a drift that cancels half of the policy-gradient incentive. Measured at 4096 steps
    (8 envs x 32 steps, 4 epochs of 4 minibatches), 8 selection seeds: PPO's drift returns 87,
    this one 22.7; slope 0.35 gives 31, 0.25 gives 142 at 8192 steps. 8 generations of 16
    (sigma 0.05, lr 0.02) bring the mean to 47.8 (seed 0; 80.5 with seed 1), driving w2's mean
    from +0.031 to below 0. The bound asks for 1.5x the start's return on fresh seeds.
    """
    import jax.numpy as jnp

    from metarl_cli.evaluation import evaluate
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_learned
    from metarl_cli.meta.es.loop import evolve
    from metarl_cli.meta.es.train import RLProblem, plan_es

    over = {"num_envs": 8, "num_steps": 32, "num_minibatches": 4, "update_epochs": 4}
    cfg = ESConfig(
        algo="lpo", envs=["classic/cartpole"], architecture={"hidden": 8}, popsize=16,
        num_generations=8, lr=0.02, lr_decay=1.0, noise_level=0.05, sigma_decay=1.0,
        eval_runs=0, select="final", timesteps=4096, overrides=over,
    )  # fmt: skip
    plan = plan_es(cfg, tmp_path / "es.safetensors", run_dir=None, resume=False, force=False)
    problem = RLProblem(plan)
    w1 = np.zeros((7, 8), np.float32)
    w1[2], w1[5] = -1.0, 1.0  # -(1 - r) A and log(r) A: each ~ (r - 1) A near r = 1
    bad = {"w1": jnp.asarray(w1), "w2": jnp.full((8, 1), 0.5 / 16, jnp.float32)}
    problem.start = bad  # ES starts from the bad drift instead of PPO's (theta = 0)
    result = evolve(cfg, problem)

    lpo = get_algorithm("lpo")
    scores = {}
    for name, theta in (("start", bad), ("evolved", result.mean)):
        path = tmp_path / f"{name}.safetensors"
        save_learned(path, lpo, theta, architecture={"hidden": 8})
        r = evaluate(str(path), ["classic/cartpole"], num_runs=8, timesteps=4096, overrides=over,
                     stream="selection")  # fmt: skip
        scores[name] = (
            r.envs[0].summary.mean / plan.train_configs["classic/cartpole"].ppo_normaliser
        )
    assert scores["start"] < 0.06  # the bad drift stalls learning (measured 0.048)
    assert scores["evolved"] > 1.5 * scores["start"], scores


# --- bad input: exit 2, one line, nothing written ----------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--popsize", "7"], "invalid popsize: must be even"),
        (["--algo", "lpx"], "did you mean lpo"),
        (["--envs", "cartpol"], "did you mean cartpole"),
        (["--envs", "cartpole,craftax"], "no PPO return normaliser"),
        (["--select", "best-eval", "--eval-runs", "0"], "--eval-runs"),
        (["--set", "num_minibatches=7"], "does not divide"),
        (["--strategy", "cmaes"], "strategy"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "x.safetensors"
    code, _, err = run(capsys, "train", "es", *TINY, *extra, "-o", str(out))
    assert code == 2 and err.startswith("error:") and err.strip().count("\n") == 0, err
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_refused_before_the_run(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "x.safetensors"
    code, _, err = run(capsys, "train", "es", *TINY, "-o", str(missing))
    assert code == 2 and "does not exist" in err and err.strip().count("\n") == 0
    code, _, err = run(capsys, "train", "es", *TINY, "-o", str(tmp_path))
    assert code == 2 and "is a directory" in err
    assert list(tmp_path.iterdir()) == []


def test_existing_output_and_run_dir_need_force_or_resume(lpo_run, tmp_path, capsys):
    code, _, err = run(capsys, "train", "es", *TINY, "-o", str(lpo_run))
    assert code == 2 and "--force" in err
    other = tmp_path / "other.safetensors"
    code, _, err = run(
        capsys,
        "train",
        "es",
        *TINY,
        "-o",
        str(other),
        "--run-dir",
        str(lpo_run.with_suffix(".run")),
    )
    assert code == 2 and "--resume" in err and not other.exists()


def test_resume_from_another_algorithms_run_dir_lists_the_differences(lpo_run, tmp_path, capsys):
    run_dir = lpo_run.with_suffix(".run")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    other = tmp_path / "nf.safetensors"
    argv = [*TINY, "--algo", "nofeat", "--popsize", "16", "--run-dir", str(run_dir)]
    code, _, err = run(capsys, "train", "es", *argv, "-o", str(other), "--resume")
    assert code == 2 and err.strip().count("\n") == 0
    assert "algo: 'lpo' -> 'nofeat'" in err and "popsize: 8 -> 16" in err
    assert not other.exists()
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_wandb_without_the_package_is_a_one_line_error(tmp_path, capsys):
    try:
        import wandb  # noqa: F401

        pytest.skip("wandb is installed")
    except ImportError:
        pass
    code, _, err = run(capsys, "train", "es", *TINY, "--wandb", "-o", str(tmp_path / "x.st"))
    assert code == 2 and "pip install wandb" in err and list(tmp_path.iterdir()) == []


def test_help_lists_train_es_without_importing_jax():
    code = (
        "import sys; from metarl_cli.cli.app import main\n"
        "try:\n    main(['train', 'es', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('JAX_IMPORTED' if 'jax' in sys.modules else 'NO_JAX')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "NO_JAX" in res.stdout and "--popsize" in res.stdout
