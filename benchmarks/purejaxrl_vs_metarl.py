"""Benchmark: PureJaxRL's own `ppo.py` against metarl's PPO, run alternately on one machine.

    python benchmarks/purejaxrl_vs_metarl.py --setup     # once: PureJaxRL's venv, from PyPI
    python benchmarks/purejaxrl_vs_metarl.py --pairs 5 --cases cartpole breakout

Run it with metarl's Python (it reads metarl's presets). PureJaxRL runs in its own venv
(`purejaxrl/requirements.txt`) from the vendored `purejaxrl/ppo.py`, with PureJaxRL's config dict
filled in from metarl's preset, so both sides train the same hyperparameters. Every run is a
fresh process with a new, empty compilation-cache directory, timed by the same `_timing.py`
(compile, one warm-up call, timed call); the two sides alternate, P-M then M-P, and the table
gives each pair's ratios (metarl / PureJaxRL) and the medians. Nothing is downloaded at run time;
`--setup` needs PyPI only. CPU only (JAX_PLATFORMS=cpu, one device, for both sides).
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

HERE = Path(__file__).resolve().parent
PJRL = HERE / "purejaxrl"
DEFAULT_VENV = PJRL / ".venv"
# name: (metarl env id, budget per seed, gymnax id in gymnax 0.0.9, seeds)
CASES = {
    "cartpole": ("classic/cartpole", 5e5, "CartPole-v1", 1),
    "breakout": ("minatar/breakout", 1e6, "Breakout-MinAtar", 1),
    # Many seeds: PureJaxRL's way is `jit(vmap(train))` on one device; metarl's is its sharded
    # runner, one device per core (what `metarl evaluate` does).
    "cartpole8": ("classic/cartpole", 5e5, "CartPole-v1", 8),
}

# PureJaxRL's vmapped multi-seed program deadlocks on this jaxlib: flax's orthogonal initialiser
# (QR), vmapped over seeds, runs jaxlib's batched CPU QR kernel, whose `ParallelBatchMap` threads
# wait on each other (gdb; docs/benchmarks.md). Eigen's single-threaded mode avoids it, so its
# multi-seed side runs with this flag (metarl's initialiser has no QR and needs none).
PJRL_MULTI_SEED_FLAGS = "--xla_cpu_multi_thread_eigen=false"


def purejaxrl_config(env_id: str, timesteps: float, gymnax_id: str) -> dict:
    """PureJaxRL's config dict with metarl's preset values (network: 2 x 64 in both)."""
    try:
        from metarl_cli import build_config
    except ImportError:
        sys.exit("run this script with metarl's Python (e.g. .venv/bin/python)")

    cfg = build_config(env_id, timesteps=timesteps)
    if (cfg.hidden_size, cfg.num_hidden_layers) != (64, 2):
        sys.exit(f"{env_id}: ppo.py hard-codes a 2 x 64 network; the preset differs")
    return {
        "LR": cfg.lr,
        "NUM_ENVS": cfg.num_envs,
        "NUM_STEPS": cfg.num_steps,
        "TOTAL_TIMESTEPS": cfg.total_timesteps,
        "UPDATE_EPOCHS": cfg.update_epochs,
        "NUM_MINIBATCHES": cfg.num_minibatches,
        "GAMMA": cfg.gamma,
        "GAE_LAMBDA": cfg.gae_lambda,
        "CLIP_EPS": cfg.clip_eps,
        "ENT_COEF": cfg.ent_coef,
        "VF_COEF": cfg.vf_coef,
        "MAX_GRAD_NORM": cfg.max_grad_norm,
        "ACTIVATION": cfg.activation,
        "ENV_NAME": gymnax_id,
        "ANNEAL_LR": cfg.anneal_lr,
        "DEBUG": False,
    }


def setup(venv: Path) -> None:
    """Creates PureJaxRL's venv and installs the pinned requirements (PyPI)."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(PJRL / "requirements.txt")], check=True)


