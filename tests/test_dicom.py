"""``dicom:DIR``: pixels as pydicom's own LUTs make them, labels from a CSV or class folders, and
nothing of the header (nor a file name) in what a run writes."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error
from privbench.data import load_dataset, parse_spec
from privbench.data.arrays import resize, set_channels
from privbench.errors import UserError

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.pixels import apply_modality_lut, apply_voi_lut  # noqa: E402

FAKE = {
    "PatientName": "Doe^Fakename^Zq",
    "PatientID": "FAKEPID7731",
    "PatientBirthDate": "19010203",
    "AccessionNumber": "ACCFAKE991",
    "StudyInstanceUID": "1.2.826.0.1.3680043.99.7731",
    "InstitutionName": "FAKE-HOSPITAL-XQ",
}


def _dicom(path: Path, source: str = "MR_small.dcm", offset: int = 0, **attrs) -> Path:
    """A copy of one of pydicom's test files, ``offset`` times a ramp over its rows added to its pixels
    (so that no scaling makes two copies alike), the fake identifiers and ``attrs`` set in its header."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(get_testdata_file(source))
    if offset:
        arr = ds.pixel_array
        ramp = np.arange(ds.Rows).reshape((-1, 1, 1) if ds.SamplesPerPixel == 3 else (-1, 1)) % 3
        ds.PixelData = (arr.astype(np.int64) + offset * ramp).astype(arr.dtype).tobytes()
    for key, value in {**FAKE, **attrs}.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def _by_hand(path: Path) -> np.ndarray:
    """Frame 0 through pydicom's modality then VOI LUT, scaled from the window's output range
    (computed here from the standard, not by privbench), or the frame's own range without one."""
    ds = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    if "WindowCenter" in ds:
        bits = ds.BitsStored
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ds.PixelRepresentation else (0, 2**bits - 1)
        if "RescaleSlope" in ds:
            lo, hi = lo * ds.RescaleSlope + ds.RescaleIntercept, hi * ds.RescaleSlope + ds.RescaleIntercept
    else:
        lo, hi = values.min(), values.max()
    out = (values - lo) / (hi - lo)
    return 1 - out if ds.PhotometricInterpretation == "MONOCHROME1" else out


def _mr_window(tmp_path: Path) -> dict:
    """A window over the middle of MR_small's values, so both ends of it clip."""
    arr = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    lo, hi = np.percentile(arr, [20, 80])
    return {"WindowCenter": float((lo + hi) / 2), "WindowWidth": float(hi - lo)}


def _matches(images: torch.Tensor, expected: list[np.ndarray], atol: float = 1e-6) -> None:
    """Every loaded image is one of ``expected`` (as float32), and each expected image is loaded once."""
    used = set()
    for image in images:
        errors = [float(np.abs(image.numpy() - e.astype(np.float32)).max()) for e in expected]
        best = int(np.argmin(errors))
        assert errors[best] <= atol and best not in used, (best, errors[best])
        used.add(best)


# ---------------------------------------------------------------- pixels


def test_rescale_then_own_range_without_a_window(tmp_path):
    from privbench.data.dicom_pixels import dicom_images

    path = _dicom(tmp_path / "ct.dcm", "CT_small.dcm", RescaleSlope=2.5, RescaleIntercept=-1000)
    got = dicom_images(path)
    expected = _by_hand(path)
    assert got.shape == (1, 128, 128)
    assert np.allclose(got[0], expected, atol=1e-12) and got.min() == 0 and got.max() == 1
    # the rescale really is applied: the same pixels with another intercept and slope -3 invert
    flipped = dicom_images(_dicom(tmp_path / "neg.dcm", "CT_small.dcm", RescaleSlope=-3, RescaleIntercept=7))
    assert np.allclose(flipped[0], 1 - got[0], atol=1e-12)


def test_window_sets_the_range_and_monochrome1_is_inverted(tmp_path):
    from privbench.data.dicom_pixels import dicom_images

    window = _mr_window(tmp_path)
    path = _dicom(tmp_path / "mr.dcm", **window)
    got = dicom_images(path)[0]
    expected = _by_hand(path)
    assert np.allclose(got, expected, atol=1e-12)
    # the window clips at both ends, and scaling is from the window's range, not the image's
    assert (got == 0).mean() > 0.1 and (got == 1).mean() > 0.1
    wider = dicom_images(_dicom(tmp_path / "wide.dcm", WindowCenter=window["WindowCenter"],
                                WindowWidth=window["WindowWidth"] * 4))[0]
    assert (wider == 0).mean() < (got == 0).mean() and not np.allclose(wider, got)
    mono1 = _dicom(tmp_path / "m1.dcm", PhotometricInterpretation="MONOCHROME1", **window)
    inverted = dicom_images(mono1)[0]
    assert np.allclose(inverted, 1 - got, atol=1e-12) and np.allclose(inverted, _by_hand(mono1), atol=1e-12)


