"""Seeds that select a checkpoint are never seeds that meta-test it (`metarl_cli/seeds.py`).

Every meta-learner's scoring path (ES fitness and `--select best-eval`, distillation's
checkpoint scores, symbolic distillation's RL scores, discover's fitness jobs) runs with the
sharded runner replaced by a fake that records the keys it is given and returns a value
computed from each key; those keys are compared with the keys `evaluate` meta-tests with for
the same seed and run count. A pure check then shows the streams disjoint over seeds 0..20 and
up to 64 runs. Last, a missing normaliser is an error wherever several envs are averaged.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from metarl_cli import seeds
from metarl_cli.errors import ConfigError, EvaluationError

ENV = "classic/cartpole"
SMALL = {"num_envs": 4, "num_steps": 16, "num_minibatches": 2, "update_epochs": 1}
CASES = [(0, 8), (3, 2)]  # (seed, runs): the defaults of distil and ES, and a small one


def key_rows(keys) -> list[tuple[int, int]]:
    import jax

    data = np.asarray(jax.random.key_data(keys)).reshape(-1, 2)
    return [(int(a), int(b)) for a, b in data]


def fake_returns(keys) -> np.ndarray:
    """A final return per run that depends on the run's key alone."""
    rows = np.array(key_rows(keys), dtype=np.int64)
    return 100.0 + ((rows[:, 0] * 7919 + rows[:, 1] * 104729) % 1000) / 10.0


@pytest.fixture
def runs(monkeypatch):
    """Replaces the sharded runner and ES's population fitness; returns the keys log."""
    from metarl_cli.meta.es import fitness
    from metarl_cli.rl import parallel, progress

    log: list[list[tuple[int, int]]] = []

    class FakeRunner:
        def __init__(self, trainer, mesh=None, chunk=None, on_progress=None) -> None:
            del trainer, mesh, chunk, on_progress

        def __call__(self, theta, keys, on_phase=None):
            log.append(key_rows(keys))
            r = fake_returns(keys)
            n = r.shape[0]
            out = SimpleNamespace(
                final_return=r, final_episodes=np.ones(n, int), curve=r[:, None],
                curve_episodes=np.ones((n, 1), int), losses=np.zeros((n, 3)),
            )  # fmt: skip
            return out, parallel.RunTimings(compile_s=0.0, run_s=1.0)

    class FakePopulation:
        def __init__(self, trainer, slot, devices=None, chunk=None) -> None:
            del trainer, slot, devices, chunk

        def __call__(self, population, keys):
            import jax

            popsize, rollouts = jax.tree.leaves(population)[0].shape[0], keys.shape[0]
            return self.runs(population, keys, np.arange(popsize * rollouts)).reshape(
                popsize, rollouts
            )

        def runs(self, population, keys, runs):
            picked = keys[runs % keys.shape[0]]  # run i trains with key i % rollouts
            log.append(key_rows(picked))
            return fake_returns(picked)

    monkeypatch.setattr(progress, "ProgressRunner", FakeRunner)  # what `evaluate` runs
    monkeypatch.setattr(fitness, "PopulationFitness", FakePopulation)
    return log


@pytest.fixture(scope="module")
def artefact(tmp_path_factory) -> Path:
    import jax

    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_learned

    alg = get_algorithm("lpo")
    path = tmp_path_factory.mktemp("streams") / "lpo.safetensors"
    theta = alg.init(jax.random.key(1), hidden=4)
    save_learned(path, alg, theta, architecture={"hidden": 4},
                 meta_learner=MetaLearnerInfo(name="es"), training_envs=[ENV])  # fmt: skip
    return path


def meta_test_keys(runs, artefact, seed, n) -> set[tuple[int, int]]:
    """The keys `evaluate` (the library call behind `metarl evaluate`) trains with."""
    from metarl_cli.evaluation import evaluate

    before = len(runs)
    result = evaluate(str(artefact), [ENV], num_runs=n, seed=seed, timesteps=512, overrides=SMALL)
    assert result.stream == "meta_test"
    (keys,) = runs[before:]
    return set(keys)


# --- the streams themselves ---------------------------------------------------------------------


