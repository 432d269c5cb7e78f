"""Tests of artefact files (metarl_cli.artefacts) and safe output writing (metarl_cli.fsutil)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydantic import ValidationError

from metarl_cli._version import __version__
from metarl_cli.artefacts import (
    FeatureSpecRef,
    Manifest,
    MetaLearnerInfo,
    artefact_digest,
    flatten_tree,
    load_artefact,
    manifest_digest,
    save_artefact,
    tensors_digest,
    unflatten_tree,
)
from metarl_cli.errors import ArtefactError, MetarlError, OutputExistsError
from metarl_cli.fsutil import atomic_write_text, check_writable

FEATURES = FeatureSpecRef(version=1, digest="abc123")
ROOT = Path(__file__).resolve().parents[1]


def make_manifest(**overrides) -> Manifest:
    fields = dict(
        algorithm="lpo",
        slot="drift",
        form="neural",
        feature_spec=FEATURES,
        architecture={"hidden": [32, 32], "activation": "tanh"},
        meta_learner=MetaLearnerInfo(name="es", config={"popsize": 64}),
        training_envs=["ant"],
        fitness_summary={"mean": 1.5, "max": float("inf")},
    )
    return Manifest(**(fields | overrides))


def make_tensors() -> dict:
    rng = np.random.default_rng(0)
    return {
        "dense_0": {"kernel": rng.normal(size=(4, 3)).astype(np.float32), "bias": np.zeros(3)},
        "steps": np.array(7, dtype=np.int32),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 2), dtype=np.float32),
    }


def assert_trees_identical(a: dict, b: dict) -> None:
    flat_a, flat_b = flatten_tree(a), flatten_tree(b)
    assert flat_a.keys() == flat_b.keys()
    for key, arr in flat_a.items():
        assert flat_b[key].dtype == arr.dtype and flat_b[key].shape == arr.shape, key
        assert flat_b[key].tobytes() == arr.tobytes(), key


def split_file(data: bytes) -> tuple[dict, bytes]:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def join_file(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + body


def edit_manifest(path: Path, **changes) -> None:
    header, body = split_file(path.read_bytes())
    manifest = json.loads(header["__metadata__"]["metarl_manifest"]) | changes
    header["__metadata__"]["metarl_manifest"] = json.dumps(manifest)
    path.write_bytes(join_file(header, body))


def test_round_trip_keeps_manifest_tensors_and_dtypes(tmp_path):
    path, tensors = tmp_path / "k.safetensors", make_tensors()
    written = save_artefact(path, tensors, make_manifest())
    manifest, loaded = load_artefact(path)
    assert manifest == written
    assert written.tensors_sha256 == tensors_digest(flatten_tree(tensors))
    assert written.versions["metarl"] == __version__
    assert manifest.fitness_summary == {"mean": 1.5, "max": float("inf")}
    assert loaded["dense_0"]["kernel"].dtype == np.float32 and loaded["steps"].dtype == np.int32
    assert_trees_identical(loaded, tensors)


def test_symbolic_artefact_without_tensors_round_trips(tmp_path):
    written = save_artefact(
        tmp_path / "s.safetensors", {}, make_manifest(form="symbolic", expression="x * tanh(y)")
    )
    manifest, loaded = load_artefact(tmp_path / "s.safetensors")
    assert (manifest, loaded) == (written, {})
    assert manifest.expression == "x * tanh(y)"


keys = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=5)
small_arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
trees = st.recursive(
    st.dictionaries(keys, small_arrays, min_size=1, max_size=3),
    lambda children: st.dictionaries(keys, children | small_arrays, min_size=1, max_size=3),
    max_leaves=8,
)


@given(trees)
def test_flatten_unflatten_round_trip(tree):
    flat = flatten_tree(tree)
    assert all(isinstance(arr, np.ndarray) for arr in flat.values())
    back = unflatten_tree(flat)
    assert_trees_identical(back, tree)
    assert json.dumps(tree, default=str) == json.dumps(back, default=str)  # same nesting


@settings(max_examples=30, deadline=None)
@given(trees)
def test_save_load_round_trip_is_bit_exact(tree):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.safetensors"
        written = save_artefact(path, tree, make_manifest())
        manifest, loaded = load_artefact(path)
    assert manifest == written
    assert_trees_identical(loaded, tree)


def test_digest_changes_with_one_element_and_ignores_layout():
    flat = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.ones(2, dtype=np.int32)}
    digest = tensors_digest(flat)
    assert tensors_digest(dict(reversed(flat.items()))) == digest
    assert tensors_digest({**flat, "b": np.asfortranarray(flat["b"])}) == digest
    assert tensors_digest({**flat, "a": flat["a"].astype(">i4")}) == digest
    changed = flat["b"].copy()
    changed[1, 2] = np.nextafter(changed[1, 2], np.float32(100))
    assert tensors_digest({**flat, "b": changed}) != digest
    assert tensors_digest({**flat, "a": flat["a"].astype(np.int64)}) != digest
    assert tensors_digest({**flat, "b": flat["b"].reshape(3, 2)}) != digest


def test_digest_is_stable_across_processes():
    code = "import numpy as np; from metarl_cli.artefacts import tensors_digest as d; "
    code += "print(d({'w': np.arange(5, dtype=np.float32)}))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == tensors_digest({"w": np.arange(5, dtype=np.float32)})


def test_importing_artefacts_does_not_import_jax():
    code = "import sys, metarl_cli.artefacts, metarl_cli.fsutil; print('jax' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "k.safetensors"
    save_artefact(path, make_tensors(), make_manifest())
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="pass --force"):
        save_artefact(path, {}, make_manifest(notes="second"))
    assert path.read_bytes() == before
    save_artefact(path, {}, make_manifest(notes="second"), force=True)
    assert load_artefact(path)[0].notes == "second"


def test_truncated_and_random_files_are_rejected(tmp_path):
    path = tmp_path / "k.safetensors"
    save_artefact(path, make_tensors(), make_manifest())
    data = path.read_bytes()
    for size in (len(data) // 2, len(data) - 1, 20, 3, 0):
        path.write_bytes(data[:size])
        with pytest.raises(ArtefactError, match="truncated or corrupted"):
            load_artefact(path)
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ArtefactError, match="not a readable metarl artefact"):
        load_artefact(path)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_no_corruption_escapes_as_a_raw_exception(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.safetensors"
        save_artefact(path, make_tensors(), make_manifest())
        raw = bytearray(path.read_bytes())
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[index]))
        path.write_bytes(bytes(raw))
        try:
            load_artefact(path)
        except ArtefactError as exc:
            assert "\n" not in str(exc)


def test_flipped_tensor_byte_fails_the_integrity_check(tmp_path):
    path = tmp_path / "k.safetensors"
    save_artefact(path, make_tensors(), make_manifest())
    raw = bytearray(path.read_bytes())
    header, _ = split_file(bytes(raw))
    start = 8 + int.from_bytes(raw[:8], "little") + header["dense_0/kernel"]["data_offsets"][0]
    raw[start] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtefactError, match="failed its integrity check") as info:
        load_artefact(path)
    assert "modified after it was written" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"slot": "bogus"}, "field 'slot'"),
        ({"unknown": 1}, "field 'unknown'"),
        ({"feature_spec": {"version": "x", "digest": "d"}}, "field 'feature_spec.version'"),
        (
            {"form": "code", "source": None},
            "code artefact needs its exported program or its `source`",
        ),
        ({"schema_version": 3}, "schema version 3.*upgrade metarl"),
        ({"schema_version": 1}, "schema version 1.*older metarl.*re-export"),
        ({"architecture": {"hidden": [64, 64], "activation": "tanh"}}, "manifest was edited"),
        ({"tensors_sha256": "0" * 64}, "manifest sha256"),
    ],
)
def test_edited_manifest_is_rejected(tmp_path, changes, message):
    path = tmp_path / "k.safetensors"
    save_artefact(path, make_tensors(), make_manifest())
    edit_manifest(path, **changes)
    with pytest.raises(ArtefactError, match=message):
        load_artefact(path)


def test_manifest_digest_ignores_layout_but_not_content(tmp_path):
    path = tmp_path / "k.safetensors"
    written = save_artefact(path, make_tensors(), make_manifest())
    edit_manifest(path)  # re-serialised: other spacing and key order, same content
    assert load_artefact(path)[0] == written
    header, _ = split_file(path.read_bytes())
    manifest = json.loads(header["__metadata__"]["metarl_manifest"])
    assert manifest_digest(manifest) == written.manifest_sha256
    assert manifest_digest(manifest | {"notes": "x"}) != written.manifest_sha256
    forged = manifest | {"architecture": {"hidden": [8, 8], "activation": "relu"}}
    edit_manifest(path, **forged)
    with pytest.raises(ArtefactError, match="manifest was edited") as info:
        load_artefact(path)
    assert "\n" not in str(info.value)
    # Recomputing the digest is the one edit it cannot catch (it is a checksum, not a signature).
    edit_manifest(path, manifest_sha256=manifest_digest(forged))
    assert load_artefact(path)[0].architecture["activation"] == "relu"


def test_foreign_and_missing_files_are_rejected(tmp_path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(safetensors.numpy.save({"w": np.ones(3, dtype=np.float32)}))
    with pytest.raises(ArtefactError, match="not written by metarl"):
        load_artefact(path)
    with pytest.raises(ArtefactError, match="no such artefact"):
        load_artefact(tmp_path / "missing.safetensors")
    with pytest.raises(ArtefactError, match="no such artefact"):
        artefact_digest(tmp_path / "missing.safetensors")


def test_artefact_digest_hashes_the_whole_file(tmp_path):
    path = tmp_path / "k.safetensors"
    save_artefact(path, make_tensors(), make_manifest())
    assert artefact_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_validation():
    with pytest.raises(ValidationError, match="expression"):
        make_manifest(form="symbolic")
    with pytest.raises(ValidationError, match="source"):
        make_manifest(form="code", source="  ")
    with pytest.raises(ValidationError, match="Extra inputs"):
        make_manifest(colour="red")
    manifest = make_manifest(form="code", source="def f(x): return x")
    assert manifest.schema_version == 2 and manifest.created.tzinfo is not None
    with pytest.raises(ValidationError, match="frozen"):
        manifest.algorithm = "open"


def test_bad_trees_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="without '/'"):
        flatten_tree({"a/b": np.ones(1)})
    with pytest.raises(ValueError, match="collides"):
        unflatten_tree({"a": np.ones(1), "a/b": np.ones(1)})
    with pytest.raises(ValueError, match="cannot store"):
        save_artefact(tmp_path / "c.safetensors", {"z": np.ones(2, np.complex64)}, make_manifest())
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_old_file_and_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "k.safetensors"
    save_artefact(path, make_tensors(), make_manifest())
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_artefact(path, {}, make_manifest(notes="new"), force=True)
    monkeypatch.setattr(os, "link", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(tmp_path / "new.txt", "hello", force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.safetensors"]
    assert path.read_bytes() == before


def test_write_without_hard_links_falls_back_to_checked_rename(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    written = atomic_write_text(tmp_path / "a.txt", "one", force=False)
    with pytest.raises(OutputExistsError):
        atomic_write_text(written, "two", force=False)
    assert written.read_text() == "one" and len(list(tmp_path.iterdir())) == 1


def test_check_writable_and_atomic_write_text(tmp_path):
    with pytest.raises(MetarlError, match="does not exist"):
        check_writable(tmp_path / "no" / "such.txt", force=True)
    with pytest.raises(MetarlError, match="is a directory") as info:
        check_writable(tmp_path, force=True)
    assert not isinstance(info.value, OutputExistsError)
    written = atomic_write_text(tmp_path / "out.txt", "héllo", force=False)
    assert written == (tmp_path / "out.txt").resolve() and written.read_text() == "héllo"
    assert written.stat().st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(OutputExistsError, match=r"out\.txt exists; pass --force"):
        atomic_write_text(written, "bye", force=False)
    atomic_write_text(written, "bye", force=True)
    assert written.read_text() == "bye" and len(list(tmp_path.iterdir())) == 1


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
