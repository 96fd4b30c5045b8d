"""Hostile and degenerate input to the loaders: refused in one line, before anything large is allocated."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy

from helpers import assert_one_line_error, write_medmnist_npz
from privbench.data import load_dataset, parse_spec
from privbench.errors import UserError

HUGE = (10**7, 10**4, 10**4)  # 10**15 bytes of uint8


def _distill(cli, data, out, *extra, method="random", ipc="2"):
    return cli("distill", "--data", data, "--method", method, "--ipc", ipc, "--out", out, "--no-evaluate", "-q", *extra)


def _assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


def _npy_header(shape, descr="|u1") -> bytes:
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip_npz(path: Path, arrays: dict, raw: dict | None = None) -> Path:
    """An .npz written member by member, so that members may be hand-made headers or raw bytes."""
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            zf.writestr(f"{key}.npy", buf.getvalue())
        for name, data in (raw or {}).items():
            zf.writestr(name, data)
    return path


def _base_arrays(tmp_path: Path, **kw) -> dict:
    return dict(np.load(write_medmnist_npz(tmp_path / "base.npz", **kw)))


def _png(path: Path, value: int = 10, size=(6, 6)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint8)).save(path)
    return path


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A small PNG whose IHDR chunk claims another size (its CRC fixed so decoders believe it)."""
    _png(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _class_tree(root: Path, classes=("a", "b"), n=5) -> Path:
    for k, c in enumerate(classes):
        for i in range(n):
            _png(root / c / f"{i}.png", 10 + 100 * k + i)
    return root


# ---------------------------------------------------------------- resource bombs


def test_one_label_of_a_billion_is_refused_before_class_names_are_built(cli, tmp_path):
    arrays = _base_arrays(tmp_path)
    arrays["train_labels"] = arrays["train_labels"].astype(np.int64)
    arrays["train_labels"][0] = 10**9
    path = tmp_path / "label.npz"
    np.savez_compressed(path, **arrays)
    assert path.stat().st_size < 8000
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"npz:{path}", out), "1000000000", "PRIVBENCH_MAX_CLASSES")
    _assert_nothing_left(out)


def test_labels_that_leave_most_classes_empty_are_refused(tmp_path):
    arrays = _base_arrays(tmp_path)
    arrays["test_labels"] = arrays["test_labels"].astype(np.int64)
    arrays["test_labels"][0] = 500
    np.savez(tmp_path / "sparse.npz", **arrays)
    with pytest.raises(UserError, match="only 3 distinct values"):
        load_dataset(f"npz:{tmp_path / 'sparse.npz'}")


def test_class_limit_follows_the_environment(tmp_path, monkeypatch):
    path = write_medmnist_npz(tmp_path / "three.npz", classes=3)
    monkeypatch.setenv("PRIVBENCH_MAX_CLASSES", "2")
    with pytest.raises(UserError, match="3 classes, more than the limit of 2"):
        load_dataset(f"npz:{path}")


@pytest.mark.parametrize("key", ["train_images", "val_labels"])
def test_npy_header_declaring_a_petabyte_is_refused_unread(cli, tmp_path, key):
    arrays = _base_arrays(tmp_path)
    arrays.pop(key)
    path = _zip_npz(tmp_path / "bomb.npz", arrays, raw={f"{key}.npy": _npy_header(HUGE)})
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"npz:{path}", out), key, "TiB", "PRIVBENCH_MAX_BYTES")
    _assert_nothing_left(out)


def test_header_larger_than_its_data_and_memory_limit(tmp_path, monkeypatch):
    arrays = _base_arrays(tmp_path)
    arrays.pop("test_images")
    path = _zip_npz(tmp_path / "lying.npz", arrays, raw={"test_images.npy": _npy_header((10, 300, 300))})
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_dataset(f"npz:{path}")
    monkeypatch.setenv("PRIVBENCH_MAX_BYTES", "1K")
    with pytest.raises(UserError, match="more than the limit of 1 KiB"):
        load_dataset(f"npz:{write_medmnist_npz(tmp_path / 'ok.npz')}")


def test_available_memory_bounds_every_check(monkeypatch):
    from privbench import limits

    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 20)
    with pytest.raises(UserError, match="only 1 MiB of memory is available"):
        limits.check_bytes(2 << 20, "something")
    limits.check_bytes(1 << 19, "something")