def test_rgb_files_load_as_colour_or_as_luma(tmp_path):
    root = tmp_path / "rgb"
    for cls in ("a", "b"):
        for i in range(3):
            _dicom(root / cls / f"{i}.dcm", "ExplVR_BigEnd.dcm", offset=10 * i + (100 if cls == "b" else 0))
    colour = load_dataset(f"dicom:{root}?size=16", cache_dir=tmp_path / "c")
    assert colour.image_shape == (3, 16, 16)
    raw = [torch.from_numpy(pydicom.dcmread(f).pixel_array / 255.0).permute(2, 0, 1)[None].float()
           for f in sorted(root.glob("*/*.dcm"))]
    by_hand = [resize(r, 16)[0].numpy() for r in raw]
    images = torch.cat([colour.train.images, colour.val.images, colour.test.images])
    _matches(images, by_hand)
    grey = load_dataset(f"dicom:{root}?size=16&channels=1", cache_dir=tmp_path / "c")
    assert grey.image_shape == (1, 16, 16)
    _matches(torch.cat([grey.train.images, grey.val.images, grey.test.images]),
             [resize(set_channels(r, 1), 16)[0].numpy() for r in raw])


def test_multi_frame_files_give_each_frame_or_the_first(tmp_path):
    root = tmp_path / "dose"
    for cls in ("low", "high"):
        for i in range(3):
            _dicom(root / cls / f"{i}.dcm", "rtdose.dcm", offset=5 * i + (50 if cls == "high" else 0))
    first = load_dataset(f"dicom:{root}?size=10", cache_dir=tmp_path / "c")
    assert len(first.train) + len(first.val) + len(first.test) == 6
    every = load_dataset(f"dicom:{root}?size=10&frames=all", cache_dir=tmp_path / "c")
    assert (len(every.train), len(every.val), len(every.test)) == (15 * len(first.train), 15 * len(first.val),
                                                                   15 * len(first.test))
    frames = []
    for f in sorted(root.glob("*/*.dcm")):
        for frame in pydicom.dcmread(f).pixel_array.astype(np.float64):  # no LUT in these files: own range
            frames.append((frame - frame.min()) / (frame.max() - frame.min()))
    _matches(torch.cat([every.train.images, every.val.images, every.test.images])[:, 0], frames)
    # all frames of a file stay in the split of its first frame
    firsts = {split: getattr(first, split).images[:, 0] for split in ("train", "val", "test")}
    for split in ("train", "val", "test"):
        ones = getattr(every, split).images[::15, 0]
        _matches(ones, list(firsts[split].numpy()))


# ---------------------------------------------------------------- labels and splits


