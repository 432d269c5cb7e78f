"""Benchmark: the cost of a distillation epoch against an ES generation, and distillation's
fidelity (held-out error, RL return of teacher vs student).

Run on purpose (not collected by pytest):

    python tests/benchmarks/distil_vs_es.py timing   [--popsize 64] [--only lpo,open]
    python tests/benchmarks/distil_vs_es.py fidelity [--steps 1e5] [--runs 16]

`timing`, per algorithm at its Table 8 size:
* `distil_epoch_s`: one distillation epoch at the CLI defaults (1000 Adam steps of 2048
  synthetic points; recurrent OPEN: sequences of 100 or 20 steps), timed over `--iters` steps
  after a compiling run of as many, scaled to 1000 (a step's time does not change);
* `es_generation_s`: one ES generation at the same algorithm and size: `PopulationFitness`
  (meta/es/fitness.py) over popsize x 1 PPO runs of `--cartpole-steps` / `--minatar-steps` env
  steps (the generation's cost; ask/tell are negligible), after a compiling generation;
  `es_generation_preset_s` scales it linearly to the env preset's budget (a PPO run is a scan:
  time is linear in its length);
* `eval_8_seeds_preset_s`: the RL evaluation that selection adds per evaluated epoch (8 seeds
  at the preset budget) = 8/popsize of a generation.

`fidelity`: distils fixed teachers (`--epochs` / `--open-epochs` x 1000 steps of 2048 at lr
0.02, selection by held-out loss so that only fidelity is measured), then evaluates teacher and
students with
`evaluate` on the teacher's env at a small budget (`--runs` seeds each): an LPO teacher with a
random learned term on CartPole, and the released Asterix OPEN (recurrent, short rollouts).

Prints one JSON line per measurement and `uptime` first (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

OPEN_NPY = str(Path(__file__).resolve().parents[1] / "data/asterix_OPEN.npy")  # tests/data


def _epoch_seconds(alg, arch, problem_kwargs, iters, batch=2048):
    import jax

    from metarl_cli.meta.distil.fit import Fitter, make_optimiser, run_epoch
    from metarl_cli.meta.distil.problems import make_problem

    problem = make_problem(alg, **problem_kwargs)
    teacher = problem.init_student(jax.random.key(1), arch)
    params = problem.init_student(jax.random.key(0), arch)
    key = tuple(sorted(arch.items()))
    fitter = Fitter(problem, key, key, batch)
    opt = make_optimiser(10 * iters)
    state = opt.init(params)
    times = []
    for epoch in range(2):  # the first compiles
        t = time.perf_counter()
        params, state, _ = run_epoch(
            fitter, opt, 0.02, params, state, teacher, jax.random.key(2), epoch * iters, iters
        )
        times.append(time.perf_counter() - t)
    return times


def _generation_seconds(alg, arch, env, steps, popsize):
    import jax

    from metarl_cli.config import build_config
    from metarl_cli.envs import make_env
    from metarl_cli.learned.base import slots_for
    from metarl_cli.meta.es.fitness import PopulationFitness
    from metarl_cli.rl.ppo import make_train

    tc = build_config(env, timesteps=steps)
    preset = build_config(env)
    fitness = PopulationFitness(make_train(tc, make_env(tc), slots_for(alg, tc, arch)), alg.slot)
    template = alg.init(jax.random.key(0), **arch)
    times = []
    for g in range(2):
        leaves, treedef = jax.tree.flatten(template)
        keys = jax.random.split(jax.random.key(g), len(leaves))
        noisy = [
            x + 0.03 * jax.random.normal(k, (popsize, *x.shape))
            for x, k in zip(leaves, keys, strict=True)
        ]
        pop = jax.tree.unflatten(treedef, noisy)
        t = time.perf_counter()
        fitness(pop, jax.random.split(jax.random.key(10 + g), 1))
        times.append(time.perf_counter() - t)
    return times, tc.env_steps, preset.env_steps


def timing(args):
    from metarl_cli.learned.base import get_algorithm

    cases = [
        ("lpo", {"hidden": 128}, {}, "classic/cartpole"),
        ("lpo", {"hidden": 128}, {}, "minatar/breakout"),
        ("open_ff", {"hidden": 32, "gru": 16}, {}, "minatar/breakout"),
        ("nofeat", {"hidden": 16}, {}, "minatar/breakout"),
        ("open", {"hidden": 32, "gru": 16}, {"seq_len": 100}, "minatar/breakout"),
        ("open", {"hidden": 32, "gru": 16}, {"seq_len": 20}, "minatar/breakout"),
    ]
    for name, arch, kw, env in cases:
        if args.only and name not in args.only.split(","):
            continue
        alg = get_algorithm(name)
        _, d_warm = _epoch_seconds(alg, arch, kw, args.iters)
        d_warm *= 1000 / args.iters  # per epoch of 1000 steps (a step's time is constant)
        row = {"algo": name, "arch": arch, **kw, "distil_epoch_s": round(d_warm, 2)}
        row["measured_steps"] = args.iters
        if kw.get("seq_len") != 20:  # the ES generation does not depend on the rollout length
            es_steps = args.cartpole_steps if env.startswith("classic") else args.minatar_steps
            (g_first, g_warm), steps, preset = _generation_seconds(
                alg, arch, env, es_steps, args.popsize
            )
            scale = preset / steps
            row.update(
                env=env,
                popsize=args.popsize,
                es_steps_per_run=steps,
                es_generation_s=round(g_warm, 2),
                es_first_generation_s=round(g_first, 2),
                es_generation_preset_s=round(g_warm * scale, 1),
                eval_8_seeds_preset_s=round(g_warm * scale * 8 / args.popsize, 1),
                generation_over_epoch=round(g_warm / d_warm, 2),
                preset_generation_over_epoch=round(g_warm * scale / d_warm, 1),
            )
        print(json.dumps(row), flush=True)


def fidelity(args):
    from metarl_cli.cli.app import main
    from metarl_cli.evaluation import evaluate
    from metarl_cli.meta.distil import distil, plan_distil

    tmp = Path(tempfile.mkdtemp(prefix="distil-bench-"))
    lpo = tmp / "lpo.safetensors"
    _save_lpo_teacher(lpo)
    asterix = tmp / "asterix.safetensors"
    assert main(["import", "open", OPEN_NPY, "-o", str(asterix)]) == 0
    cases = [(lpo, "same", {}, args.steps, args.epochs)]
    cases += [(lpo, "smaller", {}, args.steps, args.epochs)]
    cases += [(asterix, "same", {"rollout": "short"}, args.open_steps, args.open_epochs)]
    evaluated = {}
    for teacher, size, kw, steps, epochs in cases:
        out = tmp / f"{teacher.stem}-{size}.safetensors"
        t = time.perf_counter()
        plan = plan_distil(
            teacher, out, size=size, lrs=[0.02], epochs=epochs, iters=1000, num_runs=0, **kw
        )
        res = distil(plan)
        wall = time.perf_counter() - t
        env = plan.teacher_manifest.training_envs[0]
        row = {"teacher": teacher.name, "size": size, **kw, "distil_wall_s": round(wall, 1)}
        row["rel_l2"] = round(res.manifest.meta_learner.config["chosen"]["rel_l2"], 4)
        for label, path in (("teacher", teacher), ("student", out)):
            key = (str(path), env)
            if key not in evaluated:
                r = evaluate(str(path), [env], num_runs=args.runs, timesteps=steps).envs[0]
                s = r.summary
                evaluated[key] = {
                    "mean": round(s.mean, 2),
                    "iqm": round(s.iqm, 2),
                    "iqm_ci": [round(s.iqm_ci_low, 2), round(s.iqm_ci_high, 2)],
                    "std": round(float(_std(r.final_returns)), 2),
                }
            row[f"{label}_return"] = evaluated[key]
        row.update(env=env, steps=steps, runs=args.runs)
        print(json.dumps(row), flush=True)


def _std(values):
    import numpy as np

    v = np.array([x for x in values if x is not None], dtype=float)
    return v.std(ddof=1) if v.size > 1 else float("nan")


def _save_lpo_teacher(path):
    import jax
    import jax.numpy as jnp

    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_learned

    k1, k2 = jax.random.split(jax.random.key(1))
    theta = {
        "w1": jax.random.normal(k1, (7, 128)) / jnp.sqrt(7.0),
        "w2": 0.3 * jax.random.normal(k2, (128, 1)) / jnp.sqrt(128.0),
    }
    save_learned(
        path, get_algorithm("lpo"), theta, architecture={"hidden": 128},
        meta_learner=MetaLearnerInfo(name="es"), training_envs=["classic/cartpole"],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["timing", "fidelity"])
    parser.add_argument("--popsize", type=int, default=64)
    parser.add_argument("--iters", type=int, default=200, help="timing: steps measured")
    parser.add_argument("--cartpole-steps", type=float, default=1e5)
    parser.add_argument("--minatar-steps", type=float, default=32768)
    parser.add_argument("--only", default="", help="timing: comma-separated algorithms")
    parser.add_argument("--steps", type=float, default=1e5, help="fidelity: CartPole budget")
    parser.add_argument("--open-steps", type=float, default=2e5, help="fidelity: Asterix budget")
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5, help="fidelity: LPO epochs")
    parser.add_argument("--open-epochs", type=int, default=3, help="fidelity: OPEN epochs")
    args = parser.parse_args()
    _uptime()
    from metarl_cli.rl.parallel import enable_compilation_cache

    enable_compilation_cache()
    (timing if args.what == "timing" else fidelity)(args)
    _uptime()


def _uptime() -> None:
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps({"uptime": up}), flush=True)


if __name__ == "__main__":
    main()
