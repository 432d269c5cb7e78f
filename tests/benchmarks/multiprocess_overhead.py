"""Benchmark: ES generation time in one process and in several (`metarl launch`), and what
the exchange between processes costs per generation.

Run on purpose (not collected by pytest):

    python tests/benchmarks/multiprocess_overhead.py [--processes 2] [--generations 8]

Both runs train the same ES (LPO on CartPole, `--chunk 1`, so their results are identical:
checked here too) on the same machine: one process with as many CPU devices as cores, then
`metarl launch -n N` (each process `cores / N` devices). From each run's `metrics.jsonl` the
steady-state generation time (the median after the first, compiling, generation) is reported,
and for the multi-process run the exchange's share of it: `exchange_s` is the wall time of a
generation's fitness exchange minus its slowest process's own training time (posting the
population, reading it, replying, collecting). On one machine N processes share the cores, so
no speed-up is expected; the fraction is what a cluster pays on top of the slowest host.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ES = [
    "train", "es", "--algo", "lpo", "--envs", "cartpole", "--chunk", "1", "--eval-runs", "0",
    "--noise-level", "1.0", "--hsize", "8", "--set", "num_envs=4", "--set", "num_steps=16",
    "--set", "num_minibatches=2", "--set", "update_epochs=1",
]  # fmt: skip


def _run(argv: list[str], devices: int | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METARL_") or "CACHE" in k}
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    else:
        env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-m", "metarl_cli", *argv], env=env, text=True,
                          capture_output=True)  # fmt: skip
    if proc.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")


def _metrics(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--popsize", type=int, default=8)
    ap.add_argument("--timesteps", default="4096")
    ap.add_argument("-o", "--output", help="also write the numbers as JSON")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    common = [*ES, "--popsize", str(args.popsize), "--timesteps", args.timesteps,
              "--num-generations", str(args.generations)]  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        one, many = Path(d, "one.safetensors"), Path(d, "many.safetensors")
        _run([*common, "-o", str(one)], cores)
        _run(["launch", "-n", str(args.processes), "--", *common, "-o", str(many)], None)
        m1 = _metrics(one.with_suffix(".run") / "metrics.jsonl")
        mn = _metrics(many.with_suffix(".run") / "metrics.jsonl")
        from metarl_cli.artefacts import load_artefact

        same = load_artefact(one)[0].tensors_sha256 == load_artefact(many)[0].tensors_sha256
        same = same and [r["fitness_mean"] for r in m1] == [r["fitness_mean"] for r in mn]
    steady1 = statistics.median(r["gen_s"] for r in m1[1:])
    steadyn = statistics.median(r["gen_s"] for r in mn[1:])
    exchange = statistics.median(r["exchange_s"] for r in mn[1:])
    result = {
        "cores": cores,
        "processes": args.processes,
        "popsize": args.popsize,
        "timesteps": args.timesteps,
        "gen_s_one_process": round(steady1, 4),
        "gen_s_multi_process": round(steadyn, 4),
        "multi_over_one": round(steadyn / steady1, 3),
        "exchange_s": round(exchange, 4),
        "exchange_fraction": round(exchange / steadyn, 4),
        "fitness_identical": same,
    }
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
