"""The seed paper's binary cards and the folder options behind them: classes, balance, split.

Each card is loaded from a small tree in its dataset's real layout (JPEG and PNG, mixed
sizes, RGB and grayscale files, stray non-image files and masks/ folders where the real
archive has them) under ``PRIVBENCH_DATA_ROOT``.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, assert_one_line_error
from PIL import Image

import privbench.data.folder as folder_mod
from privbench.data import load_dataset, parse_spec
from privbench.data.splits import balanced_subset, train_val_test
from privbench.errors import UserError

SIZES = ((12, 10), (9, 14), (16, 16))


def _image(path: Path, k: int) -> None:
    """A small image whose format follows the name; size and mode vary with ``k``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = SIZES[k % len(SIZES)]
    rng = np.random.default_rng(k)
    if k % 4 == 3:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    img.save(path)


def _class_folder(folder: Path, n: int, ext: str, start: int = 0) -> None:
    for i in range(n):
        _image(folder / f"{folder.name}-{start + i}{ext if i % 5 else '.png'}", start + i)


COVID = {"COVID": 12, "Normal": 31, "Lung_Opacity": 4, "Viral Pneumonia": 3}
MRI = {"Training": {"glioma": 6, "meningioma": 7, "notumor": 9, "pituitary": 5},
       "Testing": {"glioma": 2, "meningioma": 2, "notumor": 3, "pituitary": 2}}
SAROJA = {"tumor": 21, "normal": 19}
XRAY = {"train": {"NORMAL": 8, "PNEUMONIA": 20}, "val": {"NORMAL": 2, "PNEUMONIA": 2},
        "test": {"NORMAL": 4, "PNEUMONIA": 6}}


def _covid(data: Path) -> Path:
    root = data / "COVID-19_Radiography_Dataset"
    for k, (cls, n) in enumerate(COVID.items()):
        _class_folder(root / cls / "images", n, ".png", 100 * k)
        _class_folder(root / cls / "masks", 3, ".png", 100 * k)  # lung masks beside the images
        (root / f"{cls}.metadata.xlsx").write_bytes(b"PK not really a workbook")
    (root / "README.md.txt").write_text("COVID-19 Radiography Database")
    return root


def _mri(data: Path, top: str = "brain-tumor-mri") -> Path:
    root = data / top
    for s, (split, classes) in enumerate(MRI.items()):
        for k, (cls, n) in enumerate(classes.items()):
            _class_folder(root / split / cls, n, ".jpg", 1000 * s + 100 * k)
    return root


def _saroja(data: Path, names=("tumor", "normal")) -> Path:
    root = data / "Brain_Tumor_Augmented"
    for k, (cls, n) in enumerate(SAROJA.items()):
        name = names[0] if cls == "tumor" else names[1]
        _class_folder(root / name, n - 4, ".jpg", 100 * k)
        _class_folder(root / name / "flipped", 4, ".jpg", 100 * k + 50)  # images may sit in sub-folders
    (root / "readme.txt").write_text("augmented MR images")
    (root / names[1] / "notes.txt").write_text("not an image")
    return root


def _xray(data: Path) -> Path:
    root = data / "chest_xray"
    for s, (split, classes) in enumerate(XRAY.items()):
        for k, (cls, n) in enumerate(classes.items()):
            _class_folder(root / split / cls, n, ".jpeg", 1000 * s + 100 * k)
            (root / split / cls / ".DS_Store").write_bytes(b"\0")
    _class_folder(root / "__MACOSX", 2, ".jpeg")  # archive debris beside the split folders
    return root


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv("PRIVBENCH_DATA_ROOT", str(root))
    return root


@pytest.fixture
def decoded(monkeypatch):
    """The files each load decodes, per split (train, val, test in that order)."""
    calls: list[list[Path]] = []
    real = folder_mod._decode_all

    def spy(files, *args, **kwargs):
        calls.append(list(files))
        return real(files, *args, **kwargs)

    monkeypatch.setattr(folder_mod, "_decode_all", spy)

    def load(spec: str, cache_dir: Path):
        calls.clear()
        ds = load_dataset(spec, cache_dir=cache_dir)
        return ds, dict(zip(("train", "val", "test"), calls))

    return load