def child_env(cache_dir: str) -> dict[str, str]:
    """The same environment for both sides: CPU, one device (metarl's multi-seed side exposes
    every core itself), a cold cache of their own."""
    env = dict(os.environ)
    flags = [
        f
        for f in env.pop("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=cache_dir,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        METARL_CACHE_DIR=cache_dir,
    )
    return env


def run_side(cmd: list[str], timeout: float, xla_flags: str = "") -> dict:
    load = os.getloadavg()[0]  # other work on the machine, for the record
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        env = child_env(cache)
        if xla_flags:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {xla_flags}".strip()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            sys.exit(f"{cmd[1]} ran past --timeout {timeout:g} s")
    if proc.returncode != 0:
        sys.exit(f"{cmd[1]} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_before"], result["load_after"] = load, os.getloadavg()[0]
    if result["cache_entries_after"] == 0:  # both sides must pay the same cache writes
        sys.exit(f"{cmd[1]}: JAX wrote nothing to the compilation cache at {cache}")
    return result


def run_case(name: str, args: argparse.Namespace, python: Path) -> dict:
    env_id, steps, gymnax_id, seeds = CASES[name]
    steps = round(steps * args.scale)
    common = [str(args.seed), str(args.repeat), str(seeds)]
    config = json.dumps(purejaxrl_config(env_id, steps, gymnax_id))
    cmds = {
        "purejaxrl": [str(python), str(PJRL / "run_ppo.py"), config, *common],
        "metarl": [sys.executable, str(HERE / "run_metarl.py"), env_id, str(steps), *common],
    }
    pairs = []
    for i in range(args.pairs):
        order = ("purejaxrl", "metarl") if i % 2 == 0 else ("metarl", "purejaxrl")
        pair = {"order": order}
        for side in order:
            print(f"{name}: pair {i + 1}/{args.pairs}, {side}", file=sys.stderr, flush=True)
            flags = PJRL_MULTI_SEED_FLAGS if side == "purejaxrl" and seeds > 1 else ""
            pair[side] = run_side(cmds[side], args.timeout, flags)
        if pair["purejaxrl"]["env_steps"] != pair["metarl"]["env_steps"]:
            sys.exit(f"{name}: the two sides ran different step counts")
        pairs.append(pair)
    return {
        "case": name,
        "env_id": env_id,
        "gymnax_id": gymnax_id,
        "seeds": seeds,
        "pairs": pairs,
    }


def table(res: dict) -> str:
    """A Markdown table: each pair, then the medians (ratio medians are of the pair ratios)."""
    rows, cols = [], {k: [] for k in ("ps", "ms", "sr", "pc", "mc", "cr")}
    for i, pair in enumerate(res["pairs"], 1):
        p, m = pair["purejaxrl"], pair["metarl"]
        vals = {
            "ps": p["env_steps"] / p["run_s"],
            "ms": m["env_steps"] / m["run_s"],
            "pc": p["compile_s"],
            "mc": m["compile_s"],
        }
        vals["sr"], vals["cr"] = vals["ms"] / vals["ps"], vals["mc"] / vals["pc"]
        for k, v in vals.items():
            cols[k].append(v)
        order = "P, M" if pair["order"][0] == "purejaxrl" else "M, P"
        ret = f"{p['final_return']:.0f} / {m['final_return']:.0f}"
        rows.append((str(i), order, *_fmt(vals), ret))
    rows.append(("median", "", *_fmt({k: statistics.median(v) for k, v in cols.items()}), ""))
    p0 = res["pairs"][0]["purejaxrl"]
    runs = [pair[side] for pair in res["pairs"] for side in ("purejaxrl", "metarl")]
    loads = [r[k] for r in runs for k in ("load_before", "load_after")]
    head = (
        f"{res['gymnax_id']} ({res['env_id']} preset), {p0['env_steps']:,} env steps, "
        f"{res['seeds']} seed(s) (metarl on {len(res['pairs'][0]['metarl']['devices'])} "
        f"device(s), PureJaxRL on {len(p0['devices'])}), "
        f"{len(res['pairs'])} pairs; jax {p0['jax']} both sides; P = PureJaxRL, M = metarl; "
        f"1-min load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs"
    )
    cells = (
        "pair | order | P steps/s | M steps/s | M/P steps/s | P compile s | M compile s | "
        "M/P compile | final return P / M"
    )
    lines = [head, "", f"| {cells} |", "|" + "---|" * 9]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(v: dict) -> tuple[str, ...]:
    return (
        f"{v['ps']:,.0f}",
        f"{v['ms']:,.0f}",
        f"{v['sr']:.2f}x",
        f"{v['pc']:.2f}",
        f"{v['mc']:.2f}",
        f"{v['cr']:.2f}x",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setup", action="store_true", help="build PureJaxRL's venv, then exit")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="PureJaxRL's venv")
    ap.add_argument("--pairs", type=int, default=5, help="alternating pairs per case")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["cartpole", "breakout"])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply each case's budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="timed calls per run (best kept)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--output", "-o", type=Path, help="write every run's raw JSON here")
    args = ap.parse_args()
    if args.setup:
        setup(args.venv)
        return
    python = args.venv / "bin" / "python"
    if not python.exists():
        sys.exit(f"no PureJaxRL venv at {args.venv}: run with --setup first")
    if args.pairs < 1 or args.scale <= 0:
        sys.exit("--pairs must be >= 1 and --scale > 0")
    results = [run_case(name, args, python) for name in args.cases]
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    print("\n\n".join(table(r) for r in results))


if __name__ == "__main__":
    main()
