"""One candidate: its RL fitness and the processing of a reply (parse, check, validate, train).

Nothing of a candidate runs in this process: the AST check is a parse, validation and fitness
are jobs for sandboxed children (`sandbox.run_job`). Fitness is the mean over envs of (mean final
return over the seeds) / the env's reference return (see `loop.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metarl_cli.errors import MetarlError
from metarl_cli.meta.llm import prompts
from metarl_cli.meta.llm.config import DiscoverError
from metarl_cli.meta.llm.sandbox import Limits, run_job

if TYPE_CHECKING:
    from metarl_cli.meta.llm.loop import DiscoverPlan

VALIDATION_MEMORY = 4 << 30  # bytes a validation child may allocate (inputs are tiny)


def sandbox_cache_dir() -> str | None:
    """The JAX compilation cache of sandboxed RL evaluations: beside the normal one, never it,
    so code written by a model cannot touch a cache that unsandboxed runs load from."""
    where = os.environ.get("METARL_CACHE_DIR") or str(Path.home() / ".cache/metarl/jax")
    if where.strip().lower() in ("off", "none", "0", ""):
        return None
    path = Path(where).expanduser()
    return str(path.with_name(path.name + "-sandbox"))


def fitness_job(plan: DiscoverPlan, name: str, code: str) -> dict[str, Any]:
    cfg = plan.cfg
    job = {
        "kind": "fitness",
        "algo": cfg.algo,
        "name": name,
        "source": code,
        "envs": cfg.envs,
        "num_runs": cfg.num_runs,
        "seed": cfg.seed,
        "timesteps": cfg.timesteps,
        "overrides": cfg.overrides,
    }
    memory = int(cfg.memory_gb * 2**30) or None
    t = time.perf_counter()
    result = run_job(job, Limits(cfg.eval_timeout, memory), cache_dir=sandbox_cache_dir())
    result["evaluation_s"] = time.perf_counter() - t
    return result


def combine(plan: DiscoverPlan, result: dict[str, Any]) -> tuple[float | None, dict, dict, str]:
    """(fitness, normalised per env, raw returns per env, problem) from a fitness job."""
    per_env, returns, problems = {}, {}, []
    for env in result.get("envs", []):
        env_id, finals = env["env_id"], env["final_returns"]
        returns[env_id] = finals
        n_bad = sum(r is None for r in finals)
        if any(env["diverged"]):
            problems.append(
                f"training diverged (NaN or infinite loss) in {sum(env['diverged'])} of "
                f"{len(finals)} runs on {env_id}"
            )
        elif n_bad:
            problems.append(
                f"no episode finished in the final window of {n_bad} of {len(finals)} runs on "
                f"{env_id} (NaN returns, or a budget too small: raise --timesteps)"
            )
        else:
            per_env[env_id] = sum(finals) / len(finals) / plan.normalisers[env_id]
    if problems:
        return None, per_env, returns, "; ".join(problems)
    return sum(per_env.values()) / len(per_env), per_env, returns, ""


def warm_start(plan: DiscoverPlan, emit: Callable) -> dict[str, Any]:
    alg = plan.algorithm
    from metarl_cli.learned.sandbox import function_name

    name = function_name(alg.warm_start)
    emit("warm_start_begin", {"name": name})
    result = fitness_job(plan, name, alg.warm_start)
    entry: dict[str, Any] = {"turn": 0, "name": name, "thought": "", "code": alg.warm_start}
    if not result["ok"]:
        raise DiscoverError(f"the warm start {name} could not be evaluated: {result['error']}")
    fitness, per_env, returns, problem = combine(plan, result)
    if fitness is None:
        raise DiscoverError(f"the warm start {name} has no fitness: {problem}")
    entry.update(
        status="evaluated",
        fitness=fitness,
        per_env=per_env,
        returns=returns,
        times={"evaluation_s": result["evaluation_s"], "total_s": result["evaluation_s"]},
        evaluation={k: result.get(k) for k in ("envs", "confinement", "startup_s", "wall_s")},
    )
    emit("warm_start", entry)
    return entry


def process(plan: DiscoverPlan, entry: dict[str, Any]) -> None:
    """Parses, validates and evaluates a pending entry in place; sets `feedback`."""
    from metarl_cli.learned.sandbox import check_source

    times = entry["times"]
    try:
        proposal = prompts.parse_reply(entry["reply"])
    except prompts.ReplyError as e:
        entry.update(status="malformed", error=str(e), feedback=prompts.malformed_message(str(e)))
        return
    entry.update(name=proposal.name, thought=proposal.thought, code=proposal.code)
    t = time.perf_counter()
    try:  # a parse and a walk of the tree: nothing of the candidate runs here
        check_source(proposal.code)
        local_error = None
    except MetarlError as e:
        local_error = str(e).removeprefix("code kernel: ")
    except Exception as e:  # pathological input the parser chokes on
        local_error = f"the code could not be parsed ({type(e).__name__})"
    if local_error is None:
        job = {"kind": "validate", "algo": plan.cfg.algo, "source": proposal.code}
        job.update(seed=plan.cfg.seed, lr=plan.lr)
        memory = min(VALIDATION_MEMORY, int(plan.cfg.memory_gb * 2**30) or VALIDATION_MEMORY)
        result = run_job(job, Limits(plan.cfg.validate_timeout, memory), xla_devices=1)
        entry["validation"] = {
            k: result.get(k)
            for k in ("ok", "stage", "error", "checks", "timings", "confinement", "wall_s")
        }
        local_error = None if result["ok"] else result["error"]
    else:
        entry["validation"] = {"ok": False, "stage": "ast", "error": local_error}
    times["validation_s"] = time.perf_counter() - t
    if local_error is not None:
        entry.update(status="invalid", error=local_error)
        entry["feedback"] = prompts.invalid_message(local_error)
        return
    result = fitness_job(plan, proposal.name, proposal.code)
    times["evaluation_s"] = result["evaluation_s"]
    keys = ("envs", "stage", "error", "startup_s", "wall_s", "confinement")
    entry["evaluation"] = {k: result.get(k) for k in keys}
    if not result["ok"]:
        entry.update(status="failed", error=result["error"])
        entry["feedback"] = prompts.failed_message(result["error"])
        return
    fitness, per_env, returns, problem = combine(plan, result)
    entry.update(per_env=per_env, returns=returns)
    if fitness is None:
        entry.update(status="failed", error=problem, feedback=prompts.failed_message(problem))
        return
    entry.update(status="evaluated", fitness=fitness, error=None)
    entry["feedback"] = prompts.fitness_message(fitness, per_env)
