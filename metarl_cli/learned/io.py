"""Saving a learned algorithm's meta-parameters as a self-describing artefact."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from metarl_cli._version import package_versions
from metarl_cli.artefacts import FeatureSpecRef, Manifest, MetaLearnerInfo, save_artefact
from metarl_cli.artefacts.manifest import Form
from metarl_cli.errors import KernelError
from metarl_cli.learned.base import LearnedAlgorithm, check_form
from metarl_cli.learned.exported import FORMAT


def manifest_for(algorithm: LearnedAlgorithm, form: Form = "neural", **fields: Any) -> Manifest:
    """A manifest naming `algorithm` (its slot and feature spec), `form` and this install's
    package versions, plus `fields` (architecture, provenance, notes, ...)."""
    return Manifest(
        algorithm=algorithm.name,
        slot=algorithm.slot,
        form=form,
        feature_spec=FeatureSpecRef(version=algorithm.spec.version, digest=algorithm.spec.digest),
        versions=package_versions(),
        **fields,
    )


def learned_manifest(
    algorithm: LearnedAlgorithm,
    learner: str,
    config: dict[str, Any],
    *,
    architecture: dict[str, Any],
    training_envs: list[str],
    generation: int,
    **fields: Any,
) -> Manifest:
    """The manifest of `algorithm` meta-learned by `learner` (its id in `meta/scaffold.py`)
    with `config` (its settings, seeds and costs) on `training_envs`, after `generation`;
    `fields` as in `manifest_for` (fitness summary, parent digest, notes)."""
    return manifest_for(
        algorithm,
        architecture=architecture,
        meta_learner=MetaLearnerInfo(name=learner, config=config),
        training_envs=list(training_envs),
        generation=generation,
        **fields,
    )


def save_learned(
    path: str | Path,
    algorithm: LearnedAlgorithm,
    theta: Any,
    *,
    architecture: dict[str, Any],
    meta_learner: MetaLearnerInfo | None = None,
    training_envs: list[str] | None = None,
    parent_digest: str | None = None,
    notes: str = "",
    force: bool = False,
) -> Manifest:
    """Writes `theta` (a nested dict of arrays) with a manifest naming the algorithm and spec."""
    manifest = manifest_for(
        algorithm,
        architecture=architecture,
        meta_learner=meta_learner,
        training_envs=training_envs or [],
        parent_digest=parent_digest,
        notes=notes,
    )
    return save_artefact(path, theta, manifest, force=force)


def save_kernel(
    path: str | Path,
    algorithm: LearnedAlgorithm,
    form: str,
    text: str,
    *,
    meta_learner: MetaLearnerInfo | None = None,
    training_envs: list[str] | None = None,
    parent_digest: str | None = None,
    notes: str = "",
    force: bool = False,
    code: Any = None,
    generation: int | None = None,
    fitness_summary: dict[str, float] | None = None,
) -> Manifest:
    """Writes a symbolic or code kernel (checked first) as an artefact.

    A symbolic kernel has no tensors. A code kernel stores its exported StableHLO (`code`, an
    `ExportedKernel` made by the sandbox child) as uint8 tensors under `code/`, and `text`,
    its source, for reading only.
    """
    check_form(algorithm, form, text)  # a form the algorithm has, so a `Form`
    if form == "code" and code is None:
        raise KernelError("a code kernel is saved with its exported program (export it first)")
    manifest = manifest_for(
        algorithm,
        cast(Form, form),
        expression=text if form == "symbolic" else None,
        source=text if form == "code" else None,
        kernel_format=FORMAT if form == "code" else None,
        generation=generation,
        fitness_summary=fitness_summary,
        meta_learner=meta_learner,
        training_envs=training_envs or [],
        parent_digest=parent_digest,
        notes=notes,
    )
    tensors = {"code": code.tensors()} if form == "code" else {}
    return save_artefact(path, tensors, manifest, force=force)
