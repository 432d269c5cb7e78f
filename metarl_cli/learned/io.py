"""Saving a learned algorithm's meta-parameters as a self-describing artefact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarl_cli.artefacts import FeatureSpecRef, Manifest, MetaLearnerInfo, save_artefact


def save_learned(
    path: str | Path,
    algorithm: Any,
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
    from metarl_cli.evaluation import package_versions

    manifest = Manifest(
        algorithm=algorithm.name,
        slot=algorithm.slot,
        form="neural",
        feature_spec=FeatureSpecRef(version=algorithm.spec.version, digest=algorithm.spec.digest),
        architecture=architecture,
        meta_learner=meta_learner,
        training_envs=training_envs or [],
        parent_digest=parent_digest,
        versions=package_versions(),
        notes=notes,
    )
    return save_artefact(path, theta, manifest, force=force)