def _class_of(path: Path) -> str:
    """The source class folder of a file in any of the trees above."""
    parts = path.parts
    for name in (*COVID, *MRI["Training"], *SAROJA, *XRAY["train"]):
        if name in parts:
            return name
    raise AssertionError(path)


def _assert_partition(files: dict[str, list[Path]]) -> None:
    everything = [f for split in files.values() for f in split]
    assert len(everything) == len(set(everything)), "a file is in two splits"


@pytest.mark.parametrize(
    "card, make, classes, counts",
    [
        ("covid19-binary", _covid, ("COVID", "Normal"), [12, 12]),
        ("brain-tumor-saroja", _saroja, ("normal", "tumour"), [19, 21]),
        ("brain-tumor-mri-binary", _mri, ("normal", "tumour"), [12, 24]),
        ("chest-xray-pneumonia-paper", _xray, ("NORMAL", "PNEUMONIA"), [14, 28]),
    ],
)
def test_binary_cards_give_the_stated_classes(data, tmp_path, card, make, classes, counts):
    make(data)
    ds = load_dataset(f"{card}?size=8", cache_dir=tmp_path / "cache")
    assert ds.class_names == classes and ds.num_classes == 2 and ds.image_shape == (1, 8, 8)
    total = sum(np.bincount(s.labels.numpy(), minlength=2) for s in (ds.train, ds.val, ds.test))
    assert total.tolist() == counts
    assert ds.public == (card != "brain-tumor-saroja")


def test_covid_binary_is_balanced_and_seeded(data, tmp_path, decoded):
    _covid(data)
    cache = tmp_path / "cache"
    _, files = decoded("covid19-binary?size=8", cache)
    kept = [f for split in files.values() for f in split]
    assert Counter(map(_class_of, kept)) == {"COVID": 12, "Normal": 12}  # Normal subsampled to COVID's count
    assert all("images" in f.parts for f in kept)  # masks and the other two classes are never read
    _, again = decoded("covid19-binary?size=8", cache)
    assert again == files
    _, other = decoded("covid19-binary?size=8&seed=1", cache)
    normal = {f for split in files.values() for f in split if _class_of(f) == "Normal"}
    assert {f for split in other.values() for f in split if _class_of(f) == "Normal"} != normal


def test_balance_decodes_only_the_kept_files(data, tmp_path, monkeypatch):
    _covid(data)
    seen = []
    real = folder_mod._decode
    monkeypatch.setattr(folder_mod, "_decode", lambda path, *a: seen.append(path) or real(path, *a))
    load_dataset("covid19-binary?size=8", cache_dir=tmp_path / "cache")
    assert len(seen) == 24 and len(set(seen)) == 24  # the 19 Normal images dropped were never decoded


def test_80_20_split_is_stratified_seeded_and_disjoint(data, tmp_path, decoded):
    _mri(data)
    cache = tmp_path / "cache"
    ds, files = decoded("brain-tumor-mri-binary?size=8", cache)
    _assert_partition(files)
    assert (len(ds.train), len(ds.val), len(ds.test)) == tuple(len(files[s]) for s in ("train", "val", "test"))
    for label, n in enumerate((12, 24)):  # normal, tumour
        test = int((ds.test.labels == label).sum())
        val = int((ds.val.labels == label).sum())
        assert abs(test - 0.2 * n) <= 1 and abs(val - 0.1 * (n - test)) <= 1
    _, again = decoded("brain-tumor-mri-binary?size=8", cache)
    assert again == files
    _, other_seed = decoded("brain-tumor-mri-binary?size=8&seed=3", cache)
    assert set(other_seed["test"]) != set(files["test"])
    # val is carved out of the train part: the test part does not move when val_fraction does
    _, wider_val = decoded("brain-tumor-mri-binary?size=8&val_fraction=0.3", cache)
    assert wider_val["test"] == files["test"] and len(wider_val["val"]) > len(files["val"])
    assert set(wider_val["train"]) | set(wider_val["val"]) == set(files["train"]) | set(files["val"])