def test_streams_are_disjoint_over_seeds_and_run_counts():
    """Seeds 0..20, up to 64 runs; ES fitness over 64 generations of up to 64 rollouts."""
    by_stream: dict[str, set] = {s: set() for s in seeds.STREAM_IDS}
    total = 0
    for seed in range(21):
        for stream in (seeds.META_TEST, seeds.SELECTION):
            full = seeds.run_key_data(stream, seed, 64)
            for n in (1, 2, 8, 63):  # fewer runs are a prefix: no run count escapes the check
                np.testing.assert_array_equal(seeds.run_key_data(stream, seed, n), full[:n])
            by_stream[stream] |= {tuple(r) for r in full.tolist()}
            total += 64
        for rollouts in (1, 4, 64):
            for g in range(64):
                rows = seeds.run_key_data(seeds.ES_FITNESS, seed, rollouts, start=g * rollouts)
                by_stream[seeds.ES_FITNESS] |= {tuple(r) for r in rows.tolist()}
    meta_test = by_stream[seeds.META_TEST]
    assert len(meta_test) + len(by_stream[seeds.SELECTION]) == total  # no two runs share a key
    assert not meta_test & by_stream[seeds.SELECTION]
    assert not meta_test & by_stream[seeds.ES_FITNESS]
    assert not by_stream[seeds.SELECTION] & by_stream[seeds.ES_FITNESS]
    # No stream key is a plain `jax.random.key(seed)` either (its first word is 0).
    assert all(first >> 24 for stream in by_stream.values() for first, _ in stream)


def test_the_jax_keys_are_the_documented_words():
    import jax

    keys = seeds.run_keys(seeds.SELECTION, 7, 3, start=5)
    assert key_rows(keys) == [(2 << 24 | i, 7) for i in (5, 6, 7)]
    assert jax.random.split(keys[0]).shape == (2,)  # ordinary threefry keys downstream


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5])
def test_seeds_outside_the_stream_domain_are_refused(bad):
    with pytest.raises(ConfigError, match="--seed"):
        seeds.run_key_data(seeds.META_TEST, bad, 4)
    with pytest.raises(ConfigError, match="past"):
        seeds.run_key_data(seeds.ES_FITNESS, 0, 2, start=seeds.MAX_RUNS - 1)


# --- every selection path, captured at the runner -----------------------------------------------


@pytest.mark.parametrize("seed,n", CASES)
def test_distil_scores_on_selection_seeds_and_evaluate_reproduces_it_there(runs, artefact, seed, n):
    from metarl_cli.artefacts import load_artefact
    from metarl_cli.config import build_config
    from metarl_cli.evaluation import evaluate
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.meta.distil.scoring import RLScorer

    alg = get_algorithm("lpo")
    cfg = build_config(ENV, timesteps=512, overrides=SMALL)
    _, tensors = load_artefact(artefact)
    scored = RLScorer(alg, [cfg], n, seed)(tensors, {"hidden": 4})
    selection = set(runs[-1])
    assert selection == set(key_rows(seeds.run_keys(seeds.SELECTION, seed, n)))
    assert not selection & meta_test_keys(runs, artefact, seed, n)
    # The recorded score is what evaluating on the selection stream gives, and not what
    # `metarl evaluate` reports on its default stream.
    again = evaluate(str(artefact), [ENV], num_runs=n, seed=seed, timesteps=512,
                     overrides=SMALL, stream="selection")  # fmt: skip
    assert again.stream == "selection"
    assert again.envs[0].summary.mean == pytest.approx(scored["score"])
    default = evaluate(str(artefact), [ENV], num_runs=n, seed=seed, timesteps=512, overrides=SMALL)
    assert default.envs[0].summary.mean != pytest.approx(scored["score"])


@pytest.mark.parametrize("seed,n", CASES[:1])
def test_es_fitness_and_best_eval_never_use_meta_test_seeds(runs, artefact, tmp_path, seed, n):
    from metarl_cli.meta.es.config import ESConfig
    from metarl_cli.meta.es.train import plan_es, train_es

    cfg = ESConfig(
        algo="lpo", envs=[ENV], architecture={"hidden": 4}, popsize=4, num_generations=2,
        num_rollouts=2, save_every_k=1, eval_runs=n, select="best-eval", timesteps=512,
        overrides=SMALL, seed=seed,
    )  # fmt: skip
    plan = plan_es(cfg, tmp_path / "es.safetensors", run_dir=None, resume=False, force=False)
    manifest, _ = train_es(plan)
    # generation 1: fitness, evaluation; generation 2: fitness, evaluation
    fit = [set(runs[0]), set(runs[2])]
    evals = [set(runs[1]), set(runs[3])]
    for g in range(2):
        assert fit[g] == set(key_rows(seeds.es_fitness_keys(seed, g, 2)))
        assert evals[g] == set(key_rows(seeds.run_keys(seeds.SELECTION, seed, n)))
    meta_test = meta_test_keys(runs, artefact, seed, n)
    assert not meta_test & (fit[0] | fit[1] | evals[0])
    config = manifest.meta_learner.config
    assert config["selection_seeds"] == {"seed": seed, "stream": "selection", "num_runs": n}
    assert config["fitness_seeds"] == {"seed": seed, "stream": "es_fitness", "num_runs": 2}


