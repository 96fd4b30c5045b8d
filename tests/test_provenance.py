"""What a release shares carries no patient's identity; the private provenance stays beside it for the audit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import assert_one_line_error
from privbench.provenance import PROVENANCE_FILE, is_private_key, split_manifest

TINY = {
    "dm": ["--set", "iterations=3", "--set", "batch_real=16", "--set", "width=8"],
    "gm": ["--set", "iterations=1", "--set", "batch_real=8", "--set", "width=8", "--set", "outer_loop=1",
           "--set", "inner_loop=1", "--set", "init=real"],
    "random": [],
}


def _walk(value, path=""):
    """Every (key path, value) inside a JSON document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}", v
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, path)


@pytest.mark.parametrize("method", ["dm", "gm", "random"])
def test_shareable_release_files_hold_no_index(cli, tmp_path, method):
    out = tmp_path / method
    result = cli("distill", "--data", "digits", "--method", method, "--ipc", "2", "--out", out, "-q", "--no-evaluate",
                 *TINY[method])
    assert result.code == 0, result.err
    manifest = json.loads((out / "release.json").read_text())
    keys = [k for k, _ in _walk(manifest)]
    assert not [k for k in keys if any(p in k.lower() for p in ("index", "indices", "fingerprint", "spec", "loss",
                                                                 "warning", "path", "file"))], keys
    assert "source_dataset" not in manifest and manifest["method"] == method and manifest["images"] == 20
    with np.load(out / "release.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["images", "labels"]
    private = json.loads((out / PROVENANCE_FILE).read_text())
    assert "never share" in private["notice"]
    assert len(private["source_fingerprint"]) == 64 and private["source_spec"] == "digits"
    seeded = private.get("init_indices") or private.get("source_indices")
    assert len(seeded) == 20 and all(isinstance(i, int) for i in seeded)  # dm and gm start from real images


def test_the_split_catches_a_third_partys_private_keys():
    shareable, private = split_manifest({"method": "kmeans", "centroid_source_index": [1, 2], "patient_ids": [7],
                                         "input_path": "/data/x", "clusters": 5})
    assert shareable == {"method": "kmeans", "clusters": 5}
    assert set(private) == {"centroid_source_index", "patient_ids", "input_path"}
    assert is_private_key("init_indices") and not is_private_key("ipc")


def test_an_old_release_with_indices_in_its_manifest_is_read_as_provenance(tmp_path):
    from privbench.releases import load_release

    out = tmp_path / "old"
    out.mkdir()
    np.savez(out / "release.npz", images=np.zeros((2, 1, 4, 4), np.float32), labels=np.array([0, 1]))
    (out / "release.json").write_text(json.dumps({"method": "random", "ipc": 1, "source_indices": [3, 9]}))
    release = load_release(out)
    assert "source_indices" not in release.manifest and release.provenance == {"source_indices": [3, 9]}
    (out / "release.json").write_text(json.dumps({"method": "random", "ipc": 1}))
    assert load_release(out).provenance is None  # no provenance at all: the audit will say so


def test_a_broken_provenance_file_is_one_line(cli, tmp_path):
    out = tmp_path / "rel"
    assert cli("distill", "--data", "digits", "--method", "random", "--ipc", "1", "--out", out, "-q",
               "--no-evaluate").code == 0
    (out / PROVENANCE_FILE).write_text(json.dumps({"source_indices": [1, "two"]}))
    result = cli("audit", "--data", "digits", "--release", out, "--attack", "mia", "--out", tmp_path / "audit", "-q")
    assert_one_line_error(result, "source_indices")
    (out / PROVENANCE_FILE).write_text(json.dumps({"init_indices": [3, 99999]}))
    assert_one_line_error(cli("audit", "--data", "digits", "--release", out, "--attack", "mia", "--out",
                              tmp_path / "audit", "-q"), "training image 99999")
    (out / PROVENANCE_FILE).write_text("{not json")
    assert_one_line_error(cli("audit", "--data", "digits", "--release", out, "--attack", "mia", "--out",
                              tmp_path / "audit", "-q"), "not valid JSON")
    assert not (tmp_path / "audit").exists()