def test_split_pools_official_folders_and_the_default_keeps_them(data, tmp_path, decoded):
    root = _xray(data)
    cache = tmp_path / "cache"
    _, official = decoded("chest-xray-pneumonia?size=8", cache)
    assert {s: {f.relative_to(root).parts[0] for f in fs} for s, fs in official.items()} == {
        "train": {"train"}, "val": {"val"}, "test": {"test"}}
    _, pooled = decoded("chest-xray-pneumonia-paper?size=8", cache)
    _assert_partition(pooled)
    assert {f for fs in pooled.values() for f in fs} == {f for fs in official.values() for f in fs}
    assert {f.relative_to(root).parts[0] for f in pooled["test"]} > {"test"}  # drawn from all three


def test_class_merging_adds_up(data, tmp_path, decoded):
    root = _mri(data)
    spec = f"folder:{root}?size=8&classes=tumour:glioma+meningioma+pituitary,normal:notumor&split=80/20"
    ds, files = decoded(spec, tmp_path / "cache")
    assert ds.class_names == ("tumour", "normal")  # the order given
    by_label = Counter()
    for split, fs in files.items():
        labels = getattr(ds, split).labels.tolist()
        by_label.update((label, _class_of(f)) for label, f in zip(labels, fs))
    sources = {cls: sum(MRI[s][cls] for s in MRI) for cls in MRI["Training"]}
    assert by_label == {(0, c): sources[c] for c in ("glioma", "meningioma", "pituitary")} | {(1, "notumor"): 9 + 3}


def test_selecting_class_folders_by_spec_and_folder_names_in_any_case(data, tmp_path):
    root = _covid(data)
    ds = load_dataset(f"folder:{root}?size=8&glob=images/*&classes=Normal,COVID&balance=true", cache_dir=tmp_path / "c")
    assert ds.class_names == ("Normal", "COVID") and len(ds.train) + len(ds.val) + len(ds.test) == 24
    shutil.rmtree(data)
    _saroja(data, names=("Tumor", "Normal"))
    assert load_dataset("brain-tumor-saroja?size=8", cache_dir=tmp_path / "c").class_names == ("normal", "tumour")


def test_four_class_covid_card_keeps_its_70_15_15_split(data, tmp_path):
    _covid(data)
    ds = load_dataset("covid19-radiography?size=8", cache_dir=tmp_path / "cache")
    assert ds.class_names == tuple(sorted(COVID)) and len(ds.train) + len(ds.val) + len(ds.test) == 50
    assert int((ds.test.labels == 2).sum()) == round(0.15 * 31)


def _distill(cli, spec: str, out: Path):
    return cli("distill", "--data", spec, "--method", "random", "--ipc", "1", "--out", out, "--no-evaluate", "-q")


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Path:
    """A copy of the dataset cards that a test may change."""
    root = tmp_path / "registry"
    shutil.copytree(ROOT / "registry" / "datasets", root / "datasets")
    monkeypatch.setenv("PRIVBENCH_REGISTRY", str(root))
    return root / "datasets"


def test_a_source_class_that_does_not_exist_is_one_line(cli, data, tmp_path, registry):
    _covid(data)
    card = registry / "covid19-binary.toml"
    card.write_text(card.read_text().replace('classes = ["COVID", "Normal"]\nbalance',
                                             'classes = { COVID = ["Covid19"], Normal = ["Normal"] }\nbalance'))
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, "covid19-binary", out), "'Covid19'",
                          "COVID, Lung_Opacity, Normal, Viral Pneumonia")
    root = data / "COVID-19_Radiography_Dataset"
    assert_one_line_error(_distill(cli, f"folder:{root}?glob=images/*&classes=COVID,Pneumonia", out), "'Pneumonia'")
    assert not out.exists()


