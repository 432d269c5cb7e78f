"""The sandbox child: `python -m metarl_cli.meta.llm.sandbox_runner`, one job per process.

Protocol: the parent writes one JSON job to stdin; the child answers on its original stdout
with one JSON line `{"ready": ..., "confinement": ...}` once it is confined and JAX is up
(candidate code has not run yet), then one JSON line with the result. Everything else the
child or the candidate prints goes to stderr (a file in the temp dir), so stray output cannot
corrupt the protocol. Jobs:

* `validate`: the checks of `validate.py` (load, call on sampled inputs, shape, finiteness,
  `jax.jit`, for a drift its gradient and `learned/checks.py::check_drift`), then the export to
  StableHLO; the result carries the exported modules. This is the only job that runs candidate
  Python, and it compares the modules' attributes and `jax.config` before and after.
* `fitness`: evaluate an artefact (its bytes are in the job) with `metarl_cli.evaluation`.
  It runs in a different process from `validate` and never imports candidate code: a code
  kernel is loaded from its verified StableHLO, so nothing the candidate does can write the
  result.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

from metarl_cli.meta.llm.validate import CandidateError, clip, describe, validate


def fitness(job: dict[str, Any]) -> dict[str, Any]:
    import base64
    from pathlib import Path

    from metarl_cli.evaluation import evaluate
    from metarl_cli.learned.base import get_algorithm

    algorithm = get_algorithm(job["algo"])
    path = Path(job["temp"]) / "candidate.safetensors"
    path.write_bytes(base64.b64decode(job["artefact_b64"]))
    result = evaluate(
        str(path),
        list(job["envs"]),
        num_runs=int(job["num_runs"]),
        seed=int(job["seed"]),
        timesteps=job.get("timesteps"),
        overrides=job.get("overrides") or {},
        expect_algorithm=algorithm.name,
        **({"stream": job["stream"]} if "stream" in job else {}),
    )
    return {
        "ok": True,
        "envs": [
            {
                "env_id": e.env_id,
                "final_returns": e.final_returns,
                "diverged": e.diverged,
                "env_steps_per_run": e.env_steps_per_run,
                "compile_s": e.compile_s,
                "run_s": e.run_s,
            }
            for e in result.envs
        ],
    }


def _prepare(job: dict[str, Any]) -> None:
    """Imports and warms up what the job needs before the audit hook narrows file reads."""
    import jax
    import jax.numpy as jnp

    from metarl_cli.learned.base import get_algorithm

    get_algorithm(job["algo"])
    import metarl_cli.learned.checks
    import metarl_cli.learned.exported
    import metarl_cli.learned.loader
    import metarl_cli.learned.source_check as sandbox

    sandbox._namespace()
    x = jnp.linspace(0.5, 1.5, 4)
    jax.jit(jax.grad(lambda r: jnp.sum(jnp.where(r > 1, jnp.log(r), r**2))))(x).block_until_ready()
    # Loads jax.export, its serialiser (flatbuffers) and the deserialiser before reads narrow.
    sig = metarl_cli.learned.exported.KernelSignature((("x", "vector"),), ("y",), True)
    mods = metarl_cli.learned.exported.export_function(lambda v: jnp.tanh(v), sig)
    kernel = metarl_cli.learned.exported.ExportedKernel.from_bytes(mods["primal"], mods["vjp"], sig)
    jax.jit(jax.grad(lambda v: jnp.sum(kernel(v)[0])))(x).block_until_ready()
    if job["kind"] == "fitness":
        if job.get("cache_dir"):
            from metarl_cli.rl.parallel import enable_compilation_cache

            enable_compilation_cache(job["cache_dir"])
        import metarl_cli.evaluation
        import metarl_cli.learned.io
        import metarl_cli.rl.ppo
        from metarl_cli.config import build_config
        from metarl_cli.envs import make_env

        for env_id in job["envs"]:
            cfg = build_config(
                env_id, timesteps=job.get("timesteps"), overrides=job.get("overrides")
            )
            make_env(cfg)


JOBS = {"validate": validate, "fitness": fitness}
_CACHE_WRITERS = ("jax/_src/compilation_cache", "jax/_src/lru_cache", "jax/_src/cache_key")


def main() -> None:
    from metarl_cli.meta.llm.confine import die_with_parent

    die_with_parent(int(os.environ.get("METARL_SANDBOX_PARENT", "0")))
    job = json.loads(sys.stdin.read())
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints (the candidate's too) go to the stderr file, not the protocol
    sys.stdout = sys.stderr

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    from metarl_cli.meta.llm.audit import install_audit_hook
    from metarl_cli.meta.llm.confine import confine_process, limit_memory

    conf = confine_process(job["writable"])
    from metarl_cli.learned.source_check import allow_execution

    allow_execution()  # this confined process is the one place candidate code may run
    import jax

    jax.devices()
    _prepare(job)
    if jax.default_backend() == "cpu":
        limit_memory(conf, job.get("memory_bytes"))
    else:  # CUDA maps device memory into the address space: RLIMIT_AS would break it
        conf.missing.append(f"memory limit (not applied on {jax.default_backend()})")
    install_audit_hook(conf, _CACHE_WRITERS if job.get("cache_dir") else ())
    send({"ready": True, "confinement": {"layers": conf.layers, "missing": conf.missing}})
    t = time.perf_counter()
    try:
        result = JOBS[job["kind"]](job)
    except CandidateError as e:
        result = {"ok": False, "stage": e.stage, "error": clip(str(e))}
    except MemoryError:
        result = {"ok": False, "stage": "memory", "error": describe(MemoryError())}
    except BaseException as e:  # the candidate's code raised past our checks (e.g. in training)
        traceback.print_exc()
        result = {"ok": False, "stage": "exception", "error": describe(e)}
    result["job_s"] = time.perf_counter() - t
    send(result)
    proto.close()
    os._exit(0)  # skip interpreter teardown: XLA threads and atexit hooks are not needed


if __name__ == "__main__":
    main()
