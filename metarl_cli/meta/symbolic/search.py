"""Symbolic distillation in rounds (paper §4.4, Table 10): search, select, check, evaluate.

Each round warm-starts the backend from the previous round's population, runs `iterations`
generations on a fresh batch of `batch_size` rows of the teacher data, then

1. scores every distinct program of the population on a fixed selection set (the L2 error of
   what would be exported, in the target's units) and keeps the Pareto front (size vs L2) in
   the run directory;
2. takes the most accurate program (lowest L2, as the paper recommends over PySR's score),
   exports it and checks the round trip (the compiled JAX kernel against the backend's own
   predictions on held-out inputs, to 1e-5 relative); a program failing it is skipped;
3. writes it as an artefact and evaluates it in RL on the teacher's training envs.

LPO programs vanish at r = 1 by construction: every program is scored and exported as
`f(log_r, r_minus_1, A) - f(0, 0, A)` (through `relu`, as the drift slot applies it); with
`grad_loss` the search's loss compares its finite-difference derivative in r with the
teacher's. The output is the most accurate program over all rounds (for LPO, among those
passing the drift checks when the teacher passes them). Progress is saved after every round;
`resume` continues from the last completed round and gives the same result as an uninterrupted
run (rounds are seeded by their index and the population is saved exactly).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metarl_cli.errors import ConfigError, Interrupted, MetarlError
from metarl_cli.fsutil import atomic_write_text
from metarl_cli.meta.normalisers import check_normalisers, divisors
from metarl_cli.meta.rundir import refuse_changed_config
from metarl_cli.meta.symbolic.backends import RoundInterrupted
from metarl_cli.meta.symbolic.config import SymbolicConfig, config_differences, default_config
from metarl_cli.meta.symbolic.data import Teacher, drift_names
from metarl_cli.meta.symbolic.output import save_program
from metarl_cli.meta.symbolic.problem import (
    Problem,
    choose,
    front_records,
    make_problem,
    pareto_front,
    score,
    teacher_validity,
    validity,
)
from metarl_cli.meta.symbolic.rundir import STATE_FORMAT, SymbolicRunDir
from metarl_cli.seeds import SELECTION, run_key_data

__all__ = [
    "SymbolicConfig",
    "SymbolicPlan",
    "SymbolicResult",
    "default_config",
    "plan_symbolic",
    "run_symbolic",
]


@dataclass
class SymbolicPlan:
    """A validated run: nothing written or compiled yet."""

    cfg: SymbolicConfig
    teacher: Teacher
    output: Path
    run_dir: SymbolicRunDir
    resume: bool
    force: bool
    resume_from: int = 0


def plan_symbolic(
    cfg: SymbolicConfig,
    teacher: Teacher,
    output: str | Path,
    *,
    run_dir: str | Path | None,
    resume: bool,
    force: bool,
) -> SymbolicPlan:
    """Validates a run (backend, envs and their configs, output, run dir, resumed state)."""
    from metarl_cli.config import build_config
    from metarl_cli.meta.symbolic.backends import check_available

    check_available(cfg.backend)
    if cfg.grad_loss and teacher.algorithm.slot != "drift":
        raise ConfigError(f"--grad-loss is for {drift_names()} only (it fits d drift / d r)")
    if cfg.grad_loss and cfg.backend != "operon":
        raise ConfigError("--grad-loss needs --backend operon (a Python loss on the gradient)")
    if cfg.num_runs > 0:
        if not cfg.envs:
            raise ConfigError(
                "the teacher names no training envs to evaluate on; pass --envs (or --num-runs 0)"
            )
        configs = [
            build_config(env_id, timesteps=cfg.timesteps, overrides=cfg.overrides)
            for env_id in cfg.envs
        ]
        check_normalisers(
            {c.env_id: c.ppo_normaliser for c in configs}, fix="evaluate on it alone with --envs"
        )
        run_key_data(SELECTION, cfg.seed, cfg.num_runs)  # a bad --seed fails now
    output, rd = SymbolicRunDir.for_output(output, run_dir, resume=resume, force=force)
    resume_from = 0
    if resume:
        state = rd.read_state()
        if state is not None:
            refuse_changed_config(rd.path, config_differences(state["config"], cfg))
            resume_from = int(state["round"])
    return SymbolicPlan(cfg, teacher, output, rd, resume, force, resume_from)


# --- RL evaluation ------------------------------------------------------------------------


def rl_evaluate(cfg: SymbolicConfig, path: Path) -> dict[str, Any]:
    """Evaluates the artefact at `path` on `cfg.envs` with the selection seed stream: per-env
    mean final return, diverged runs, and the score (mean over envs of the mean return divided
    by the PPO normaliser, see `meta/normalisers.py`)."""
    from metarl_cli.evaluation import evaluate

    result = evaluate(
        str(path),
        cfg.envs,
        num_runs=cfg.num_runs,
        seed=cfg.seed,
        timesteps=cfg.timesteps,
        overrides=cfg.overrides,
        stream=SELECTION,
    )
    by = divisors({env.env_id: env.normaliser for env in result.envs})
    per_env, scores = {}, []
    for env in result.envs:
        mean = env.summary.mean
        per_env[env.env_id] = {
            "mean": mean,
            "iqm": env.summary.iqm,
            "diverged": int(sum(env.diverged)),
        }
        value = float("nan") if mean is None else mean
        scores.append(value / by[env.env_id])
    return {"score": float(np.mean(scores)), "per_env": per_env}


# --- the loop -----------------------------------------------------------------------------


def _interrupted(rd: Any, rounds_done: int) -> Interrupted:
    """Stopped by the user; progress up to the last completed round is saved."""
    return Interrupted(f"round {rounds_done}", f"state in {rd.path}")


@dataclass
class SymbolicResult:
    best: dict[str, Any]
    history: list[dict[str, Any]]
    teacher_problems: list[str]
    student_problems: list[str]
    wall_s: float


def run_symbolic(
    plan: SymbolicPlan, on_event: Callable[[str, dict], None] | None = None
) -> tuple[Any, SymbolicResult]:
    """Runs (or resumes) the search and writes the artefact. Returns (manifest, result).

    Raises:
        Interrupted: on Ctrl-C (the search stops at its next generation); the completed
            rounds are saved.
    """
    from metarl_cli.meta.symbolic.backends import make_backend

    cfg, rd = plan.cfg, plan.run_dir
    emit = on_event or (lambda name, info: None)
    backend = make_backend(cfg.backend)
    problem = make_problem(cfg, plan.teacher, emit)
    state, population = _start_state(plan)
    settings = cfg.settings()
    teacher_problems = teacher_validity(problem)
    require_valid = problem.drift and not teacher_problems
    order = np.random.default_rng([cfg.seed, 2]).permutation(len(problem.data))
    batch = min(cfg.batch_size, len(problem.data))
    stop = _StopFlag()
    with stop:
        for k in range(state["round"] + 1, cfg.rounds + 1):
            emit("round", {"round": k, "of": cfg.rounds})
            t0 = time.perf_counter()
            start = ((k - 1) * batch) % len(order)
            rows = np.take(order, np.arange(start, start + batch), mode="wrap")
            task = problem.task(problem.data.take(rows))
            try:
                result = backend.fit_round(
                    task,
                    settings,
                    population,
                    seed=_round_seed(cfg.seed, k),
                    on_generation=lambda g, k=k: emit(
                        "generation", {"round": k, "generation": g, "of": cfg.iterations}
                    ),
                    should_stop=stop.is_set,
                )
            except RoundInterrupted:
                raise _interrupted(rd, state["round"]) from None
            record = _select(plan, problem, result, k, state, require_valid, emit, t0)
            record["wall_s"] = time.perf_counter() - t0
            state["history"].append(record)
            state["round"] = k
            state["wall_s"] = float(state.get("wall_s", 0.0)) + record["wall_s"]
            population = result.population
            rd.write_round(state, population)
            rd.append_metrics(record)
            emit("round_done", record)
            if stop.is_set():
                raise _interrupted(rd, k)
    return _finish(plan, problem, state, teacher_problems)


def _start_state(plan: SymbolicPlan) -> tuple[dict[str, Any], list[Any] | None]:
    """Prepares the run directory; (state, population) of a fresh run or the resumed one."""
    cfg, rd = plan.cfg, plan.run_dir
    rd.prepare(resume=plan.resume, force=plan.force)
    state = rd.read_state() if plan.resume else None
    population: list[Any] | None
    if state is None:
        state = {"format": STATE_FORMAT, "round": 0, "history": [], "best": None, "wall_s": 0.0}
        population = None
        atomic_write_text(
            rd.file("config.json"),
            json.dumps({"symbolic": cfg.model_dump(mode="json"), "teacher": str(plan.teacher.path)})
            + "\n",
            force=True,
        )
    else:
        population = state.pop("population") or None
    state["config"] = cfg.model_dump(mode="json")
    rd.truncate_metrics(state["round"])
    return state, population


def _select(
    plan: SymbolicPlan,
    problem: Problem,
    result: Any,
    k: int,
    state: dict[str, Any],
    require_valid: bool,
    emit: Callable[[str, dict], None],
    t0: float,
) -> dict[str, Any]:
    """Round `k` after its search (begun at `t0`): scores the candidates, writes the Pareto
    front, evaluates the chosen program in RL and keeps it if best. Returns the round record."""
    cfg, rd = plan.cfg, plan.run_dir
    search_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    scored = score(problem, result.candidates)
    front = pareto_front(scored)
    chosen = choose(problem, scored, require_valid=require_valid)
    select_s = time.perf_counter() - t1
    record: dict[str, Any] = {
        "round": k,
        "generations": result.generations,
        "evaluations": result.evaluations,
        "candidates": len(result.candidates),
        "search_s": search_s,
        "select_s": select_s,
        "best_l2": chosen["l2"] if chosen else None,
        "complexity": chosen["complexity"] if chosen else None,
        "pareto_size": len(front),
    }
    pareto = json.dumps(front_records(problem, front), indent=1)
    atomic_write_text(rd.file(f"pareto_{k:04d}.json"), pareto, force=True)
    atomic_write_text(rd.file("pareto.json"), pareto, force=True)
    if chosen is not None:
        chosen["round"] = k
        record["validity"] = chosen["validity"]
        if cfg.num_runs > 0:
            emit("evaluating", {"round": k})
            path = rd.file(f"round_{k:04d}.safetensors")
            save_program(plan, problem, chosen, path, state, final=False)
            t2 = time.perf_counter()
            chosen["rl"] = rl_evaluate(cfg, path)
            record["rl_score"] = chosen["rl"]["score"]
            record["rl"] = chosen["rl"]["per_env"]
            record["eval_s"] = time.perf_counter() - t2
        if _better(chosen, state["best"], require_valid):
            state["best"] = chosen
    return record


def _finish(
    plan: SymbolicPlan, problem: Problem, state: dict[str, Any], teacher_problems: list[str]
) -> tuple[Any, SymbolicResult]:
    """Writes the best program over all rounds as the output artefact."""
    if state["best"] is None:
        raise MetarlError(
            "no program passed the round trip in any round; run more rounds or iterations "
            "(the run directory's pareto.json lists what was found)"
        )
    best = state["best"]
    student = validity(problem, best["text"])
    checks = (student, teacher_problems)
    manifest = save_program(plan, problem, best, plan.output, state, final=True, checks=checks)
    result = SymbolicResult(best, state["history"], teacher_problems, student, state["wall_s"])
    return manifest, result


def _better(new: dict[str, Any], best: dict[str, Any] | None, require_valid: bool) -> bool:
    """Lowest L2 wins (later rounds win ties); valid programs first when required."""
    if best is None:
        return True

    def key(r: dict[str, Any]) -> tuple[bool, float]:
        return (require_valid and bool(r["validity"]), r["l2"])

    return key(new) <= key(best)


def _round_seed(seed: int, k: int) -> int:
    return int(np.random.default_rng([seed, 3, k]).integers(0, 2**63 - 1))


class _StopFlag:
    """SIGINT sets a flag (the backend stops at the next generation) instead of raising
    inside the backend's C++ loop, which would swallow it."""

    def __init__(self) -> None:
        self._set = False
        self._previous: Any = None

    def is_set(self) -> bool:
        return self._set

    def _handler(self, signum, frame) -> None:
        del signum, frame
        if self._set:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._set = True

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
