"""Validation of a candidate, run inside the sandbox child (`sandbox_runner`).

The function is loaded through `learned/source_check.py` (AST check, restricted namespace, the
slot's exact signature), called on sampled inputs as the trainer calls it, its outputs checked
for type, shape and finiteness, compiled with `jax.jit`, and for a drift its gradient and the
mirror-learning conditions are checked. Last, it is traced with symbolic shapes and exported to
StableHLO (`learned/exported.py`), and the export is verified as every reader verifies it and
compared with the function on the sample inputs: the exported bytes are the only thing of the
candidate that leaves the child. Every failure is a `CandidateError` whose message goes back to
the model as is: it names the check and, where useful, an input where it failed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

MAX_MESSAGE = 1500  # characters of an error message sent back to the model


class CandidateError(Exception):
    """A check the candidate failed; the message goes back to the model as is."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 15] + " ... (cut)"


def describe(e: BaseException) -> str:
    """An exception as the model should see it: type and message, no traceback."""
    if isinstance(e, MemoryError):
        return "MemoryError: ran out of memory (the sandbox's memory limit)"
    from metarl_cli.meta.llm.audit import DENIED

    msg = str(e).strip()
    if DENIED and DENIED[-1] not in msg:  # native code (numpy, XLA) may mask the reason
        msg = f"{msg} ({DENIED[-1]})" if msg else DENIED[-1]
    elif isinstance(e, SystemError) and "without setting an exception" in msg:
        # numpy's file functions look `open` up in the caller's builtins, which have none
        msg += " (a file or system operation, which the sandbox does not allow)"
    # JAX appends paragraphs of advice and links; the first lines carry the error.
    lines = [ln for ln in msg.splitlines() if ln.strip()][:8]
    return clip(f"{type(e).__name__}: {' '.join(lines)}" if lines else type(e).__name__)


# --- validation ------------------------------------------------------------------------------


def sample_arguments(algorithm: Any, n: int, seed: int, lr: float) -> dict[str, Any]:
    """The slot's inputs as the trainer passes them, with values from `sample_inputs`."""
    import jax
    import jax.numpy as jnp

    raw = algorithm.sample_inputs(jax.random.key(seed), n)
    if algorithm.slot == "drift":
        return {"ratio": raw["ratio"], "advantage": raw["advantage"], "epsilon": 0.2}
    from metarl_cli.learned.perparam import MOMENTUM_NAMES

    values: dict[str, Any] = {"p": raw["p"], "g": raw["g"], "lr": jnp.float32(lr)}
    for i, name in enumerate(MOMENTUM_NAMES):
        values[name] = raw["mom"][:, i]
    for name in ("l_p", "b_p", "t_p", "dorm", "rand"):
        if name in raw:
            values[name] = raw[name]
    values["iteration"] = jnp.float32(1.0)
    values["var"] = jnp.zeros((n,), jnp.float32)
    return {name: values[name] for name in algorithm.code_parameters}


def _as_array(value: Any, what: str, n: int):
    import jax.numpy as jnp
    import numpy as np

    try:
        arr = np.asarray(value)
    except Exception as e:
        raise CandidateError("output", f"{what} is not an array of numbers ({describe(e)})") from e
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise CandidateError(
            "output", f"{what} has type {type(value).__name__} ({arr.dtype}), not real numbers"
        )
    if arr.shape != (n,):
        raise CandidateError(
            "shape",
            f"{what} has shape {arr.shape} for inputs of shape ({n},): the function must be "
            "elementwise and return one value per input element",
        )
    return jnp.asarray(arr, jnp.float32)


def _outputs(algorithm: Any, out: Any, n: int) -> list:
    recurrent = algorithm.code_parameters[-1] == "var"
    if recurrent:
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise CandidateError(
                "output", "the function must return a pair (update, var), got " + type(out).__name__
            )
        return [_as_array(out[0], "update", n), _as_array(out[1], "var", n)]
    what = "the drift" if algorithm.slot == "drift" else "the update"
    return [_as_array(out, what, n)]