@pytest.mark.parametrize("seed,n", CASES)
def test_symbolic_rl_scores_use_selection_seeds(runs, artefact, seed, n):
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.meta.symbolic.config import default_config
    from metarl_cli.meta.symbolic.search import rl_evaluate

    teacher = SimpleNamespace(name="lpo", digest="0" * 64, algorithm=get_algorithm("lpo"))
    cfg = default_config(teacher, envs=[ENV], num_runs=n, seed=seed, timesteps=512,
                         overrides=SMALL)  # fmt: skip
    rl_evaluate(cfg, artefact)
    selection = set(runs[-1])
    assert selection == set(key_rows(seeds.run_keys(seeds.SELECTION, seed, n)))
    assert not selection & meta_test_keys(runs, artefact, seed, n)


@pytest.mark.parametrize("seed,n", CASES)
def test_discover_fitness_jobs_run_on_selection_seeds(runs, artefact, monkeypatch, tmp_path,
                                                      seed, n):  # fmt: skip
    """The job `fitness_job` builds, run by the sandbox's `fitness` worker in-process (with the
    fake runner; a neural artefact stands in for an exported candidate)."""
    from metarl_cli.meta.llm import candidate
    from metarl_cli.meta.llm.config import DiscoverConfig
    from metarl_cli.meta.llm.loop import plan_discover
    from metarl_cli.meta.llm.sandbox_runner import fitness

    jobs = []
    monkeypatch.setattr(candidate, "run_job", lambda job, *a, **k: jobs.append(job) or {})
    monkeypatch.setattr(candidate, "candidate_artefact", lambda *a: artefact.read_bytes())
    cfg = DiscoverConfig(algo="lpo", envs=[ENV], base_url="http://127.0.0.1:9/v1",
                         num_runs=n, seed=seed, timesteps=512, overrides=SMALL)  # fmt: skip
    candidate.fitness_job(plan_discover(cfg, tmp_path / "x.safetensors"), "x", "", None)
    (job,) = jobs
    assert (job["stream"], job["seed"], job["num_runs"]) == ("selection", seed, n)
    fitness({**job, "temp": str(tmp_path)})
    child = set(runs[-1])
    assert child == set(key_rows(seeds.run_keys(seeds.SELECTION, seed, n)))
    assert not child & meta_test_keys(runs, artefact, seed, n)


def test_reports_refuse_results_on_the_selection_stream(runs, artefact, capsys):
    from metarl_cli.analysis.collect import check_comparable
    from metarl_cli.cli.app import main
    from metarl_cli.evaluation import evaluate

    result = evaluate(str(artefact), [ENV], num_runs=2, timesteps=512, overrides=SMALL,
                      stream="selection")  # fmt: skip
    with pytest.raises(EvaluationError, match="'selection' seed stream"):
        check_comparable([SimpleNamespace(path=Path("r.json"), result=result)])
    assert main(["evaluate", "ppo", "--stream", "nope", "-n", "2"]) == 2
    assert "unknown seed stream 'nope'" in capsys.readouterr().err


# --- normalisers: the one rule ------------------------------------------------------------------


def test_a_missing_normaliser_is_an_error_wherever_envs_are_averaged():
    from metarl_cli.meta.distil.scoring import combine
    from metarl_cli.meta.es.fitness import combine_fitness
    from metarl_cli.meta.normalisers import divisors

    assert divisors({"a": None}) == {"a": 1.0}  # one env: the raw return ranks the same
    assert divisors({"a": 2.0, "b": 4.0}) == {"a": 2.0, "b": 4.0}
    with pytest.raises(ConfigError, match="no PPO return normaliser for b"):
        divisors({"a": 2.0, "b": None})
    with pytest.raises(ConfigError, match="must be positive"):
        divisors({"a": 0.0})
    returns = {"a": np.ones((2, 1)), "b": np.ones((2, 1))}
    with pytest.raises(ConfigError, match="normaliser for b"):
        combine_fitness(returns, {"a": 2.0})
    with pytest.raises(ConfigError, match="normaliser for b"):
        combine({"a": 1.0, "b": 2.0}, {"a": 2.0, "b": None})
    assert combine({"a": 3.0}, {}) == 3.0
