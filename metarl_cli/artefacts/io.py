"""Reading and writing artefact files: safetensors tensors plus a JSON manifest in the header.

Layout: a standard safetensors file whose header metadata holds `format: "metarl"` and
`metarl_manifest: <Manifest JSON>`. Nested parameter trees are stored flat under "/"-joined
keys. The manifest carries a sha256 of the tensors (`tensors_digest`) and one of itself
(`manifest_digest`, which covers the tensors' digest too), so a file whose tensors or manifest
were edited after it was written is caught on load; `artefact_digest` hashes the whole file for
provenance links. The digests catch corruption and careless edits, not a forger who recomputes
them: they are not signatures.
Symbolic and code artefacts have no tensors: safetensors stores an empty tensor set natively.
Everything here is numpy only, so that reading an artefact never waits for JAX to import.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import safetensors.numpy
from pydantic import ValidationError

from metarl_cli._version import __version__
from metarl_cli.artefacts.manifest import SUPPORTED_SCHEMA_VERSIONS, Manifest
from metarl_cli.errors import ArtefactError
from metarl_cli.fsutil import atomic_write_bytes, check_writable, read_regular_file

_SEP = "/"
_FORMAT = "metarl"
MAX_BYTES = 2**28
"""The largest artefact read (256 MiB; the paper's networks take kilobytes)."""
_MANIFEST_KEY = "metarl_manifest"
# The dtypes safetensors' numpy backend can both write and read back (it writes bfloat16 but
# cannot load it), so anything else is refused at save time rather than at load time.
_INTS = tuple(f"{u}int{n}" for u in ("", "u") for n in (8, 16, 32, 64))
_DTYPES = frozenset(("bool", "float16", "float32", "float64", *_INTS))


def flatten_tree(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flattens a nested mapping of arrays into one level with "/"-joined keys.

    Empty sub-mappings hold no arrays and are dropped, so they do not survive a round trip.

    Args:
        tree: nested mappings (dicts, flax FrozenDicts) whose leaves are array-likes.

    Returns:
        {"a/b/c": array}, every leaf converted by `np.asarray`.

    Raises:
        ValueError: a key is not a non-empty string or contains "/".
    """
    flat: dict[str, np.ndarray] = {}

    def visit(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if not isinstance(key, str) or not key or _SEP in key:
                raise ValueError(f"tree keys must be non-empty strings without '/', got {key!r}")
            if isinstance(value, Mapping):
                visit(value, f"{prefix}{key}{_SEP}")
            else:
                flat[prefix + key] = np.asarray(value)

    visit(tree, "")
    return flat


def unflatten_tree(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Inverts `flatten_tree`: {"a/b": array} becomes {"a": {"b": array}}.

    Raises:
        ValueError: two keys collide, such as "a" and "a/b".
    """
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(_SEP)
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"key {name!r} collides with a tensor at {part!r}")
        if leaf in node:
            raise ValueError(f"key {name!r} collides with another key")
        node[leaf] = value
    return tree


def tensors_digest(flat: Mapping[str, np.ndarray]) -> str:
    """Returns the sha256 hex digest of flat tensors (key, dtype, shape, bytes; keys sorted).

    Arrays are hashed in little-endian C order, as safetensors stores them, so the digest is the
    same before saving and after loading, in any process on any machine.

    Raises:
        ValueError: an array has a dtype safetensors cannot round-trip.
    """
    h = hashlib.sha256()
    for key in sorted(flat):
        arr = _canonical(key, flat[key])
        # Each field is length-prefixed, so no two different inputs feed the same byte stream.
        for part in (key.encode(), arr.dtype.str.encode(), json.dumps(arr.shape).encode()):
            h.update(len(part).to_bytes(8, "little") + part)
        h.update(arr.nbytes.to_bytes(8, "little"))
        h.update(arr.tobytes(order="C"))
    return h.hexdigest()


def save_artefact(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Any],
    manifest: Manifest,
    *,
    force: bool = False,
) -> Manifest:
    """Writes an artefact atomically.

    Args:
        path: the output file (conventionally `*.safetensors`).
        tensors: a nested mapping of arrays (numpy or JAX); empty for symbolic and code kernels.
        manifest: the description; `tensors_sha256`, `manifest_sha256` and
            `versions["metarl"]` are filled in.
        force: whether an existing file may be overwritten.

    Returns:
        The manifest as written.

    Raises:
        OutputExistsError: the file exists and `force` is false (checked before any work).
        MetarlError: the path cannot be written.
        ValueError: a tree key or dtype cannot be stored (a programming error).
    """
    target = check_writable(path, force=force)
    flat = {key: _canonical(key, arr) for key, arr in flatten_tree(tensors).items()}
    manifest = manifest.model_copy(
        update={
            "tensors_sha256": tensors_digest(flat),
            "versions": {**manifest.versions, "metarl": __version__},
        }
    )
    digest = manifest_digest(json.loads(manifest.model_dump_json()))
    manifest = manifest.model_copy(update={"manifest_sha256": digest})
    metadata = {"format": _FORMAT, _MANIFEST_KEY: manifest.model_dump_json()}
    atomic_write_bytes(target, safetensors.numpy.save(flat, metadata=metadata), force=force)
    return manifest


