"""The one way an artefact file becomes a kernel: every reader goes through `load_kernel`.

It reads and verifies the file (`artefacts.load_artefact`: integrity digests, manifest
schema), checks that this version of metarl knows the algorithm, its form and its feature spec,
that a neural kernel's tensors have the shapes its architecture implies, and builds a code
kernel from its exported StableHLO (`learned/exported.py`), refusing forbidden operations.
Nothing in an artefact is ever executed as Python: a code kernel's source is text to read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from metarl_cli.artefacts import Manifest, artefact_digest, load_artefact
from metarl_cli.config import TrainConfig
from metarl_cli.errors import ArtefactError, KernelError, UnknownNameError
from metarl_cli.learned.base import LearnedAlgorithm, get_algorithm, slots_for
from metarl_cli.learned.exported import FORMAT, ExportedKernel
from metarl_cli.rl.lpg_train import OwnTrainer
from metarl_cli.rl.slots import DriftSlot, OptimiserSlot, Slots, Theta


@dataclass(frozen=True)
class LoadedKernel:
    """A verified artefact, ready to fill a trainer slot.

    Attributes:
        path: the file it was read from.
        digest: the file's sha256 (for provenance links).
        manifest: its validated manifest.
        algorithm: the registered learned algorithm it belongs to.
        tensors: its tensors as a nested dict of numpy arrays.
        code: a code kernel's verified exported program (None for other forms).
    """

    path: str
    digest: str
    manifest: Manifest
    algorithm: LearnedAlgorithm
    tensors: dict[str, Any]
    code: ExportedKernel | None = None

    @property
    def form(self) -> str:
        """The kernel's form ("neural" | "symbolic" | "code")."""
        return self.manifest.form

    @property
    def text(self) -> str | None:
        """A symbolic kernel's expression or a code kernel's source (for reading)."""
        return self.manifest.expression if self.form == "symbolic" else self.manifest.source

    @property
    def theta(self) -> Theta:
        """The trainer's θ: the neural kernel's weights in its slot, nothing elsewhere."""
        if self.form != "neural":
            return Theta()
        return Theta.for_slot(self.algorithm.slot, jax.tree.map(jnp.asarray, self.tensors))

    def kernel(self, cfg: TrainConfig | None) -> DriftSlot | OptimiserSlot:
        """The slot object for `cfg` (the trainer calls it with its slot of `theta`)."""
        text = None if self.form == "code" else self.text
        return self.algorithm.kernel(
            cfg, dict(self.manifest.architecture), form=self.form, text=text, code=self.code
        )

    def slots(self, cfg: TrainConfig) -> Slots | OwnTrainer:
        """The trainer's slots with this kernel in its slot and the paper's reference elsewhere
        (an update rule: the `OwnTrainer` that runs it)."""
        if self.algorithm.slot == "update_rule":
            return OwnTrainer(self.kernel(cfg))
        return slots_for(
            self.algorithm,
            cfg,
            dict(self.manifest.architecture),
            form=self.form,
            text=None if self.form == "code" else self.text,
            code=self.code,
        )


def load_kernel(path: str | os.PathLike[str], expect_algorithm: str | None = None) -> LoadedKernel:
    """Reads, verifies and builds the kernel of an artefact file.

    Args:
        path: the artefact file.
        expect_algorithm: refuse an artefact of any other algorithm.

    Raises:
        ArtefactError: the file is unreadable, tampered with, of another algorithm, of a form
            or feature spec this version cannot run, has tensors that disagree with its
            architecture, or is a code kernel in the old (Python-only) format.
        KernelError: a code kernel's exported program is invalid or uses forbidden operations.
    """
    manifest, tensors = load_artefact(path)
    if expect_algorithm is not None and manifest.algorithm != expect_algorithm:
        raise ArtefactError(
            f"{path} is a {manifest.algorithm!r} artefact ({manifest.slot} slot, "
            f"{manifest.form}); expected a {expect_algorithm!r} artefact"
        )
    try:
        algorithm = get_algorithm(manifest.algorithm)
    except UnknownNameError:
        algorithm = None
    if algorithm is None or manifest.form not in algorithm.forms:
        raise ArtefactError(
            f"{path}: algorithm {manifest.algorithm!r} ({manifest.form}) cannot be run by this "
            "version of metarl"
        )
    if manifest.feature_spec.digest != algorithm.spec.digest:
        raise ArtefactError(
            f"{path}: feature spec of {manifest.algorithm!r} v{manifest.feature_spec.version} "
            f"({manifest.feature_spec.digest[:12]}) does not match this version's "
            f"v{algorithm.spec.version} ({algorithm.spec.digest[:12]})"
        )
    code = None
    if manifest.form == "code":
        code = _code_of(path, manifest, tensors, algorithm)
    elif manifest.form == "neural":
        _check_shapes(path, manifest, tensors, algorithm)
    elif tensors:
        raise ArtefactError(f"{path}: a {manifest.form} artefact holds unexpected tensors")
    return LoadedKernel(str(path), artefact_digest(path), manifest, algorithm, tensors, code)


def _code_of(
    path: Any, manifest: Manifest, tensors: dict[str, Any], algorithm: LearnedAlgorithm
) -> Any:
    if manifest.kernel_format != FORMAT or "code" not in tensors:
        raise ArtefactError(
            f"{path} is a code artefact in the old format (Python source only), which metarl no "
            f"longer runs; re-import its source: metarl inspect {path} shows it, then "
            f"`metarl import code SOURCE.py --algo {manifest.algorithm} -o NEW.safetensors`"
        )
    modules = tensors["code"]
    extra = set(modules) - {"primal", "vjp"}
    if not isinstance(modules, dict) or "primal" not in modules or extra:
        raise ArtefactError(f"{path}: a code artefact holds code/primal (and code/vjp) only")
    for name, arr in modules.items():
        if arr.dtype.name != "uint8" or arr.ndim != 1:
            raise ArtefactError(f"{path}: code/{name} is not a byte string")
    try:
        return ExportedKernel.from_bytes(
            modules["primal"].tobytes(),
            modules["vjp"].tobytes() if "vjp" in modules else None,
            algorithm.code_signature,
        )
    except KernelError as e:
        raise KernelError(f"{path}: {e}") from None


def _check_shapes(
    path: Any, manifest: Manifest, tensors: dict[str, Any], algorithm: LearnedAlgorithm
) -> None:
    """The tensors must be exactly those `algorithm.init` makes for the architecture."""
    try:
        expected = jax.eval_shape(
            lambda key: algorithm.init(key, **manifest.architecture), jax.random.key(0)
        )
    except Exception as e:  # an architecture the algorithm does not accept
        raise ArtefactError(f"{path}: invalid architecture {manifest.architecture}: {e}") from None
    want, got = _shapes(expected), _shapes(tensors)
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:3]
        raise ArtefactError(
            f"{path}: tensors do not match the manifest's architecture "
            f"{dict(manifest.architecture)} (e.g. {diff})"
        )


def _shapes(tree: Any, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """{"a/b": shape} of a nested mapping of arrays or ShapeDtypeStructs."""
    out: dict[str, tuple[int, ...]] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_shapes(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = tuple(value.shape)
    return out
