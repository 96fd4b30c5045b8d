"""Generated hostile inputs through the command line: exit 0 or 2, one error line, nothing left, nothing changed.

Each test draws a malformed (or now and then valid) npz file, folder tree,
release folder or suite file, runs the command in-process and checks the
promise. An exception escaping ``main`` fails the test by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import privbench.plugins as plugins_mod

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
FAST = ["--method", "random", "--ipc", "1", "--no-evaluate", "-q"]

_dims = st.lists(st.integers(0, 5), min_size=0, max_size=4)
_dtypes = st.sampled_from(["uint8", "float32", "int64", "bool", "float64", "object", "U3"])


@st.composite
def arrays(draw, shape=None):
    shape = tuple(draw(_dims)) if shape is None else shape
    dtype = draw(_dtypes)
    if dtype == "object":
        return np.empty(shape, dtype=object)
    if dtype == "U3":
        return np.full(shape, "ab", dtype="U3")
    high = {"uint8": 256, "bool": 2, "int64": 4}.get(dtype)
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    data = rng.integers(-1 if dtype == "int64" else 0, high, shape) if high else rng.random(shape) * draw(
        st.sampled_from([1.0, 2.0]))
    return data.astype(dtype)


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink()
            else "other" for p in sorted(root.rglob("*"))}


def _run(work: Path, *args: str) -> tuple[int, str]:
    from privbench.cli import main

    plugins_mod._cached = None
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


def _check_promise(work: Path, out: Path, inputs: Path, *args: str) -> int:
    before = _snapshot(inputs)
    code, err = _run(work, *args)
    event(f"exit {code}")
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("privbench: error:"), err
        assert not out.exists(), "a refused command left its output"
    assert _snapshot(inputs) == before, "an input changed"
    assert not [p for p in work.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    return code


@contextlib.contextmanager
def _workdir():
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        yield work
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)


_NPZ_KEYS = [f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")]


@st.composite
def npz_files(draw):
    """A valid MedMNIST-layout file with up to two keys replaced, dropped or added (none: it must load)."""
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    out = {}
    for split in ("train", "val", "test"):
        out[f"{split}_images"] = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8)
        out[f"{split}_labels"] = np.arange(6) % 2
    for key in draw(st.sets(st.sampled_from(_NPZ_KEYS + ["class_names", "train_attr_sex"]), max_size=2)):
        action = draw(st.sampled_from(["replace", "drop", "shape"]))
        if action == "drop":
            out.pop(key, None)
        elif action == "shape" and key.endswith("images"):
            out[key] = draw(arrays(shape=(draw(st.integers(0, 6)), 4, 4)))
        else:
            out[key] = draw(arrays())
    return out


@SETTINGS
@given(npz_files())
def test_generated_npz_files(arrays_by_key):
    with _workdir() as work:
        inputs = work / "in"
        inputs.mkdir()
        np.savez(inputs / "data.npz", **arrays_by_key)
        out = work / "out"
        _check_promise(work, out, inputs, "distill", "--data", f"npz:{inputs / 'data.npz'}", "--out", out, *FAST)


_entries = st.sampled_from(["png", "tiny_png", "garbage", "empty", "txt", "subdir", "link_root", "link_out"])


@SETTINGS
@given(st.lists(st.lists(_entries, max_size=4), min_size=0, max_size=3), st.integers(0, 9), st.booleans())
def test_generated_folder_trees(classes, seed, start_valid):
    """Random class folders; ``start_valid`` puts two good images first in two of them, which links never spoil."""
    from PIL import Image

    if start_valid:
        classes = [["png", "png", "png", "png"] + c for c in (classes + [[], []])[:max(2, len(classes))]]

    rng = np.random.default_rng(seed)
    with _workdir() as work:
        root = work / "in"
        root.mkdir()
        for c, entries in enumerate(classes):
            folder = root / f"class{c}"
            folder.mkdir()
            for i, kind in enumerate(entries):
                path = folder / f"{i}.png"
                if kind in ("png", "tiny_png"):
                    side = 8 if kind == "png" else 1
                    Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(path)
                elif kind == "garbage":
                    path.write_bytes(rng.bytes(20))
                elif kind == "empty":
                    path.write_bytes(b"")
                elif kind == "txt":
                    (folder / f"{i}.txt").write_text("notes")
                elif kind == "subdir":
                    (folder / f"{i}").mkdir()
                elif kind == "link_root":
                    (folder / f"loop{i}").symlink_to(root)
                else:
                    (folder / f"out{i}").symlink_to(work)
        out = work / "out"
        _check_promise(work, out, root, "distill", "--data", f"folder:{root}", "--out", out, *FAST)


_json_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 2**65) | st.text(max_size=5),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=8)


@st.composite
def manifests(draw):
    base = {"method": draw(st.sampled_from(["random", "dm", 5, None, "../x"])), "ipc": draw(st.sampled_from([1, "1", None,
                                                                                                           True, -2]))}
    extra = draw(st.dictionaries(st.sampled_from(["config", "seed", "images", "class_names", "image_shape"]),
                                 _json_values, max_size=3))
    return {**base, **extra} if draw(st.integers(0, 5)) else draw(_json_values)


_CORRUPTIBLE = ["manifest", "count", "shape", "dtype", "provenance"]


@SETTINGS
@given(st.sets(st.sampled_from(_CORRUPTIBLE), max_size=2), manifests(), st.integers(0, 6),
       st.sampled_from([(3, 16, 16), (1, 8, 8), (2, 16, 16), (1, 16)]), st.one_of(st.none(), _json_values))
def test_generated_release_folders(corrupt, manifest, n, shape, provenance):
    """A valid release with up to two parts corrupted (none: it must be scored)."""
    manifest = manifest if "manifest" in corrupt else {"method": "random", "ipc": 1}
    n = n if "count" in corrupt else 3
    shape = shape if "shape" in corrupt else (1, 16, 16)
    with _workdir() as work:
        release = work / "in"
        release.mkdir()
        images = np.random.default_rng(n).random((n, *shape)).astype("float32")
        if "dtype" in corrupt:
            images = (images * 300).astype(np.int64)
        np.savez(release / "release.npz", images=images, labels=np.arange(n) % 3)
        (release / "release.json").write_text(json.dumps(manifest))
        if "provenance" in corrupt:
            (release / "provenance.private.json").write_text(json.dumps(provenance))
        out = work / "out.parquet"
        code = _check_promise(work, out, release, "metrics", release, release, "--metric", "psnr", "--resamples", "0",
                              "--out", out, "-q")
        assert code == 0 or corrupt, "a valid release was refused"


_toml_scalars = st.sampled_from(['"digits"', '"original"', '"random"', "1", "0", "-1", "true", '"x"', "[]", "[1]",
                                 '["digits"]', "{}", "{ epochs = 1 }", "3.5", '"../up"', '"ok-name"'])


@st.composite
def suite_files(draw):
    if draw(st.booleans()):  # a valid suite, now and then with one line added to the release
        extra = draw(st.sampled_from(["", "seeds = [0, 1]", "ipc = 2", "config = {}", "config = 3"]))
        return f'name = "s"\ndatasets = ["digits"]\n[[releases]]\nmethod = "original"\n{extra}\n'
    lines = []
    for key in draw(st.lists(st.sampled_from(["name", "datasets", "seeds", "description", "extra"]), unique=True)):
        lines.append(f"{key} = {draw(_toml_scalars)}")
    if draw(st.integers(0, 3)):
        lines.append('datasets = ["digits"]' if not any(x.startswith("datasets") for x in lines) else "")
    for _ in range(draw(st.integers(0, 2))):
        lines.append("[[releases]]")
        for key in draw(st.lists(st.sampled_from(["method", "ipc", "config", "utility_config", "attacks"]), unique=True)):
            lines.append(f"{key} = {draw(_toml_scalars)}")
    if draw(st.booleans()):
        lines.append("[audit]")
        lines.append(f"config = {draw(_toml_scalars)}")
    return "\n".join(lines) + "\n"


@SETTINGS
@given(suite_files())
def test_generated_suite_files(text):
    with _workdir() as work:
        inputs = work / "in"
        inputs.mkdir()
        (inputs / "s.toml").write_text(text)
        out = work / "out"
        _check_promise(work, out, inputs, "run", inputs / "s.toml", "--out", out, "--no-report", "-q")