def _check_finite(outputs: list, names: tuple[str, ...], args: dict, stage: str) -> None:
    import numpy as np

    for name, out in zip(names, outputs, strict=False):
        bad = ~np.isfinite(np.asarray(out))
        if bad.any():
            i = int(np.argmax(bad))
            where = ", ".join(
                f"{k}={float(np.asarray(v).reshape(-1)[i] if np.ndim(v) else v):.4g}"
                for k, v in args.items()
                if not k.startswith("m_")
            )
            raise CandidateError(
                "finite",
                f"{name} is NaN or infinite {stage} for {int(bad.sum())} of {bad.size} sample "
                f"inputs, e.g. at {where}",
            )


_WATCHED_CONFIG = ("jax_disable_jit", "jax_enable_x64", "jax_debug_nans", "jax_platforms")
_WATCHED_PACKAGES = ("jax", "jaxlib", "numpy", "math", "flax", "optax", "metarl_cli")


def snapshot() -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """JAX's config flags and the identity of every public attribute of the modules the code
    can reach, so a function that reassigns `jnp.mean` (to fake its fitness, say) is caught."""
    import jax

    config = {k: getattr(jax.config, k, None) for k in _WATCHED_CONFIG}
    modules = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in _WATCHED_PACKAGES:
            continue
        try:
            attrs = vars(module)
        except TypeError:
            continue
        modules[name] = {k: id(v) for k, v in list(attrs.items()) if not k.startswith("_")}
    return config, modules


def check_untouched(before: tuple[dict[str, Any], dict[str, dict[str, int]]]) -> None:
    """Raises `CandidateError` if the config or a module attribute changed since `before`."""
    config, modules = snapshot()
    if config != before[0]:
        changed = [k for k in config if config[k] != before[0].get(k)]
        raise CandidateError("tamper", f"the function changed jax.config ({', '.join(changed)})")
    for name, attrs in before[1].items():
        now = modules.get(name, {})
        for key, ident in attrs.items():
            if now.get(key, ident) != ident:
                raise CandidateError(
                    "tamper", f"the function reassigned {name}.{key}: modules may not be modified"
                )


def validate(job: dict[str, Any]) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from metarl_cli.errors import KernelError
    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.source_check import function_name, load_function

    algorithm = get_algorithm(job["algo"])
    n = int(job.get("n", 64))
    params = tuple(algorithm.code_parameters)
    timings: dict[str, float] = {}
    before = snapshot()
    t = time.perf_counter()
    try:
        fn = load_function(job["source"], params)
        name = function_name(job["source"])
    except KernelError as e:
        msg = str(e).removeprefix("code kernel: ")
        if e.__context__ is not None and msg.rstrip().endswith("failed:"):  # a bare MemoryError
            msg = msg.rstrip() + " " + describe(e.__context__)
        raise CandidateError("load", msg) from None
    except Exception as e:  # default arguments run at definition time
        raise CandidateError("load", f"defining the function raised {describe(e)}") from e
    args = sample_arguments(algorithm, n, int(job.get("seed", 0)), float(job.get("lr", 1e-3)))
    signature = f"{name}({', '.join(params)})"
    if params[-1] == "var":
        names: tuple[str, ...] = ("update", "var")
    else:
        names = ("the drift",) if algorithm.slot == "drift" else ("the update",)
    outputs = _attempt(
        "call",
        f"calling {signature} on sample inputs raised",
        lambda: _outputs(algorithm, fn(*args.values()), n),
    )
    _check_finite(outputs, names, args, "on sample inputs")
    timings["call_s"] = time.perf_counter() - t

    t = time.perf_counter()
    static = tuple(i for i, p in enumerate(params) if p == "epsilon")  # the trainer's floats
    jitted = jax.jit(fn, static_argnums=static)
    jit_out = _attempt(
        "jit",
        f"{signature} cannot be compiled with jax.jit:",
        lambda: _outputs(algorithm, jitted(*args.values()), n),
    )
    _check_finite(jit_out, names, args, "under jax.jit")
    if params[-1] == "var":  # a second step, carrying var, must work too
        step2 = {**args, "iteration": jnp.float32(2.0), "var": jit_out[1]}
        again = _attempt(
            "call",
            "a second step (iteration 2) raised",
            lambda: _outputs(algorithm, jitted(*step2.values()), n),
        )
        _check_finite(again, names, step2, "at the second step")
    timings["jit_s"] = time.perf_counter() - t

    checks = ["signature", "call", "shape", "finite", "jit"]
    if algorithm.slot == "drift" and job.get("strict", True):
        t = time.perf_counter()
        _check_drift(fn, jitted, args)
        timings["drift_checks_s"] = time.perf_counter() - t
        checks += ["gradient", "drift validity"]
    t = time.perf_counter()
    modules = _export(algorithm, fn, args, jit_out)
    timings["export_s"] = time.perf_counter() - t
    checks.append("export")
    check_untouched(before)
    return {"ok": True, "function": name, "checks": checks, "timings": timings, **modules}


