"""Code kernels as verified StableHLO: Python from an LLM or a user never runs outside the sandbox.

A `code` kernel is Python source. It is executed only inside the confined sandbox child
(`meta/llm/sandbox_runner.py`), which traces it with symbolic shapes and serialises it with
`jax.export` (`export_function`). The artefact stores those bytes as uint8 tensors beside the
source text, which is kept for reading only. Every reader builds the kernel from the bytes
(`ExportedKernel.from_bytes`), which refuses a module that could reach the host:

* any `custom_call` other than the shape assertions of symbolic shapes (host callbacks such as
  `jax.pure_callback`/`io_callback` lower to custom calls, and so does foreign native code);
* host transfers (`infeed`, `outfeed`, `send`, `recv`) and effects of any kind;
* inputs and outputs that do not match the slot's interface (`KernelSignature`).

Interface. Every input is float32 and either a per-sample (drift) or per-parameter (optimiser)
`vector` of one symbolic length `n`, or a `scalar`. Every output is a float32 vector of length
`n` (the child broadcasts scalar results). A kernel is a pure function of its inputs, so it
can be compiled into the trainer's `jit` like any JAX function. Exported modules have no
batching rule, so `jax.vmap` goes through `jax.custom_batching.custom_vmap`, which maps the
module over the batch axis with `lax.map` (correct for kernels that are not elementwise, such
as one that zero-means its update); gradients go through a `jax.custom_vjp` whose backward pass
calls a second exported module, the VJP with respect to the vector inputs (scalar inputs such
as PPO's clip epsilon or a learning rate are treated as constants).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export
from jax.custom_batching import custom_vmap

from metarl_cli.errors import KernelError

# Platforms every exported kernel is lowered for, so an artefact written on a CPU laptop runs
# on GPUs and TPUs.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
FORMAT = "stablehlo/1"
# `shape_assertion` checks the symbolic dimension at call time; nothing else may be called.
ALLOWED_CUSTOM_CALLS = frozenset({"shape_assertion"})
_FORBIDDEN_OPS = ("infeed", "outfeed", "send", "recv", "all_reduce", "all_gather", "all_to_all")
_CUSTOM_CALL = re.compile(r"custom_call\s*@([\w.$-]+)")
_CUSTOM_CALL_GENERIC = re.compile(r"call_target_name\s*=\s*\"([^\"]*)\"")
_OP = re.compile(r"\b(?:stablehlo|mhlo|chlo)\.([a-z_]+)")


@dataclass(frozen=True)
class KernelSignature:
    """A slot's code interface: input names and kinds, output names, differentiability.

    Attributes:
        inputs: `(name, kind)` pairs in call order, kind "vector" (float32 [n]) or "scalar".
        outputs: names of the outputs, each a float32 [n] vector.
        differentiable: whether the trainer differentiates through the kernel (a drift is
            inside the loss; an optimiser's update is not), so the VJP module is needed.
    """

    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    differentiable: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The input names, in order."""
        return tuple(name for name, _ in self.inputs)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The input kinds ("vector" | "scalar"), in order."""
        return tuple(kind for _, kind in self.inputs)


SCALAR_INPUTS = frozenset({"epsilon", "lr", "iteration"})


def signature_for(
    parameters: tuple[str, ...], outputs: tuple[str, ...], differentiable: bool = False
) -> KernelSignature:
    """The signature of a code interface: `epsilon`, `lr` and `iteration` are scalars, every
    other parameter a vector."""
    kinds = tuple((p, "scalar" if p in SCALAR_INPUTS else "vector") for p in parameters)
    return KernelSignature(kinds, outputs, differentiable)


# --- the sandbox child's side ---------------------------------------------------------------


def export_function(fn: Callable[..., Any], signature: KernelSignature) -> dict[str, bytes]:
    """Traces `fn` with symbolic shapes and returns its serialised modules.

    Runs inside the sandbox child only: this is where the untrusted Python executes.

    Returns:
        {"primal": bytes} and, for a differentiable signature, {"vjp": bytes}.

    Raises:
        KernelError: tracing fails (Python control flow on traced values, wrong output count).
    """
    (n,) = export.symbolic_shape("n")
    avals = [
        jax.ShapeDtypeStruct((n,) if kind == "vector" else (), jnp.float32)
        for kind in signature.kinds
    ]
    n_out = len(signature.outputs)

    def primal(*args: Any) -> tuple[Any, ...]:
        out = fn(*args)
        if n_out > 1:
            if not isinstance(out, tuple | list) or len(out) != n_out:
                raise KernelError(
                    f"the function must return {n_out} values "
                    f"({', '.join(signature.outputs)}), got {type(out).__name__}"
                )
        else:
            out = (out,)
        shape = args[signature.kinds.index("vector")].shape
        return tuple(jnp.broadcast_to(jnp.asarray(o, jnp.float32), shape) for o in out)

    modules = {"primal": _export(primal, avals, "the function")}
    if signature.differentiable:
        vector_idx = [i for i, kind in enumerate(signature.kinds) if kind == "vector"]

        def vjp(*args: Any) -> tuple[Any, ...]:
            inputs, cts = args[: len(avals)], args[len(avals) :]

            def of_vectors(*vectors: Any) -> tuple[Any, ...]:
                full = list(inputs)
                for i, v in zip(vector_idx, vectors, strict=True):
                    full[i] = v
                return primal(*full)

            _, pullback = jax.vjp(of_vectors, *(inputs[i] for i in vector_idx))
            return tuple(pullback(tuple(cts)))

        out_avals = [jax.ShapeDtypeStruct((n,), jnp.float32)] * n_out
        modules["vjp"] = _export(vjp, [*avals, *out_avals], "the function's gradient")
    return modules


def _export(fn: Callable[..., Any], avals: list[Any], what: str) -> bytes:
    try:
        exported = export.export(jax.jit(fn), platforms=PLATFORMS)(*avals)
    except KernelError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:400]
        raise KernelError(
            f"{what} cannot be traced for export with symbolic shapes: {type(e).__name__}: {first}"
        ) from None
    return bytes(exported.serialize())


# --- every reader's side --------------------------------------------------------------------


def verify_module(exported: Any, signature: KernelSignature, what: str, n_in: int) -> None:
    """Refuses a deserialised module that is not a pure kernel of the expected interface.

    Raises:
        KernelError: a forbidden custom call, host transfer or effect, or a wrong interface.
    """
    if exported.ordered_effects or exported.unordered_effects:
        raise KernelError(f"{what} has side effects, which kernels may not have")
    if exported.nr_devices != 1:
        raise KernelError(f"{what} is a {exported.nr_devices}-device program; kernels use one")
    text = exported.mlir_module()
    targets = set(_CUSTOM_CALL.findall(text)) | set(_CUSTOM_CALL_GENERIC.findall(text))
    if text.count("custom_call") != len(_CUSTOM_CALL.findall(text)) + len(
        _CUSTOM_CALL_GENERIC.findall(text)
    ):
        raise KernelError(f"{what} contains a custom call metarl cannot identify")
    bad = sorted(targets - ALLOWED_CUSTOM_CALLS)
    if bad:
        raise KernelError(
            f"{what} calls {', '.join(bad)}: custom calls (host callbacks, native code) are "
            f"not allowed in kernels (allowed: {', '.join(sorted(ALLOWED_CUSTOM_CALLS))})"
        )
    ops = set(_OP.findall(text)) & set(_FORBIDDEN_OPS)
    if ops:
        raise KernelError(f"{what} uses {', '.join(sorted(ops))}, which kernels may not")
    if len(exported.in_avals) != n_in:
        raise KernelError(f"{what} takes {len(exported.in_avals)} inputs; expected {n_in}")
    for aval in (*exported.in_avals, *exported.out_avals):
        if str(aval.dtype) != "float32" or len(aval.shape) > 1:
            raise KernelError(
                f"{what} has an input or output of type {aval.str_short()}; kernels take and "
                "return float32 scalars and vectors"
            )
    for aval, kind in zip(exported.in_avals, signature.kinds, strict=False):
        if (len(aval.shape) == 1) != (kind == "vector"):
            raise KernelError(f"{what} does not match the slot's interface ({aval.str_short()})")


@functools.lru_cache(maxsize=64)
def _deserialise(data: bytes, signature: KernelSignature, which: str) -> Any:
    what = f"the kernel's {which} module"
    try:
        exported = export.deserialize(bytearray(data))
    except Exception as e:
        raise KernelError(f"{what} is not a valid serialised StableHLO module ({e})") from None
    n_in = len(signature.inputs) + (len(signature.outputs) if which == "vjp" else 0)
    verify_module(exported, signature, what, n_in)
    n_out = len(signature.outputs) if which == "primal" else signature.kinds.count("vector")
    if len(exported.out_avals) != n_out:
        raise KernelError(f"{what} returns {len(exported.out_avals)} values; expected {n_out}")
    return exported


def _mapped(call: Callable[..., Any]) -> Callable[..., Any]:
    """`call` with a batching rule: `lax.map` over the batch axis (see the module doc)."""

    @custom_vmap
    def f(*args: Any) -> tuple[Any, ...]:
        return tuple(call(*args))

    @f.def_vmap
    def rule(axis_size: int, in_batched: Any, *args: Any) -> tuple[Any, Any]:
        del axis_size
        batched = tuple(a for a, b in zip(args, in_batched, strict=True) if b)

        def one(xs: tuple[Any, ...]) -> tuple[Any, ...]:
            it = iter(xs)
            return f(*(next(it) if b else a for a, b in zip(args, in_batched, strict=True)))

        out = jax.lax.map(one, batched)
        return out, tuple(True for _ in out)

    return f


@dataclass(frozen=True)
class ExportedKernel:
    """A verified code kernel, callable inside `jit`, `vmap` and `grad` (module doc).

    Build it with `from_bytes`; equality and hashing use the module bytes, so the kernel can
    be a static field of a slot object.
    """

    primal: bytes
    vjp: bytes | None
    signature: KernelSignature

    @classmethod
    def from_bytes(
        cls, primal: bytes, vjp: bytes | None, signature: KernelSignature
    ) -> ExportedKernel:
        """Deserialises and verifies the modules.

        Raises:
            KernelError: invalid bytes, a forbidden operation, a wrong interface, or a missing
                VJP module for a differentiable slot.
        """
        if signature.differentiable and vjp is None:
            raise KernelError("the kernel has no gradient (VJP) module, which its slot needs")
        _deserialise(bytes(primal), signature, "primal")
        if vjp is not None:
            _deserialise(bytes(vjp), signature, "vjp")
        return cls(bytes(primal), None if vjp is None else bytes(vjp), signature)

    def tensors(self) -> dict[str, Any]:
        """The modules as uint8 tensors, as artefacts store them."""
        out = {"primal": np.frombuffer(self.primal, np.uint8).copy()}
        if self.vjp is not None:
            out["vjp"] = np.frombuffer(self.vjp, np.uint8).copy()
        return out

    def __call__(self, *args: Any) -> tuple[Any, ...]:
        """Calls the kernel on vectors of one length and scalars; returns its output vectors."""
        fn = _callable(self.primal, self.vjp, self.signature)
        return fn(*(jnp.asarray(a, jnp.float32) for a in args))


def code_kernel(code: ExportedKernel | None) -> ExportedKernel:
    """`code`, or the error for a code kernel built without its exported module."""
    if code is None:
        raise KernelError("a code kernel runs from its exported StableHLO, which is missing")
    return code


@functools.lru_cache(maxsize=64)
def _callable(primal: bytes, vjp: bytes | None, signature: KernelSignature) -> Callable[..., Any]:
    forward = _mapped(_deserialise(primal, signature, "primal").call)
    if vjp is None:
        return forward
    backward = _mapped(_deserialise(vjp, signature, "vjp").call)
    vector_idx = [i for i, kind in enumerate(signature.kinds) if kind == "vector"]

    @jax.custom_vjp
    def kernel(*args: Any) -> tuple[Any, ...]:
        return forward(*args)

    def fwd(*args: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return forward(*args), args

    def bwd(args: tuple[Any, ...], cts: tuple[Any, ...]) -> tuple[Any, ...]:
        grads = iter(backward(*args, *cts))
        return tuple(
            next(grads) if i in vector_idx else jnp.zeros_like(a) for i, a in enumerate(args)
        )

    kernel.defvjp(fwd, bwd)
    return kernel