def test_member_that_is_not_an_array_is_named(cli, tmp_path):
    arrays = _base_arrays(tmp_path)
    arrays.pop("train_labels")
    path = _zip_npz(tmp_path / "raw.npz", arrays, raw={"train_labels": b"not an array"})
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"npz:{path}", out), "'train_labels' is not a .npy array")
    _assert_nothing_left(out)


def test_bare_npy_with_a_huge_header_is_never_read(tmp_path):
    path = tmp_path / "single.npz"
    path.write_bytes(_npy_header(HUGE))
    with pytest.raises(UserError, match="single array"):
        load_dataset(f"npz:{path}")


def test_metrics_and_release_npz_get_the_same_header_checks(cli, tmp_path):
    import torch

    from privbench.api import Release
    from privbench.releases import IMAGES_FILE, load_release, save_release

    ref = _zip_npz(tmp_path / "ref.npz", {}, raw={"images.npy": _npy_header(HUGE, "<f4")})
    np.savez(tmp_path / "cand.npz", images=np.zeros((2, 1, 8, 8), np.float32))
    out = tmp_path / "m.parquet"
    assert_one_line_error(cli("metrics", ref, tmp_path / "cand.npz", "--metric", "ssim", "--out", out, "-q"),
                          "'images'", "PRIVBENCH_MAX_BYTES")
    assert not out.exists()
    empty = tmp_path / "empty.npz"
    np.savez(empty, images=np.zeros((0, 1, 8, 8), np.float32))
    assert_one_line_error(cli("metrics", empty, tmp_path / "cand.npz", "--metric", "ssim", "-q"), "no images")

    release = Release(torch.zeros(4, 1, 8, 8), torch.tensor([0, 0, 1, 1]), {"method": "random", "ipc": 2})
    save_release(release, tmp_path / "rel")
    _zip_npz(tmp_path / "rel" / IMAGES_FILE, {"labels": np.zeros(4, np.int64)}, raw={"images.npy": _npy_header(HUGE, "<f4")})
    with pytest.raises(UserError, match="'images'.*PRIVBENCH_MAX_BYTES"):
        load_release(tmp_path / "rel")
    _zip_npz(tmp_path / "rel" / IMAGES_FILE, {"images": np.zeros((4, 1, 8, 8), np.float32)}, raw={"labels": b"x"})
    with pytest.raises(UserError, match="'labels' is not a .npy array"):
        load_release(tmp_path / "rel")


def test_size_option_is_bounded_and_resizing_is_checked(tmp_path, monkeypatch):
    for size in (3, 100000):
        with pytest.raises(UserError, match="size must lie in 4..2048"):
            parse_spec(f"digits?size={size}")
    path = write_medmnist_npz(tmp_path / "d.npz")
    monkeypatch.setenv("PRIVBENCH_MAX_BYTES", "1M")
    with pytest.raises(UserError, match=r"50 images of 1 x 512 x 512 would take 50 MiB"):
        load_dataset(f"npz:{path}?size=512")


def test_ipc_beyond_memory_is_refused_before_allocating(cli, tmp_path):
    from privbench.api import RunContext
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry

    out = tmp_path / "out"
    result = _distill(cli, "digits", out, "--set", "init=noise", method="dm", ipc="1000000000")
    assert_one_line_error(result, "--ipc 1000000000", "PRIVBENCH_MAX_BYTES")
    _assert_nothing_left(out)
    dataset = load_dataset("digits")
    with pytest.raises(UserError, match="ipc 1000000000"):
        run_distiller(get_registry(), "dm", dataset, 10**9, {"init": "noise"}, RunContext())


def test_png_declaring_twenty_thousand_pixels_a_side(cli, tmp_path):
    root = _class_tree(tmp_path / "data")
    bomb = _png_declaring(root / "a" / "bomb.png", 20000, 20000)
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"folder:{root}?size=8", out), "bomb.png", "PRIVBENCH_MAX_IMAGE_SIDE")
    _assert_nothing_left(out)
    ref = tmp_path / "ref"
    ref.mkdir()
    os.replace(bomb, ref / "x.png")
    _png(tmp_path / "cand" / "x.png")
    assert_one_line_error(cli("metrics", ref, tmp_path / "cand", "--metric", "ssim", "-q"), "x.png",
                          "PRIVBENCH_MAX_IMAGE_SIDE")


