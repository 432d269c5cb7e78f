"""Exporting a code kernel: its Python runs in the sandbox child, only StableHLO comes back.

`export_source` is how every code kernel enters metarl: `metarl import code`, `metarl import
paper` (Supplement C's code functions) and each `metarl discover` candidate. The child checks
the source, calls it on sample inputs, compiles it, and exports it (`validate.py`); this process
then verifies the returned bytes as every reader does (`ExportedKernel.from_bytes`).
"""

from __future__ import annotations

import base64
from typing import Any

from metarl_cli.errors import KernelError, MetarlError
from metarl_cli.learned.exported import ExportedKernel
from metarl_cli.meta.llm.sandbox import Limits, run_job

EXPORT_MEMORY = 4 << 30  # bytes the exporting child may allocate (inputs are tiny)
EXPORT_TIMEOUT_S = 120.0


def export_job(
    algorithm: Any,
    source: str,
    *,
    seed: int = 0,
    lr: float = 1e-3,
    strict: bool = True,
    timeout_s: float = EXPORT_TIMEOUT_S,
    memory_bytes: int = EXPORT_MEMORY,
    allow_unconfined: bool = False,
) -> dict[str, Any]:
    """Runs the sandboxed `validate` job (checks, then export); returns the child's result.

    `strict`: also apply the slot's validity conditions (a drift's mirror-learning
    conditions), as `discover` does; `import code` accepts any finite kernel.
    """
    job = {"kind": "validate", "algo": algorithm.name, "source": source}
    job.update(seed=seed, lr=lr, strict=strict)
    return run_job(
        job, Limits(timeout_s, memory_bytes), xla_devices=1, allow_unconfined=allow_unconfined
    )


def kernel_of(algorithm: Any, result: dict[str, Any]) -> ExportedKernel:
    """The verified kernel of a successful `validate` result (or of its `*_b64` fields).

    Raises:
        KernelError: the bytes are missing, invalid or use forbidden operations.
    """
    try:
        primal = base64.b64decode(result["primal_b64"], validate=True)
        vjp = result.get("vjp_b64")
        vjp_bytes = None if vjp is None else base64.b64decode(vjp, validate=True)
    except (KeyError, ValueError, TypeError):
        raise KernelError("the sandbox returned no valid exported program") from None
    return ExportedKernel.from_bytes(primal, vjp_bytes, algorithm.code_signature)


def export_source(
    algorithm: Any, source: str, *, strict: bool = False, allow_unconfined: bool = False
) -> ExportedKernel:
    """Checks and exports `source` in the sandbox; returns its verified kernel.

    Raises:
        KernelError: the source fails a check or cannot be exported (the child's message).
        SandboxError: the sandbox cannot start, or lacks a required confinement layer and
            `allow_unconfined` is False.
    """
    result = export_job(algorithm, source, strict=strict, allow_unconfined=allow_unconfined)
    if not result["ok"]:
        raise KernelError(f"code kernel: {result.get('stage', 'check')}: {result['error']}")
    try:
        return kernel_of(algorithm, result)
    except MetarlError as e:
        raise KernelError(f"code kernel: the exported program was refused: {e}") from None
