"""Loaders: digits, MedMNIST .npz, medmnist:NAME and ImageFolder trees, with their failure modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import write_medmnist_npz
from privbench.data import load_dataset, parse_spec
from privbench.errors import UserError


def test_digits_is_embedded_resized_and_split_stratified():
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.num_classes == 10 and ds.public
    assert ds.image_shape == (1, 16, 16)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1079, 359, 359)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797
    for split in (ds.train, ds.val, ds.test):
        assert split.images.dtype == torch.float32 and split.labels.dtype == torch.int64
        assert float(split.images.min()) >= 0 and float(split.images.max()) <= 1
        counts = torch.bincount(split.labels, minlength=10).float()
        assert counts.min() / counts.max() > 0.85  # stratified: every class in proportion
    again = load_dataset("digits")
    assert again.fingerprint == ds.fingerprint and torch.equal(again.train.images, ds.train.images)


def test_digits_size_option():
    ds = load_dataset("digits?size=32")
    assert ds.image_shape == (1, 32, 32)
    assert ds.fingerprint != load_dataset("digits").fingerprint


def test_npz_grayscale_and_rgb(tmp_path):
    gray = load_dataset(f"npz:{write_medmnist_npz(tmp_path / 'g.npz')}")
    assert gray.image_shape == (1, 8, 8) and gray.class_names == ("0", "1")
    assert (len(gray.train), len(gray.val), len(gray.test)) == (30, 10, 10)
    rgb = load_dataset(f"npz:{write_medmnist_npz(tmp_path / 'c.npz', rgb=True)}")
    assert rgb.image_shape == (3, 8, 8)
    as_gray = load_dataset(f"npz:{tmp_path / 'c.npz'}?channels=1&size=16")
    assert as_gray.image_shape == (1, 16, 16)
    # uint8 0..255 maps onto [0, 1] exactly
    raw = np.load(tmp_path / "g.npz")["train_images"]
    assert torch.allclose(gray.train.images[:, 0], torch.from_numpy(raw / 255.0).float())


def test_npz_attributes_are_loaded(tmp_path):
    extra = {f"{s}_attr_sex": (np.arange(n) % 2).astype(np.int64) for s, n in zip(("train", "val", "test"), (30, 10, 10))}
    ds = load_dataset(f"npz:{write_medmnist_npz(tmp_path / 'a.npz', **extra)}")
    assert ds.attribute_names == ("sex",) and ds.train.attributes["sex"].tolist()[:4] == [0, 1, 0, 1]


def test_fingerprint_depends_on_content(tmp_path):
    a = load_dataset(f"npz:{write_medmnist_npz(tmp_path / 'a.npz', seed=0)}")
    b = load_dataset(f"npz:{write_medmnist_npz(tmp_path / 'b.npz', seed=1)}")
    assert a.fingerprint != b.fingerprint and len(a.fingerprint) == 64


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(drop="val_labels"), "lacks key"),
        (dict(train_images=np.zeros((30, 8), np.uint8)), "shape"),
        (dict(train_labels=np.zeros((29, 1), np.uint8)), "30 images but 29 labels"),
        (dict(train_labels=np.zeros((30, 3), np.uint8)), "multi-label"),
        (dict(train_images=np.full((30, 8, 8), np.nan, np.float32)), "nan"),
        (dict(train_images=np.full((30, 8, 8), 2.0, np.float32)), "[0, 1]"),
        (dict(train_images=np.zeros((30, 8, 8), np.int32)), "dtype"),
        (dict(train_labels=np.zeros((30, 1), np.uint8), val_labels=np.zeros((10, 1), np.uint8),
              test_labels=np.zeros((10, 1), np.uint8)), "only one class"),
    ],
)
def test_npz_validation(tmp_path, arrays, message):
    path = tmp_path / "x.npz"
    base = dict(np.load(write_medmnist_npz(tmp_path / "base.npz")))
    drop = arrays.pop("drop", None)
    base.update(arrays)
    if drop:
        base.pop(drop)
    np.savez(path, **base)
    with pytest.raises(UserError, match=None) as info:
        load_dataset(f"npz:{path}")
    assert message.lower() in str(info.value).lower()


def test_npz_needing_pickle_is_refused(tmp_path):
    path = tmp_path / "p.npz"
    base = dict(np.load(write_medmnist_npz(tmp_path / "base.npz")))
    base["train_labels"] = np.array([{"a": 1}] * 30, dtype=object)
    np.savez(path, **base)
    with pytest.raises(UserError, match="pickle"):
        load_dataset(f"npz:{path}")


def test_corrupt_and_truncated_npz(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    with pytest.raises(UserError, match="not a readable .npz"):
        load_dataset(f"npz:{junk}")
    good = write_medmnist_npz(tmp_path / "good.npz", n=(300, 50, 50), size=16)
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError):
        load_dataset(f"npz:{truncated}")


def test_missing_file_and_unknown_dataset(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(UserError, match="unknown dataset 'nope'.*digits"):
        load_dataset("nope")
    with pytest.raises(UserError, match="option"):
        load_dataset("digits?colour=1")


def test_medmnist_lookup_and_missing_message(tmp_path, monkeypatch):
    root = tmp_path / "mm"
    monkeypatch.setenv("MEDMNIST_ROOT", str(root))
    with pytest.raises(UserError) as info:
        load_dataset("medmnist:pneumoniamnist")
    msg = str(info.value)
    assert str(root / "pneumoniamnist.npz") in msg and "MEDMNIST_ROOT" in msg and "never downloads" in msg
    root.mkdir()
    write_medmnist_npz(root / "pneumoniamnist.npz")
    ds = load_dataset("medmnist:pneumoniamnist")
    assert ds.name == "pneumoniamnist" and ds.class_names == ("normal", "pneumonia")
    card_ds = load_dataset("pneumoniamnist")  # by card name
    assert card_ds.fingerprint == ds.fingerprint and card_ds.public


def _write_png(path, value, size=(12, 10), mode="L"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0]) + ((3,) if mode == "RGB" else ()), value, dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(path)


def test_folder_with_split_subfolders(tmp_path):
    root = tmp_path / "xray"
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for cls, value in (("NORMAL", 10), ("PNEUMONIA", 200)):
            for i in range(n):
                _write_png(root / split / cls / f"{i}.png", value)
    ds = load_dataset(f"folder:{root}?size=8", cache_dir=tmp_path / "cache")
    assert ds.class_names == ("NORMAL", "PNEUMONIA") and ds.image_shape == (1, 8, 8)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (12, 4, 6)
    assert torch.allclose(ds.train.images[ds.train.labels == 1].mean(), torch.tensor(200 / 255), atol=1e-3)
    assert any((tmp_path / "cache" / "folders").iterdir())  # decoded once, cached
    again = load_dataset(f"folder:{root}?size=8", cache_dir=tmp_path / "cache")
    assert again.fingerprint == ds.fingerprint


def test_folder_without_splits_is_split_stratified(tmp_path):
    root = tmp_path / "mri"
    for cls, value in (("glioma", 30), ("notumor", 90), ("pituitary", 160)):
        for i in range(20):
            _write_png(root / cls / f"{i}.jpg".replace(".jpg", ".png"), value, mode="RGB")
    ds = load_dataset(f"folder:{root}?size=8&channels=3", cache_dir=tmp_path / "cache")
    assert ds.num_classes == 3 and ds.image_shape == (3, 8, 8)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 60
    assert torch.bincount(ds.val.labels).tolist() == [3, 3, 3]
    gray = load_dataset(f"folder:{root}?size=8", cache_dir=tmp_path / "cache")
    assert gray.channels == 1  # grey pixels saved as RGB are detected as grayscale


def test_folder_failures(tmp_path):
    one = tmp_path / "one"
    for i in range(5):
        _write_png(one / "only" / f"{i}.png", 5)
    with pytest.raises(UserError, match="at least two classes"):
        load_dataset(f"folder:{one}", cache_dir=tmp_path / "c")
    bad = tmp_path / "bad"
    for cls in ("a", "b"):
        for i in range(5):
            _write_png(bad / cls / f"{i}.png", 5)
    (bad / "a" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="cannot read image .*broken.png"):
        load_dataset(f"folder:{bad}", cache_dir=tmp_path / "c")
    with pytest.raises(UserError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'missing'}")


def test_parse_spec():
    assert parse_spec("folder:/a/b?size=64&channels=3") == ("folder", "/a/b", {"size": 64, "channels": 3})
    assert parse_spec("digits") == ("digits", "", {})
    with pytest.raises(UserError):
        parse_spec("digits?channels=2")