def _export(algorithm: Any, fn: Any, args: dict[str, Any], expected: list) -> dict[str, str]:
    """Exports `fn` to StableHLO (the only form in which it leaves this process), checks the
    export as every reader will, and that it computes what the function computed."""
    import base64

    import numpy as np

    from metarl_cli.errors import KernelError
    from metarl_cli.learned.exported import ExportedKernel, export_function

    signature = algorithm.code_signature
    try:
        modules = export_function(fn, signature)
        kernel = ExportedKernel.from_bytes(modules["primal"], modules.get("vjp"), signature)
        outputs = kernel(*args.values())
    except KernelError as e:
        raise CandidateError("export", str(e)) from None
    except Exception as e:
        raise CandidateError("export", f"the exported function failed: {describe(e)}") from e
    for name, got, want in zip(signature.outputs, outputs, expected, strict=True):
        if not np.allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5):
            raise CandidateError(
                "export",
                f"the exported {name} differs from the function's on the sample inputs: the "
                "function must not depend on the number of inputs or on Python-level state",
            )
    return {f"{k}_b64": base64.b64encode(v).decode("ascii") for k, v in modules.items()}


def _check_drift(fn: Any, jitted: Any, args: dict[str, Any]) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from metarl_cli.learned.checks import check_drift

    eps = args["epsilon"]
    try:
        grad = jax.jit(jax.grad(lambda r, a: jnp.sum(fn(r, a, eps))))(
            args["ratio"], args["advantage"]
        )
    except Exception as e:
        raise CandidateError(
            "gradient", f"the drift cannot be differentiated in ratio: {describe(e)}"
        ) from e
    if not np.isfinite(np.asarray(grad)).all():
        raise CandidateError(
            "gradient", "the gradient of the drift with respect to ratio is NaN or infinite"
        )
    try:
        problems = check_drift(lambda theta, r, a, e: jitted(r, a, e), {}, clip_eps=eps)
    except Exception as e:
        raise CandidateError("validity", f"checking the drift raised {describe(e)}") from e
    if problems:
        raise CandidateError(
            "validity",
            "not a valid drift function (it must be >= 0 everywhere, 0 at r = 1 and have zero "
            "gradient in r at r = 1): " + "; ".join(problems),
        )


def _attempt(stage: str, what: str, step: Any) -> Any:
    """`step()`, with any error but a `CandidateError` reported as `CandidateError(stage,
    f"{what} {description}")` (the candidate's own failure, in one line)."""
    try:
        return step()
    except CandidateError:
        raise
    except Exception as e:
        raise CandidateError(stage, f"{what} {describe(e)}") from e