def test_png_in_pillows_warning_band_and_below_a_lowered_limit(cli, tmp_path, monkeypatch):
    root = _class_tree(tmp_path / "data")
    _png_declaring(root / "b" / "wide.png", 10000, 10000)
    assert_one_line_error(_distill(cli, f"folder:{root}?size=8", tmp_path / "out"), "wide.png", "limit")
    (root / "b" / "wide.png").unlink()
    monkeypatch.setenv("PRIVBENCH_MAX_IMAGE_SIDE", "5")
    with pytest.raises(UserError, match="6 x 6 pixels, larger than the limit of 5"):
        load_dataset(f"folder:{root}?size=8", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------- empty and degenerate data


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"train_images": np.zeros((0, 8, 8), np.uint8), "train_labels": np.zeros((0, 1), np.uint8)}, "train: there are no images"),
        ({"test_images": np.zeros((0, 8, 8), np.uint8), "test_labels": np.zeros((0, 1), np.uint8)}, "test: there are no images"),
        ({"train_images": np.zeros((30, 0, 8), np.uint8)}, "0 x 8 pixels"),
        ({"val_images": np.zeros((10, 8, 0, 3), np.float32)}, "8 x 0 pixels"),
        ({"train_images": np.zeros((), np.uint8)}, "shape ()"),
    ],
)
def test_empty_splits_and_zero_size_images(cli, tmp_path, changes, needle):
    arrays = {**_base_arrays(tmp_path), **changes}
    np.savez(tmp_path / "bad.npz", **arrays)
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"npz:{tmp_path / 'bad.npz'}", out), needle)
    _assert_nothing_left(out)


def test_dataset_validate_refuses_zero_size_images():
    import torch

    from privbench.api import Dataset, Split

    split = Split(torch.zeros(3, 1, 0, 4), torch.tensor([0, 1, 0]))
    with pytest.raises(UserError, match="0 x 4 pixels"):
        Dataset("x", split, split, split, ("a", "b")).validate()


def test_folder_class_without_readable_images_and_folder_without_images(cli, tmp_path):
    root = _class_tree(tmp_path / "one", classes=("a",))
    (root / "b").mkdir()
    (root / "b" / "notes.txt").write_text("no images here")
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"folder:{root}", out), "1 class folder(s) (a)")
    (root / "b" / "0.png").write_bytes(b"not a png")
    (root / "b" / "1.png").write_bytes(b"")
    (root / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert_one_line_error(_distill(cli, f"folder:{root}", out), "cannot read image")
    (tmp_path / "nothing" / "sub").mkdir(parents=True)
    assert_one_line_error(_distill(cli, f"folder:{tmp_path / 'nothing'}", out), "0 class folder(s)")
    _assert_nothing_left(out)


def test_split_fractions_are_checked():
    for query, needle in (("val_fraction=nan", "val_fraction"), ("test_fraction=-0.1", "test_fraction"),
                          ("val_fraction=0.5&test_fraction=0.5", "below 1")):
        with pytest.raises(UserError, match=needle):
            parse_spec(f"folder:/x?{query}")


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", ["99999999999999999999", "-1", "9223372036854775808"])
@pytest.mark.parametrize("command", ["distill", "audit", "metrics"])
def test_every_command_takes_the_same_seeds(cli, tmp_path, command, seed):
    out = tmp_path / "out"
    args = {
        "distill": ["distill", "--data", "digits", "--method", "random", "--ipc", "1", "--out", out],
        "audit": ["audit", "--data", "digits", "--release", "original", "--out", out],
        "metrics": ["metrics", tmp_path / "a", tmp_path / "b", "--out", out],
    }[command]
    result = cli(*args, "--seed", seed)
    assert_one_line_error(result, "--seed", "0<=x<=9223372036854775807")
    _assert_nothing_left(out)


def test_largest_seed_and_spec_seed():
    assert parse_spec("digits?seed=9223372036854775807")[2]["seed"] == 2**63 - 1
    for seed in ("-1", str(2**63)):
        with pytest.raises(UserError, match="dataset option seed"):
            parse_spec(f"digits?seed={seed}")


# ---------------------------------------------------------------- folder trees


def test_symlinks_are_not_followed(tmp_path):
    root = _class_tree(tmp_path / "data")
    outside = _png(tmp_path / "elsewhere" / "x.png")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "b" / "again").symlink_to(root / "a", target_is_directory=True)
    (root / "a" / "out.png").symlink_to(outside)
    (root / "a" / "twin.png").symlink_to(root / "a" / "0.png")
    (root / "b" / "self").symlink_to(root / "b" / "self")
    dataset = load_dataset(f"folder:{root}?size=8", cache_dir=tmp_path / "cache")
    assert dataset.class_names == ("a", "b")
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 10
    linked = tmp_path / "linked"
    linked.symlink_to(root, target_is_directory=True)
    assert load_dataset(f"folder:{linked}?size=8", cache_dir=tmp_path / "cache").class_names == ("a", "b")


