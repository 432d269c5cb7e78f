"""One candidate: its RL fitness and the processing of a reply (parse, check, validate, train).

Nothing of a candidate runs in this process, and its Python runs in one process only:

1. here, the AST check (a parse);
2. the sandboxed `validate` child loads, checks, traces and exports it to StableHLO and sends
   back only the exported bytes, which are verified here (`ExportedKernel.from_bytes`: no
   custom calls, host callbacks or effects) and written as the candidate's artefact;
3. a second sandboxed child, the `fitness` worker, evaluates that artefact. It never sees the
   source and never imports candidate code, so nothing the candidate does can write its
   result; results outside the env's possible returns are refused all the same.

Fitness is the mean over envs of (mean final return over the seeds) / the env's reference
return (see `loop.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metarl_cli.errors import MetarlError
from metarl_cli.meta.llm import export, prompts
from metarl_cli.meta.llm.config import DiscoverError
from metarl_cli.meta.llm.export import EXPORT_MEMORY
from metarl_cli.meta.llm.sandbox import Limits, run_job
from metarl_cli.seeds import SELECTION

if TYPE_CHECKING:
    from metarl_cli.meta.llm.loop import DiscoverPlan


def sandbox_cache_dir() -> str | None:
    """The JAX compilation cache of sandboxed RL evaluations: beside the normal one, never it,
    so code written by a model cannot touch a cache that unsandboxed runs load from."""
    where = os.environ.get("METARL_CACHE_DIR") or str(Path.home() / ".cache/metarl/jax")
    if where.strip().lower() in ("off", "none", "0", ""):
        return None
    path = Path(where).expanduser()
    return str(path.with_name(path.name + "-sandbox"))


def export_job(plan: DiscoverPlan, code: str) -> dict[str, Any]:
    """Validates and exports `code` in a sandboxed child; the result holds the modules."""
    memory = min(EXPORT_MEMORY, int(plan.cfg.memory_gb * 2**30) or EXPORT_MEMORY)
    return export.export_job(
        plan.algorithm,
        code,
        seed=plan.cfg.seed,
        lr=plan.lr,
        strict=plan.cfg.prompt != "paper",  # the paper checks finiteness and shape only
        timeout_s=plan.cfg.validate_timeout,
        memory_bytes=memory,
        allow_unconfined=plan.cfg.unsafe_no_sandbox,
    )


def exported_kernel(plan: DiscoverPlan, modules: dict[str, Any]) -> Any:
    """The verified kernel of a `validate` result (or of an entry's saved `exported`)."""
    return export.kernel_of(plan.algorithm, modules)


def candidate_artefact(plan: DiscoverPlan, name: str, code: str, kernel: Any) -> bytes:
    """The candidate as a `code` artefact file's bytes (written to a temp file and read)."""
    import tempfile

    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.learned.io import save_kernel

    with tempfile.TemporaryDirectory(prefix="metarl-candidate-") as tmp:
        path = Path(tmp) / "candidate.safetensors"
        save_kernel(
            path,
            plan.algorithm,
            "code",
            code,
            code=kernel,
            meta_learner=MetaLearnerInfo(name="llm", config={"candidate": name}),
            training_envs=list(plan.cfg.envs),
        )
        return path.read_bytes()


def fitness_job(plan: DiscoverPlan, name: str, code: str, kernel: Any) -> dict[str, Any]:
    """Evaluates the exported candidate in the `fitness` worker (module doc)."""
    import base64

    cfg = plan.cfg
    artefact = candidate_artefact(plan, name, code, kernel)
    job = {
        "kind": "fitness",
        "algo": cfg.algo,
        "name": name,
        "artefact_b64": base64.b64encode(artefact).decode("ascii"),
        "envs": cfg.envs,
        "num_runs": cfg.num_runs,
        "seed": cfg.seed,
        "stream": SELECTION,  # never the seeds `metarl evaluate` meta-tests with
        "timesteps": cfg.timesteps,
        "overrides": cfg.overrides,
    }
    memory = int(cfg.memory_gb * 2**30) or None
    t = time.perf_counter()
    result = run_job(
        job,
        Limits(plan.eval_timeout, memory),
        cache_dir=sandbox_cache_dir(),
        allow_unconfined=cfg.unsafe_no_sandbox,
    )
    result["evaluation_s"] = time.perf_counter() - t
    return result


def _out_of_range(env_id: str, finals: list[float | None]) -> str | None:
    """A second line of defence: returns no real run of `env_id` can produce."""
    from metarl_cli.envs.registry import ENVS

    low, high = ENVS.get(env_id).return_range
    bad = [r for r in finals if r is not None and not low <= r <= high]
    if not bad:
        return None
    return (
        f"the evaluation reported returns {bad[:3]} on {env_id}, outside its possible range "
        f"[{low:g}, {high:g}]; the result was refused"
    )


def combine(plan: DiscoverPlan, result: dict[str, Any]) -> tuple[float | None, dict, dict, str]:
    """(fitness, normalised per env, raw returns per env, problem) from a fitness job."""
    per_env, returns, problems = {}, {}, []
    for env in result.get("envs", []):
        env_id, finals = env["env_id"], env["final_returns"]
        returns[env_id] = finals
        n_bad = sum(r is None for r in finals)
        impossible = _out_of_range(env_id, finals)
        if impossible:
            problems.append(impossible)
        elif any(env["diverged"]):
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
    from metarl_cli.learned.source_check import function_name

    name = function_name(alg.warm_start)
    emit("warm_start_begin", {"name": name})
    exported = export_job(plan, alg.warm_start)
    if not exported["ok"]:
        raise DiscoverError(f"the warm start {name} could not be exported: {exported['error']}")
    modules = {k: v for k, v in exported.items() if k.endswith("_b64")}
    result = fitness_job(plan, name, alg.warm_start, exported_kernel(plan, modules))
    entry: dict[str, Any] = {"turn": 0, "name": name, "thought": "", "code": alg.warm_start}
    entry["exported"] = modules
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
    from metarl_cli.learned.source_check import check_source

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
    kernel = None
    if local_error is None:
        result = export_job(plan, proposal.code)
        entry["validation"] = {
            k: result.get(k)
            for k in ("ok", "stage", "error", "checks", "timings", "confinement", "wall_s")
        }
        local_error = None if result["ok"] else result["error"]
        if local_error is None:
            modules = {k: v for k, v in result.items() if k.endswith("_b64")}
            try:  # verified here, in the process that runs nothing of the candidate
                kernel = exported_kernel(plan, modules)
                entry["exported"] = modules
            except (MetarlError, KeyError, ValueError) as e:
                local_error = f"the exported program was refused: {e}"
                entry["validation"].update(ok=False, stage="export", error=local_error)
    else:
        entry["validation"] = {"ok": False, "stage": "ast", "error": local_error}
    times["validation_s"] = time.perf_counter() - t
    if local_error is not None:
        entry.update(status="invalid", error=local_error)
        entry["feedback"] = prompts.invalid_message(local_error)
        return
    result = fitness_job(plan, proposal.name, proposal.code, kernel)
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
    entry["feedback"] = prompts.fitness_message(fitness, per_env, plan.cfg.prompt)