def _rsna_tree(root: Path, n: int = 4, split: bool = False) -> Path:
    """RSNA's layout: files named by patientId, stage_2_train_labels.csv with one row per box."""
    rows = []
    for k in range(2 * n):
        pid = f"pidFAKE{k:04d}"
        _dicom(root / "images" / f"{pid}.dcm", offset=3 * k, PatientID=pid)
        target = k % 2
        for _ in range(1 + target):  # a positive patient has two boxes, so two rows
            rows.append({"patientId": pid, "x": "1", "y": "2", "width": "3", "height": "4", "Target": str(target),
                         **({"split": "test" if k >= 2 * n - 2 else "train"} if split else {})})
    with open(root / "stage_2_train_labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_labels_from_an_rsna_style_csv(tmp_path):
    root = _rsna_tree(tmp_path / "rsna")
    spec = f"dicom:{root / 'images'}?labels=../stage_2_train_labels.csv&id=patientId&label=Target&size=32"
    ds = load_dataset(spec, cache_dir=tmp_path / "c")
    assert ds.class_names == ("0", "1") and ds.image_shape == (1, 32, 32)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 8
    expected = {k % 2: [] for k in range(2)}
    for k in range(8):
        expected[k % 2].append(resize(torch.from_numpy(_by_hand(root / "images" / f"pidFAKE{k:04d}.dcm")).float()[None, None], 32)[0].numpy())
    for label in (0, 1):  # each image carries its own row's label
        _matches(torch.cat([s.images[s.labels == label] for s in (ds.train, ds.val, ds.test)]), expected[label])
    named = load_dataset(spec + "&classes=normal:0,pneumonia:1", cache_dir=tmp_path / "c")
    assert named.class_names == ("normal", "pneumonia") and named.fingerprint != ds.fingerprint
    assert torch.equal(named.train.images, ds.train.images)


def test_split_column_and_relative_paths(tmp_path):
    root = _rsna_tree(tmp_path / "rsna", split=True)
    # ids as relative paths with the extension: the same files, the same labels
    with open(root / "paths.csv", "w") as fh:
        fh.write("file,label,split\n")
        for k in range(8):
            fh.write(f"images/pidFAKE{k:04d}.dcm,{k % 2},{'testing' if k >= 6 else 'Train'}\n")
    ds = load_dataset(f"dicom:{root}?labels=paths.csv&size=16", cache_dir=tmp_path / "c")
    assert len(ds.test) == 2 and sorted(ds.test.labels.tolist()) == [0, 1]
    assert len(ds.train) + len(ds.val) == 6 and len(ds.val) >= 2  # val carved out of train, stratified
    stems = load_dataset(f"dicom:{root / 'images'}?labels=../stage_2_train_labels.csv&id=patientId&label=Target&size=16",
                         cache_dir=tmp_path / "c")
    assert torch.equal(stems.test.images, ds.test.images) and torch.equal(stems.test.labels, ds.test.labels)


def test_class_folders_cache_and_options(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    for cls in ("benign", "malignant"):
        for i in range(4):
            _dicom(root / cls / f"s{i}.DCM", offset=7 * i + (40 if cls == "malignant" else 0))
    (root / "benign" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"dicom:{root}?size=24&split=75/25", cache_dir=tmp_path / "c")
    assert ds.class_names == ("benign", "malignant") and ds.image_shape == (1, 24, 24)
    assert len(ds.test) == 2 and sorted(ds.test.labels.tolist()) == [0, 1]
    import privbench.data.dicom as dicom_mod

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(dicom_mod, "dicom_images", refuse)
    again = load_dataset(f"dicom:{root}?size=24&split=75/25", cache_dir=tmp_path / "c")
    assert again.fingerprint == ds.fingerprint
    cached = b"".join(p.read_bytes() for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert b"s0" not in cached and not any(v.encode() in cached for v in FAKE.values())


def test_spec_options_are_checked():
    assert parse_spec("dicom:/d?labels=l.csv&id=patientId&label=Target&frames=all")[2] == {
        "labels": "l.csv", "id": "patientId", "label": "Target", "frames": "all"}
    with pytest.raises(UserError, match="frames must be first or all"):
        parse_spec("dicom:/d?frames=some")
    with pytest.raises(UserError, match="apply to dicom datasets only"):
        load_dataset("digits?frames=all")
    with pytest.raises(UserError, match="give labels=FILE.csv too"):
        load_dataset("dicom:/nowhere?id=patientId")


def test_the_labels_csv_is_an_input_no_output_may_overwrite(tmp_path):
    from privbench.inputs import dataset_inputs

    assert dataset_inputs(f"dicom:{tmp_path}/img?labels=../l.csv") == [tmp_path / "img", tmp_path / "img" / ".." / "l.csv"]


# ---------------------------------------------------------------- privacy


def test_no_header_value_or_file_name_reaches_any_output(cli, tmp_path):
    root = _rsna_tree(tmp_path / "rsna")
    out = tmp_path / "out"
    spec = f"dicom:{root / 'images'}?labels=../stage_2_train_labels.csv&id=patientId&label=Target&size=16"
    result = cli("distill", "--data", spec, "--method", "random", "--ipc", "1", "--out", out, "--eval-seeds", "1",
                 "--eval-set", "epochs=1", "--eval-set", "width=8", "--device", "cpu", "-q",
                 "--cache-dir", tmp_path / "cache")
    assert result.code == 0, result.err
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"release.npz", "release.json", "provenance.private.json", "preview.png",
                                         "results.parquet"}
    secrets = [v.encode() for v in FAKE.values()] + [b"pidFAKE", b"Fakename", b"FAKEPID"]
    for path in written + [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, (path.name, secret)
    for secret in secrets:
        assert secret.decode() not in result.out


# ---------------------------------------------------------------- bad input


def _labelled(root: Path, n: int = 3) -> Path:
    for cls in ("a", "b"):
        for i in range(n):
            _dicom(root / f"{cls}{i}.dcm", offset=i)
    (root / "labels.csv").write_text("file,label\n" + "".join(f"{c}{i},{c}\n" for c in "ab" for i in range(n)))
    return root


def _no_pixels(path: Path) -> None:
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)


@pytest.mark.parametrize("case, needles", [
    ("corrupt", ["x.dcm", "not a DICOM file"]),
    ("no_pixels", ["a1.dcm", "no pixel data"]),
    ("unlabelled", ["extra.dcm", "has no row in labels file"]),
    ("no_column", ["labels.csv", "no column 'patientId'", "file, label"]),
    ("empty", ["no DICOM files", "empty"]),
    ("bad_window", ["a0.dcm", "window width"]),
])
def test_bad_input_is_one_line_naming_the_file(cli, tmp_path, case, needles):
    root = _labelled(tmp_path / ("empty" if case == "empty" else "d"))
    extra = ""
    if case == "corrupt":
        (root / "x.dcm").write_bytes(np.random.default_rng(0).bytes(2000))
        (root / "labels.csv").write_text((root / "labels.csv").read_text() + "x,a\n")
    elif case == "no_pixels":
        _no_pixels(root / "a1.dcm")
    elif case == "unlabelled":
        _dicom(root / "sub" / "extra.dcm")
    elif case == "no_column":
        extra = "&id=patientId"
    elif case == "empty":
        for p in root.glob("*.dcm"):
            p.unlink()
    elif case == "bad_window":
        _dicom(root / "a0.dcm", WindowCenter=100, WindowWidth=0)
    out = tmp_path / "out"
    result = cli("distill", "--data", f"dicom:{root}?labels=labels.csv&size=8{extra}", "--method", "random",
                 "--ipc", "1", "--out", out, "--no-evaluate", "-q", "--cache-dir", tmp_path / "cache")
    assert_one_line_error(result, *needles)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp*")]  # the cache holds whole entries only


def test_the_documented_rsna_card_loads(cli, tmp_path, monkeypatch):
    import re

    docs = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text()
    card = re.search(r"```toml\n(# registry/datasets/rsna-pneumonia.toml\n.*?)```", docs, re.S).group(1)
    registry = tmp_path / "registry"
    (registry / "datasets").mkdir(parents=True)
    (registry / "datasets" / "rsna-pneumonia.toml").write_text(card)
    monkeypatch.setenv("PRIVBENCH_REGISTRY", str(registry))
    data = tmp_path / "data"
    monkeypatch.setenv("PRIVBENCH_DATA_ROOT", str(data))
    listed = cli("datasets", "--json")
    assert listed.code == 0 and '"available": false' in listed.out
    _rsna_tree(data / "rsna-pneumonia", n=5)
    (data / "rsna-pneumonia" / "images").rename(data / "rsna-pneumonia" / "stage_2_train_images")
    ds = load_dataset("rsna-pneumonia", cache_dir=tmp_path / "c")
    assert ds.class_names == ("normal", "pneumonia") and ds.image_shape == (1, 64, 64) and not ds.public
    assert len(ds.test) == 2 and sorted(ds.test.labels.tolist()) == [0, 1]  # 80/20 of 10 files
    assert '"available": true' in cli("datasets", "--json").out


def test_a_voi_lut_sequence_is_applied_and_sets_the_range(tmp_path):
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.sequence import Sequence

    from privbench.data.dicom_pixels import dicom_images

    path = _dicom(tmp_path / "lut.dcm", WindowCenter=None, WindowWidth=None)
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    first = int(np.percentile(arr, 30))
    item = DicomDataset()
    item.LUTDescriptor = [256, first, 16]
    entries = (1000 + 3 * np.arange(256)).astype(np.uint16)  # spans 1000..1765, not 0..65535
    item.LUTData = entries.tolist()
    item["LUTDescriptor"].VR = "US"
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path)
    ds = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    assert values.min() == 1000 and values.max() == 1765  # the LUT really clips below and above its domain
    got = dicom_images(path)[0]
    assert np.allclose(got, (values - 1000) / 765, atol=1e-12) and got.min() == 0 and got.max() == 1
