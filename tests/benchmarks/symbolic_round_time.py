"""Benchmark: wall time of a symbolic distillation round, LPO (3 inputs) vs OPEN-FF (20 inputs).

Run on purpose (not collected by pytest):

    python tests/benchmarks/symbolic_round_time.py [--rounds 3] [--population 1000]

Teachers are random networks (LPO: weights ~ N(0, 0.1^2); OPEN-FF: flax's initialisers). Each
case runs `--rounds` warm-started Operon rounds of `--iterations` generations on batches of
5000 rows (no RL evaluation) and reports, per round, the search time (Operon), the selection
time (scoring the population, round trip of the chosen program), the search's CPU time (less
sensitive than wall time to other processes on a shared machine) and the normalised error of
the most accurate program (L2 / mean(target^2)).

Cases at the same search settings (population, generations, max size 40, depth 8, one
operator set): `lpo` (3 inputs), `open_ff` (20 inputs), and `lpo-python-loss` (3 inputs, the
drift scored inside the search by a Python objective on the r = 1 corrected drift, the path
`--grad-loss` uses; the default LPO path uses Operon's C++ L2 and corrects at export).
With `--defaults`, each algorithm at its CLI defaults (Table 10 mapped: LPO population 1000 /
size 40; OPEN-FF population 5000 / size 60).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

OPERATORS = ["add", "sub", "mul", "div", "min", "max", "square", "tanh", "abs", "exp"]


def _teachers(tmp: Path) -> dict[str, Path]:
    import jax

    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_learned

    lpo, off = get_algorithm("lpo"), get_algorithm("open_ff")
    k1, k2 = jax.random.split(jax.random.key(1))
    theta = {
        "w1": 0.1 * jax.random.normal(k1, (7, 128)),
        "w2": 0.1 * jax.random.normal(k2, (128, 1)),
    }
    save_learned(tmp / "lpo.safetensors", lpo, theta, architecture={"hidden": 128})
    arch = {"hidden": 16, "gru": 8}
    save_learned(
        tmp / "off.safetensors", off, off.init(jax.random.key(0), **arch), architecture=arch
    )
    return {"lpo": tmp / "lpo.safetensors", "open_ff": tmp / "off.safetensors"}


def run_case(name: str, path: Path, args, **overrides) -> dict:
    from metarl_cli.meta.symbolic.backends import FitTask, Objective
    from metarl_cli.meta.symbolic.data import load_teacher
    from metarl_cli.meta.symbolic.operon import OperonBackend
    from metarl_cli.meta.symbolic.problem import best_gain, choose, make_problem, score
    from metarl_cli.meta.symbolic.search import default_config

    teacher = load_teacher(path)
    values = {"iterations": args.iterations, "num_runs": 0, "threads": args.threads}
    if not args.defaults:
        values.update(population=args.population, max_size=40, max_depth=8, operators=OPERATORS)
    values.update(overrides)
    cfg = default_config(teacher, **values)
    t0 = time.perf_counter()
    problem = make_problem(cfg, teacher)
    data_s = time.perf_counter() - t0
    backend, population = OperonBackend(), None
    order = np.random.default_rng(0).permutation(len(problem.data))
    rounds = []
    for k in range(args.rounds):
        batch = problem.data.take(order[k * cfg.batch_size : (k + 1) * cfg.batch_size])
        task = problem.task(batch)
        if name == "lpo-python-loss":  # the corrected drift scored by a Python objective
            drift, x0 = batch.drift / np.float32(problem.scale), problem.at_one(batch.x)

            def loss(o, drift=drift):
                return best_gain(o["x"] - o["x0"], None, None, drift)[1]

            objective = Objective({"x": batch.x, "x0": x0}, loss)
            task = FitTask(batch.x, drift, batch.names, objective)
        t1, c1 = time.perf_counter(), time.process_time()
        result = backend.fit_round(task, cfg.settings(), population, seed=k + 1)
        t2, c2 = time.perf_counter(), time.process_time()
        population = result.population
        scored = score(problem, result.candidates)
        chosen = choose(problem, scored, require_valid=False)
        t3 = time.perf_counter()
        target = problem.selection.drift if problem.lpo else problem.selection.y
        rounds.append(
            {
                "round": k + 1,
                "search_s": round(t2 - t1, 2),
                "search_cpu_s": round(c2 - c1, 2),
                "select_s": round(t3 - t2, 2),
                "evaluations": result.evaluations,
                "nmse": None if chosen is None else chosen["l2"] / float(np.mean(target**2)),
                "size": None if chosen is None else chosen["complexity"],
            }
        )
        print(name, json.dumps(rounds[-1]), flush=True)
    return {
        "case": name,
        "inputs": len(problem.data.names),
        "population": cfg.population,
        "max_size": cfg.max_size,
        "generations": cfg.iterations,
        "threads": cfg.threads,
        "data_points": len(problem.data),
        "data_s": round(data_s, 1),
        "median_search_s": float(np.median([r["search_s"] for r in rounds])),
        "median_search_cpu_s": float(np.median([r["search_cpu_s"] for r in rounds])),
        "median_select_s": float(np.median([r["select_s"] for r in rounds])),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--defaults", action="store_true", help="each algorithm's defaults")
    parser.add_argument("--cases", default="lpo,open_ff")
    args = parser.parse_args()
    print("load average before:", os.getloadavg(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        teachers = _teachers(Path(tmp))
        results = []
        for case in args.cases.split(","):
            path = teachers["lpo" if case.startswith("lpo") else case]
            results.append(run_case(case, path, args))
    print("load average after:", os.getloadavg())
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