def load_artefact(path: str | os.PathLike[str]) -> tuple[Manifest, dict[str, Any]]:
    """Reads and verifies an artefact; returns (manifest, nested dict of numpy arrays).

    Raises:
        ArtefactError: the file is missing, unreadable, not a metarl artefact, has an invalid
            or unsupported manifest, or its manifest or tensors do not match their digests.
    """
    data = _read_bytes(path)
    manifest = _parse_manifest(path, _manifest_text(path, data))
    try:
        flat = safetensors.numpy.load(data)
        tree = unflatten_tree(flat)
        actual = tensors_digest(flat)
    except Exception as exc:
        raise ArtefactError(_unreadable(path, _reason(exc))) from None
    if actual != manifest.tensors_sha256:
        raise ArtefactError(
            f"{path} failed its integrity check: tensors sha256 {actual} != manifest "
            f"{manifest.tensors_sha256 or '(none)'}; the file was modified after it was written"
        )
    return manifest, tree


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """Returns the sha256 hex digest of a manifest's JSON object without `manifest_sha256`.

    The object is hashed in a canonical form (sorted keys, no spaces, ASCII), so the digest does
    not depend on how the JSON was laid out, only on its content.
    """
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def artefact_digest(path: str | os.PathLike[str]) -> str:
    """Returns the sha256 hex digest of the whole file, as recorded in `parent_digest`.

    Raises:
        ArtefactError: the file is missing or unreadable.
    """
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def _canonical(key: str, value: Any) -> np.ndarray:
    """Returns `value` as a C-contiguous little-endian array of a storable dtype."""
    arr = np.asarray(value)
    if arr.dtype.name not in _DTYPES:
        raise ValueError(f"tensor {key!r} has dtype {arr.dtype}, which artefacts cannot store")
    # Not np.ascontiguousarray: it turns 0-d arrays into 1-d ones.
    return arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, once it is known to be a regular file of a sane size (a FIFO would
    block and /dev/zero would fill memory)."""
    return read_regular_file(path, what="artefact", max_bytes=MAX_BYTES, error=ArtefactError)


def _manifest_text(path: str | os.PathLike[str], data: bytes) -> str:
    """Parses the safetensors header by hand to reach the manifest before touching tensors."""
    if len(data) < 8:
        raise ArtefactError(_unreadable(path, f"only {len(data)} bytes long"))
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ArtefactError(_unreadable(path, f"header of {size} bytes exceeds the file size"))
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ArtefactError(_unreadable(path, "header is not valid JSON")) from None
    if not isinstance(header, dict):
        raise ArtefactError(_unreadable(path, "header is not a JSON object"))
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or not isinstance(metadata.get(_MANIFEST_KEY), str):
        raise ArtefactError(f"{path} was not written by metarl (no manifest in its header)")
    return metadata[_MANIFEST_KEY]


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object hook: two values for one key would let two readers see two manifests."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


def _parse_manifest(path: str | os.PathLike[str], text: str) -> Manifest:
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError):
        raise ArtefactError(f"{path} has an invalid manifest: not valid JSON") from None
    if not isinstance(obj, dict):
        raise ArtefactError(f"{path} has an invalid manifest: not a JSON object")
    # Checked before validation, so a newer file gets "upgrade metarl", not a field error.
    version = obj.get("schema_version", 1)
    if type(version) is int and 0 < version < min(SUPPORTED_SCHEMA_VERSIONS):
        raise ArtefactError(
            f"{path} has manifest schema version {version}, written by an older metarl without a "
            f"manifest digest, so it cannot be verified; re-export it with metarl {__version__} "
            "(re-run the command that wrote it, or `metarl import` its source)"
        )
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        raise ArtefactError(
            f"{path} has manifest schema version {version!r}, but metarl {__version__} reads "
            f"only version(s) {supported}; upgrade metarl to load it"
        )
    try:
        manifest = Manifest.model_validate(obj)  # the object the digest below is taken of
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        where = f"field '{field}': " if field else ""
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ArtefactError(
            f"{path} has an invalid manifest: {where}{first['msg']}{more}"
        ) from None
    actual = manifest_digest(obj)
    if actual != manifest.manifest_sha256:
        raise ArtefactError(
            f"{path} failed its integrity check: manifest sha256 {actual} != recorded "
            f"{manifest.manifest_sha256 or '(none)'}; the manifest was edited after it was "
            "written (re-export the artefact rather than editing it)"
        )
    return manifest


def _unreadable(path: str | os.PathLike[str], reason: str) -> str:
    return f"{path} is not a readable metarl artefact (truncated or corrupted): {reason}"


def _reason(exc: Exception) -> str:
    """The first line of an exception's message, short enough for a one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
