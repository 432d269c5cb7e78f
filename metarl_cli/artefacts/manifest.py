"""The manifest stored in every artefact's header: what the artefact is and where it came from.

An artefact is one learned kernel (a drift function, an optimiser or an update rule) in one of
three forms: a neural network (its weights are the artefact's tensors), a symbolic expression or
a piece of code (no tensors). The manifest records everything needed to rebuild and check it —
the algorithm and slot it plugs into, the input-feature spec it was trained against, its
architecture or text — plus provenance: the meta-learner, the training environments, the parent
artefact it was distilled from and the package versions that wrote it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metarl_cli._version import __version__

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS",
    "FeatureSpecRef",
    "Manifest",
    "MetaLearnerInfo",
]

SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (2,)
"""Manifest schema versions this release can read; bump on any incompatible manifest change.

Version 2 added `manifest_sha256`. Version 1 files are refused, not read: their manifest has no
digest, so reading them would let anyone drop an edited manifest's digest by writing
`"schema_version": 1`."""

Slot = Literal["drift", "optimiser", "update_rule"]
Form = Literal["neural", "symbolic", "code"]

# NaN and infinite fitness values are real outcomes (a diverged run) and must survive a round
# trip, so they are written as the JSON extensions NaN/Infinity rather than as null.
_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class FeatureSpecRef(BaseModel):
    """The input-feature spec a kernel was trained against.

    A kernel only makes sense with the exact features it saw in training, so loading code
    compares this against the running feature spec and refuses a mismatch.

    Attributes:
        version: the feature spec's version number.
        digest: a hash of the feature spec's definition.
    """

    model_config = _MODEL_CONFIG

    version: int
    digest: str


class MetaLearnerInfo(BaseModel):
    """The meta-learner that produced a kernel.

    Attributes:
        name: the meta-learner's id ("es", "llm", "distill", ...).
        config: its settings, as plain JSON-compatible values.
    """

    model_config = _MODEL_CONFIG

    name: str
    config: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    """Describes one artefact; stored as JSON in the safetensors header.

    Attributes:
        schema_version: the manifest layout version (see `SUPPORTED_SCHEMA_VERSIONS`).
        algorithm: the registry id of the algorithm the kernel belongs to ("lpo", "open", ...).
        slot: which part of the RL algorithm the kernel replaces.
        form: how the kernel is represented.
        feature_spec: the input features the kernel expects.
        architecture: network hyperparameters for a `neural` kernel (layer widths, activation).
        expression: the formula of a `symbolic` kernel.
        source: the source text of a `code` kernel, kept for reading only: the kernel runs
            from its exported StableHLO (the artefact's `code/primal`, `code/vjp` tensors).
        kernel_format: how a `code` kernel's program is stored ("stablehlo/1"); None in
            artefacts written before code kernels were exported, which are refused.
        meta_learner: what produced the kernel; None for hand-written kernels.
        training_envs: the environments the kernel was meta-trained on.
        generation: the meta-learning generation the kernel was taken from.
        fitness_summary: summary statistics of its meta-training fitness.
        parent_digest: the file sha256 of the artefact this one was derived from.
        versions: package versions at write time ("metarl" is always filled in by the writer).
        tensors_sha256: the digest of the tensors, filled in by `save_artefact`.
        manifest_sha256: the digest of this manifest's JSON without this field (so it covers
            `tensors_sha256` too), filled in by `save_artefact` and checked on load.
        created: when the manifest was made (UTC).
        notes: free text.
    """

    model_config = _MODEL_CONFIG

    schema_version: Literal[2] = 2
    algorithm: str
    slot: Slot
    form: Form
    feature_spec: FeatureSpecRef
    architecture: dict[str, int | list[int] | str] = Field(default_factory=dict)
    expression: str | None = None
    source: str | None = None
    kernel_format: str | None = None
    meta_learner: MetaLearnerInfo | None
    training_envs: list[str] = Field(default_factory=list)
    generation: int | None = None
    fitness_summary: dict[str, float] | None = None
    parent_digest: str | None = None
    versions: dict[str, str] = Field(default_factory=lambda: {"metarl": __version__})
    tensors_sha256: str = ""
    manifest_sha256: str = ""
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    notes: str = ""

    @model_validator(mode="after")
    def _form_has_its_payload(self) -> Manifest:
        """A symbolic kernel needs its expression and a code kernel its source."""
        if self.form == "symbolic" and not (self.expression and self.expression.strip()):
            raise ValueError("a symbolic artefact needs a non-empty `expression`")
        if self.form == "code" and not self.kernel_format and not (self.source or "").strip():
            raise ValueError("a code artefact needs its exported program or its `source`")
        return self