@pytest.mark.parametrize(
    "old, new, needle",
    [
        ('classes = { normal = ["notumor"], ', 'classes = { healthy = ["notumor"], ', "field 'classes'"),
        ('tumour = ["glioma", "meningioma", "pituitary"]', 'tumour = ["glioma", "notumor"]', "both 'normal' and 'tumour'"),
        ('split = "80/20"', 'split = "80/30"', "field 'split'"),
        ('split = "80/20"', 'split = "80/20"\nbalanse = true', "unknown key(s) balanse"),
        ('split = "80/20"', 'split = "80/20"\ntest_fraction = 0.3', "test_fraction and split"),
        ('split = "80/20"', 'balance = "yes"', "field 'balance'"),
    ],
    ids=["class-not-on-card", "folder-twice", "split-sum", "unknown-option", "split-and-fraction", "balance-str"],
)
def test_card_options_are_checked_in_one_line(cli, registry, old, new, needle):
    card = registry / "brain-tumor-mri-binary.toml"
    text = card.read_text()
    assert old in text
    card.write_text(text.replace(old, new, 1))
    assert_one_line_error(cli("datasets"), "brain-tumor-mri-binary.toml", needle)


def test_spec_options_parse_and_refuse_in_one_line():
    _, _, options = parse_spec("folder:/x?split=80/20&balance=true&classes=a:b+c,d")
    assert options == {"split": (80, 20), "balance": True, "classes": (("a", ("b", "c")), ("d", ("d",)))}
    for query, needle in (("split=80/30", "split must be"), ("split=abc", "split must be"),
                          ("balance=maybe", "balance must be true or false"), ("classes=a", "at least two"),
                          ("classes=a:b,c:b", "both"), ("classes=a,,b", "classes must be"),
                          ("split=80/20&test_fraction=0.1", "test_fraction and split")):
        with pytest.raises(UserError, match=needle):
            parse_spec(f"folder:/x?{query}")
    with pytest.raises(UserError, match="folder and dicom datasets only"):
        load_dataset("digits?balance=true")


def test_every_image_lands_in_exactly_one_split():
    """A small property over random class sizes, seeds and fractions, on indices alone."""
    rng = np.random.default_rng(0)
    for _ in range(60):
        sizes = rng.integers(3, 40, size=rng.integers(2, 5))
        labels = np.repeat(np.arange(sizes.size), sizes)
        rng.shuffle(labels)
        seed = int(rng.integers(0, 2**63 - 1))
        test_f, val_f = float(rng.choice([0.2, 0.25, 0.3])), float(rng.choice([0.1, 0.2]))
        if rng.random() < 0.5:
            kept = balanced_subset(labels, seed)
            assert np.bincount(labels[kept]).tolist() == [sizes.min()] * sizes.size
        else:
            kept = np.arange(labels.size)
        parts = train_val_test(labels[kept], test_f, val_f, seed)
        every = np.concatenate(parts)
        assert np.array_equal(np.sort(every), np.arange(kept.size))  # each once, none left out
        for part in parts:
            assert set(labels[kept][part]) == set(labels[kept])  # every class in every split


def test_datasets_lists_the_paper_cards(cli):
    result = cli("datasets", "--json")
    assert result.code == 0
    rows = {r["name"]: r for r in json.loads(result.out)}
    for name in ("covid19-binary", "brain-tumor-saroja", "brain-tumor-mri-binary", "chest-xray-pneumonia-paper"):
        assert rows[name]["image_size"] == 64 and rows[name]["channels"] == 1 and "80/20" in rows[name]["protocol"]
    assert rows["covid19-binary"]["protocol"] == "selected, balanced, 80/20"
    assert rows["brain-tumor-mri-binary"]["class_sources"]["tumour"] == ["glioma", "meningioma", "pituitary"]
    assert "8,917" in (ROOT / "registry" / "datasets" / "chest-xray-pneumonia.toml").read_text()
    table = cli("datasets")
    assert table.code == 0 and "covid19-binary" in table.out
