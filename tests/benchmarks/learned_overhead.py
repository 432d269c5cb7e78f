"""Benchmark: PPO with each learned algorithm in its slot against PPO-Adam, time and memory.

Run on purpose (not collected by pytest):

    python tests/benchmarks/learned_overhead.py [--env minatar/breakout] [--timesteps 1e6]
        [--seeds 2] [--repeat 3] [--only open,open_ff] [--memory [--one-program]]
        [--rss-every 10] [--json]

Time (default): every algorithm runs the same trainer, env, budget and seeds in this one
process (`--seeds` runs sharded one per CPU device, as `metarl evaluate` runs them), compiled
and warmed up once; then each round times every algorithm once, in alternating order
(forward, then reversed), and its ratio to PPO-Adam is taken within the round, so load from
other work shifts both sides alike. Reported: the median over rounds of the wall-time ratio,
and of the process CPU-time ratio (all threads; barely moved by other processes on the
machine, so the figure to trust on a loaded machine), next to the target with PASS/MISS.

Memory (`--memory`): each algorithm trains once in its own child process (so that peaks are
its own), with its resident memory sampled every `--rss-every` seconds: the peak, the RSS when
the run starts and ends, the growth over the run, and the slope over its second half (MiB per
minute, least squares over the samples taken while it runs; flat is ~0). The run goes through
`ProgressRunner`, in segments, as `metarl evaluate` and ES fitness run it; `--one-program`
runs it as one program instead (`ShardedRunner`), where the XLA:CPU growth of rl/progress.py
shows. Targets: peak <= 1.5x PPO-Adam's and flat.

Targets (issues 3 and 19): LPO <= 1.15x PPO, OPEN <= 2x PPO-Adam, OPEN-FF <= 1.6x, No Features
<= 1.3x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

TARGETS = {"lpo": 1.15, "open": 2.0, "open_ff": 1.6, "nofeat": 1.3}  # x PPO-Adam wall time
MEMORY_TARGET = 1.5  # peak RSS x PPO-Adam's


def _rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process (default: this one), MiB."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _trainer_and_theta(name: str, cfg):
    import jax

    from metarl_cli.envs import make_env
    from metarl_cli.learned.base import get_algorithm, slots_for
    from metarl_cli.rl.ppo import make_train
    from metarl_cli.rl.slots import Slots, Theta

    if name == "ppo":
        return make_train(cfg, make_env(cfg), Slots()), Theta()
    alg = get_algorithm(name)
    arch = alg.default_architecture(cfg.suite)
    theta = Theta.for_slot(alg.slot, alg.init(jax.random.key(0), **arch))
    return make_train(cfg, make_env(cfg), slots_for(alg, cfg, arch)), theta


def compiled_run(name: str, cfg, seeds: int) -> Callable[[], tuple[float, float]]:
    """Compiles and warms up `seeds` sharded runs; returns a function that times one call as
    (wall seconds of the run, CPU seconds of the whole call)."""
    import jax

    from metarl_cli.rl.parallel import ShardedRunner

    trainer, theta = _trainer_and_theta(name, cfg)
    runner, keys = ShardedRunner(trainer), jax.random.split(jax.random.key(0), seeds)
    runner(theta, keys)  # compile and warm up

    def timed() -> tuple[float, float]:
        cpu = time.process_time()
        _, timings = runner(theta, keys)
        return timings.run_s, time.process_time() - cpu

    return timed


def _names(only: str | None) -> list[str]:
    from metarl_cli.learned.base import ALGORITHMS, get_algorithm

    get_algorithm("lpo")  # registers the built-in algorithms
    # An update rule (LPG) replaces PPO's update: it has no PPO-Adam run to be compared with.
    slotted = [n for n in ALGORITHMS.names() if get_algorithm(n).slot != "update_rule"]
    names = ["ppo", *slotted]
    return names if not only else ["ppo", *[n for n in only.split(",") if n != "ppo"]]


def timing(args: argparse.Namespace, cfg) -> dict:
    """Alternating rounds in this process (module doc)."""
    runs = {name: compiled_run(name, cfg, args.seeds) for name in _names(args.only)}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(max(1, args.repeat)):
        for name in list(runs) if r % 2 == 0 else list(reversed(runs)):
            w, c = runs[name]()
            wall[name].append(w)
            cpu[name].append(c)
    rows = {}
    for name in runs:
        ratios = [t / p for t, p in zip(wall[name], wall["ppo"], strict=True)]
        cpu_ratios = [t / p for t, p in zip(cpu[name], cpu["ppo"], strict=True)]
        target = TARGETS.get(name)
        ratio = statistics.median(ratios)
        rows[name] = {
            "run_s": round(statistics.median(wall[name]), 2),
            "vs_ppo": round(ratio, 3),
            "vs_ppo_rounds": [round(x, 3) for x in ratios],
            "cpu_s": round(statistics.median(cpu[name]), 2),
            "cpu_vs_ppo": round(statistics.median(cpu_ratios), 3),
            "target": target,
            "verdict": None if target is None else ("PASS" if ratio <= target else "MISS"),
        }
    return rows


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, RSS) samples, MiB per s (0 for fewer than 2)."""
    if len(points) < 2:
        return 0.0
    ts, rs = [t for t, _ in points], [r for _, r in points]
    mt, mr = statistics.fmean(ts), statistics.fmean(rs)
    var = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (r - mr) for t, r in points) / var if var else 0.0