def test_only_links_in_the_tree_says_so(cli, tmp_path):
    real = _class_tree(tmp_path / "real")
    root = tmp_path / "links"
    root.mkdir()
    for c in ("a", "b"):
        (root / c).symlink_to(real / c, target_is_directory=True)
    assert_one_line_error(_distill(cli, f"folder:{root}", tmp_path / "out"), "2 symbolic link(s)")


def test_names_that_are_not_utf8(cli, tmp_path):
    root = tmp_path / "data"
    for k, cls in enumerate((b"caf\xe9", b"ok")):
        folder = os.path.join(os.fsencode(root), cls)
        os.makedirs(folder)
        for i in range(5):
            _png(Path(os.fsdecode(os.path.join(folder, b"\xff%d.png" % i))), 10 + 100 * k)
    dataset = load_dataset(f"folder:{root}?size=8", cache_dir=tmp_path / "cache")
    assert dataset.class_names == ("caf\\xe9", "ok")
    out = tmp_path / "out"
    result = _distill(cli, f"folder:{root}?size=8", out, "--ipc", "1")
    assert result.code == 0, result.err
    assert "caf\\\\xe9" in (out / "release.json").read_text()
    bad = Path(os.fsdecode(os.path.join(os.fsencode(root), b"caf\xe9", b"\xfe.png")))
    bad.write_bytes(b"broken")
    assert_one_line_error(_distill(cli, f"folder:{root}?size=8", tmp_path / "out2"), "\\xfe.png")


# ---------------------------------------------------------------- malformed files, generated


_DTYPES = ["|u1", "<f4", "<f8", "<i8", "|b1", "<f2", "<U3", "|O", "<c8", "<u2"]
_KEYS = ["train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels", "class_names",
         "train_attr_sex", "val_attr_sex"]
_dims = st.integers(0, 4)
_shapes = st.one_of(st.tuples(), st.tuples(_dims), st.tuples(_dims, _dims), st.tuples(_dims, _dims, _dims),
                    st.tuples(_dims, _dims, _dims, st.sampled_from([0, 1, 3, 4])),
                    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)))
_member = st.tuples(st.sampled_from(["array", "header", "raw"]), _shapes, st.sampled_from(_DTYPES),
                    st.integers(0, 3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.dictionaries(st.sampled_from(_KEYS), _member, min_size=0, max_size=3),
       fill_required=st.sampled_from([True, True, True, False]))
def test_generated_npz_loads_or_fails_in_one_line(tmp_path, members, fill_required):
    """Any mixture of arrays, lying headers and raw members: a valid dataset or a UserError, nothing else."""
    rng = np.random.default_rng(0)
    arrays, raw = {}, {}
    if fill_required:
        for split, n in (("train", 6), ("val", 3), ("test", 3)):
            arrays[f"{split}_images"] = rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)
            arrays[f"{split}_labels"] = np.arange(n) % 2
    for key, (kind, shape, descr, fill) in members.items():
        arrays.pop(key, None)
        if kind == "raw":
            raw[key] = bytes(range(fill * 7))
        elif kind == "header" or np.prod(shape, dtype=object) > 4096 or descr == "|O":
            raw[f"{key}.npy"] = _npy_header(shape, descr) + bytes(fill * 5)
        else:
            value = np.zeros(shape, np.dtype(descr))
            value.flat[: min(value.size, fill)] = fill
            arrays[key] = value
    path = _zip_npz(tmp_path / "gen.npz", arrays, raw)
    try:
        dataset = load_dataset(f"npz:{path}")
    except UserError as exc:
        assert "\n" not in str(exc)
    else:
        assert dataset.num_classes >= 2 and len(dataset.train) > 0
