"""A streamed folder (read from its decoded cache batch by batch) gives what the in-memory folder gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error
from privbench.api import RunContext
from privbench.data import load_dataset
from privbench.engine import run_distiller
from privbench.errors import UserError
from privbench.imagestore import ImageStore, concat_images, is_streamed, open_npy_rows
from privbench.nets import channel_stats
from privbench.plugins import get_registry


def _write_tree(root, classes=3, per_class=14, side=12, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = np.clip(rng.normal(60 + 60 * c, 40, size=(side, side, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode="RGB").save(folder / f"{i}.png")
    return root


@pytest.fixture
def both(tmp_path):
    root = _write_tree(tmp_path / "tree")
    spec = f"folder:{root}?size=8&channels=3"
    memory = load_dataset(spec + "&stream=off", cache_dir=tmp_path / "cache")
    streamed = load_dataset(spec + "&stream=on", cache_dir=tmp_path / "cache")
    return memory, streamed


def test_a_streamed_folder_is_the_in_memory_folder_read_lazily(both):
    memory, streamed = both
    for name in ("train", "val", "test"):
        a, b = getattr(memory, name), getattr(streamed, name)
        assert isinstance(a.images, torch.Tensor) and is_streamed(b.images)
        assert b.images.shape == a.images.shape and torch.equal(a.labels, b.labels)
        assert torch.equal(b.images[:], a.images)
    assert streamed.fingerprint == memory.fingerprint  # hashed chunk by chunk, the same bytes
    rows = torch.tensor([5, 0, 3, 3, 17, 4])
    assert torch.equal(streamed.train.images[rows], memory.train.images[rows])  # any order, repeats
    assert torch.equal(streamed.train.images[7], memory.train.images[7])
    assert torch.equal(streamed.train.images[-1], memory.train.images[-1])
    mask = memory.train.labels == 1
    sub = streamed.train.subset(mask)
    assert is_streamed(sub.images) and torch.equal(sub.images[:], memory.train.subset(mask).images)
    nonmembers = streamed.nonmembers  # val + test, still on disk
    assert is_streamed(nonmembers.images) and torch.equal(nonmembers.images[:], memory.nonmembers.images)
    for got, want in zip(channel_stats(streamed.train.images), channel_stats(memory.train.images)):
        assert torch.equal(got, want)


def test_anything_else_gets_the_whole_tensor(both):
    memory, streamed = both
    x, y = streamed.train.images, memory.train.images
    assert torch.equal(torch.cat([x, x]), torch.cat([y, y]))  # a torch function given a store
    assert torch.equal(x.float(), y) and np.array_equal(np.asarray(x), y.numpy())  # a tensor method
    assert torch.equal(torch.flip(x, dims=[3]), torch.flip(y, dims=[3]))
    mixed = concat_images([x, y[:2]])
    assert isinstance(mixed, torch.Tensor) and torch.equal(mixed, torch.cat([y, y[:2]]))


def test_dm_draws_the_same_batches_and_makes_the_same_release(both):
    memory, streamed = both
    from privbench_builtins.distillers._matching import RealBatches

    draws = [RealBatches(d, 5, torch.device("cpu"), torch.Generator().manual_seed(3)) for d in (memory, streamed)]
    assert not isinstance(draws[1].source, torch.Tensor)  # the streamed set stays on disk
    for _ in range(3):
        (a, ca), (b, cb) = draws[0].draw(), draws[1].draw()
        assert ca == cb and torch.equal(a, b)
    registry = get_registry()
    config = {"iterations": 3, "batch_real": 6, "width": 8, "depth": 1}
    releases = [run_distiller(registry, "dm", d, 2, config, RunContext(seed=1)) for d in (memory, streamed)]
    assert torch.equal(releases[0].images, releases[1].images)
    assert torch.equal(releases[0].labels, releases[1].labels)


def test_the_audit_population_of_a_streamed_set_stays_on_disk_and_matches(both):
    memory, streamed = both
    from privbench_builtins.attacks._population import build_population

    pops = [build_population(d, ["val", "test"], 0.01, RunContext()) for d in (memory, streamed)]
    assert is_streamed(pops[1].images) and isinstance(pops[0].images, torch.Tensor)
    assert torch.equal(pops[1].images[:], pops[0].images) and pops[1].facts == pops[0].facts
    index = np.array([0, 4, 9])
    assert torch.equal(pops[1].subset(index).images[:], pops[0].subset(index).images)


def test_a_damaged_cache_entry_is_decoded_again_and_a_store_refuses_foreign_files(tmp_path):
    root = _write_tree(tmp_path / "tree", classes=2, per_class=10)
    spec = f"folder:{root}?size=8&channels=3&stream=on"
    first = load_dataset(spec, cache_dir=tmp_path / "cache")
    entries = sorted((tmp_path / "cache" / "folders").glob("*.npy"))
    assert len(entries) == 3  # one per split
    for entry in entries:  # cut every entry short
        entry.write_bytes(entry.read_bytes()[:-7])
    again = load_dataset(spec, cache_dir=tmp_path / "cache")
    assert again.fingerprint == first.fingerprint
    floats = tmp_path / "floats.npy"
    np.save(floats, np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(UserError, match="not a C-ordered uint8"):
        open_npy_rows(floats)
    rows = tmp_path / "rows.npy"
    np.save(rows, np.zeros((3, 1, 4, 4), np.uint8))
    store = ImageStore.open(rows)
    with pytest.raises(UserError, match=r"expected \(2, 1, 4, 4\)"):
        ImageStore.open(rows, (2, 1, 4, 4))
    rows.write_bytes(rows.read_bytes()[:-20])  # shortened while in use
    with pytest.raises(UserError, match="ended early"):
        store[2]


def test_stream_option_errors_are_one_line(cli, tmp_path):
    root = _write_tree(tmp_path / "tree", classes=2, per_class=8)
    result = cli("distill", "--data", f"folder:{root}?stream=maybe", "--method", "random", "--ipc", "1",
                 "--out", tmp_path / "a", "--no-evaluate", "-q")
    assert_one_line_error(result, "stream must be auto, on or off")
    result = cli("distill", "--data", "digits?stream=on", "--method", "random", "--ipc", "1",
                 "--out", tmp_path / "b", "--no-evaluate", "-q")
    assert_one_line_error(result, "stream applies to folder datasets only")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_streamed_folder_distills_and_evaluates_from_the_command_line(cli, tmp_path):
    root = _write_tree(tmp_path / "tree", classes=2, per_class=12)
    out = tmp_path / "rel"
    result = cli("distill", "--data", f"folder:{root}?size=8&channels=3&stream=on", "--method", "dm", "--ipc", "2",
                 "--set", "iterations=2", "--set", "width=8", "--out", out, "--eval-set", "epochs=2",
                 "--eval-set", "width=8", "--eval-model", "convnet", "--eval-seeds", "1", "-q")
    assert result.code == 0, result.err
    assert (out / "release.npz").is_file()