def memory_child(args: argparse.Namespace, cfg) -> dict:
    """One algorithm, one sharded training run, RSS sampled in a thread (module doc)."""
    import jax

    from metarl_cli.rl.parallel import ShardedRunner
    from metarl_cli.rl.progress import ProgressRunner

    trainer, theta = _trainer_and_theta(args.child, cfg)
    runner = ShardedRunner(trainer) if args.one_program else ProgressRunner(trainer)
    series: list[tuple[float, float]] = []
    phase: dict[str, float] = {}
    done = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not done.is_set():
            series.append((round(time.perf_counter() - t0, 1), round(_rss_mib(), 1)))
            done.wait(args.rss_every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()

    def on_phase(name: str) -> None:
        phase[name] = time.perf_counter() - t0
        series.append((round(phase[name], 1), round(_rss_mib(), 1)))

    keys = jax.random.split(jax.random.key(0), args.seeds)
    _, timings = runner(theta, keys, on_phase)
    end = (round(time.perf_counter() - t0, 1), round(_rss_mib(), 1))
    done.set()
    thread.join()
    running = [(t, r) for t, r in series if t >= phase["running"]]  # samples while it runs
    start_rss = running[0][1]
    minutes = max(end[0] - running[0][0], 1e-9) / 60
    half = [(t, r) for t, r in running if t >= (running[0][0] + end[0]) / 2]  # the 2nd half
    return {
        "run_s": round(timings.run_s, 1),
        "peak_mib": max(r for _, r in [*series, end]),
        "rss_at_run_start_mib": start_rss,
        "rss_at_run_end_mib": end[1],
        "growth_mib_per_min": round((end[1] - start_rss) / minutes, 1),
        "late_growth_mib_per_min": round(60 * _slope(half), 1),
        "series": [*series, end],
    }


def memory(args: argparse.Namespace) -> dict:
    """Each algorithm in its own child process; peaks against PPO-Adam's."""
    rows = {}
    for name in _names(args.only):
        cmd = [sys.executable, __file__, "--child", name, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows[name] = json.loads(out.strip().splitlines()[-1])
        brief = {k: v for k, v in rows[name].items() if k != "series"}
        print(f"{name}: {brief}", file=sys.stderr, flush=True)  # as each one finishes
    for row in rows.values():
        row["peak_vs_ppo"] = round(row["peak_mib"] / rows["ppo"]["peak_mib"], 3)
        row["verdict"] = "PASS" if row["peak_vs_ppo"] <= MEMORY_TARGET else "MISS"
    return rows


def _print(args: argparse.Namespace, cfg, rows: dict) -> None:
    head = (
        f"{cfg.env_id}, {cfg.env_steps:,} env steps, {args.seeds} seed(s), load {os.getloadavg()}"
    )
    if args.memory:
        print(head + f", RSS every {args.rss_every} s")
        print(
            f"{'algorithm':<10} {'run s':>7} {'peak MiB':>9} {'x PPO':>7} {'MiB/min':>8} "
            f"{'2nd half':>8}  verdict"
        )
        for name, r in rows.items():
            print(
                f"{name:<10} {r['run_s']:>7.1f} {r['peak_mib']:>9.0f} {r['peak_vs_ppo']:>6.2f}x "
                f"{r['growth_mib_per_min']:>8.1f} {r['late_growth_mib_per_min']:>8.1f}  "
                f"{r['verdict']}"
            )
        return
    print(head + f", median of {args.repeat} rounds")
    print(
        f"{'algorithm':<10} {'run s':>7} {'x PPO':>7} {'CPU x':>7} {'target':>8}  verdict  rounds"
    )
    for name, r in rows.items():
        target = f"<= {r['target']:.2f}" if r["target"] is not None else "-"
        rounds = ", ".join(f"{x:.2f}" for x in r["vs_ppo_rounds"])
        print(
            f"{name:<10} {r['run_s']:>7.2f} {r['vs_ppo']:>6.2f}x {r['cpu_vs_ppo']:>6.2f}x "
            f"{target:>8}  {r['verdict'] or '-':<7}  {rounds}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="minatar/breakout")
    parser.add_argument("--timesteps", default="1e6", help="per run (the preset's is 1e7)")
    parser.add_argument("--seeds", type=int, default=2, help="runs, one per CPU device")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (median kept)")
    parser.add_argument("--only", help="comma-separated algorithms (PPO-Adam always runs)")
    parser.add_argument("--memory", action="store_true", help="peak and growth of RSS instead")
    parser.add_argument("--rss-every", type=float, default=10.0, help="RSS sampling period, s")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--one-program", action="store_true", help="memory: one program per run, not segments"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from metarl_cli.rl.parallel import expose_cpu_cores

    expose_cpu_cores()  # one device per core, as the CLI (before JAX is imported)
    from metarl_cli.config import build_config

    cfg = build_config(args.env, timesteps=args.timesteps)
    if args.child:
        print(json.dumps(memory_child(args, cfg)))
        return
    rows = memory(args) if args.memory else timing(args, cfg)
    if args.json:
        meta = {"env": cfg.env_id, "env_steps": cfg.env_steps, "seeds": args.seeds}
        print(json.dumps({**meta, "load": os.getloadavg(), "rows": rows}, indent=2))
        return
    _print(args, cfg, rows)


if __name__ == "__main__":
    main()
