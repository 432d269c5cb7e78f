"""Artefacts: learned kernels saved as safetensors files with a verified manifest.

`save_artefact` writes a kernel's tensors and its `Manifest` atomically; `load_artefact` reads
one back and checks it (format, manifest schema, manifest and tensor digests), raising
`ArtefactError` with a one-line message on any problem. Numpy only, so importing this never
pulls in JAX.
"""

from __future__ import annotations

from metarl_cli.artefacts.io import (
    artefact_digest,
    flatten_tree,
    load_artefact,
    manifest_digest,
    save_artefact,
    tensors_digest,
    unflatten_tree,
)
from metarl_cli.artefacts.manifest import (
    SUPPORTED_SCHEMA_VERSIONS,
    FeatureSpecRef,
    Manifest,
    MetaLearnerInfo,
)

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS",
    "FeatureSpecRef",
    "Manifest",
    "MetaLearnerInfo",
    "artefact_digest",
    "flatten_tree",
    "load_artefact",
    "manifest_digest",
    "save_artefact",
    "tensors_digest",
    "unflatten_tree",
]
