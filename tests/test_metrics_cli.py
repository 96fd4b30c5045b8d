"""``privbench metrics REF CAND``: inputs of every kind, the table, Parquet output, and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from helpers import assert_one_line_error, run_subprocess
from privbench.api import Release
from privbench.releases import save_release

SIX = ("ssim", "psnr", "fsim", "lpips", "ncc", "emd")


def arrays(n=6, size=16, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.random((n, channels, size, size)).astype(np.float32)
    cand = np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1).astype(np.float32)
    return ref, cand


def npz_pair(tmp_path: Path, ref: np.ndarray, cand: np.ndarray) -> tuple[Path, Path]:
    np.savez(tmp_path / "ref.npz", images=ref)
    np.savez(tmp_path / "cand.npz", images=cand)
    return tmp_path / "ref.npz", tmp_path / "cand.npz"


def write_pngs(folder: Path, images: np.ndarray, names: list[str]) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for img, name in zip(images, names):
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8), mode="L").save(folder / name)
    return folder


def write_alexnet_weights() -> None:
    import torchvision

    path = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    features = torchvision.models.alexnet().features
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)


@pytest.fixture(autouse=True)
def _no_lpips_weights(monkeypatch):
    monkeypatch.delenv("PRIVBENCH_LPIPS_WEIGHTS", raising=False)


def test_npz_pair_prints_every_metric_and_writes_parquet_with_lpips_unavailable(cli, tmp_path):
    ref, cand = npz_pair(tmp_path, *arrays())
    out = tmp_path / "res" / "metrics.parquet"
    result = cli("metrics", ref, cand, "--out", out, "--resamples", "200", "-q")
    assert result.code == 0, result.err
    for name in SIX:
        assert name in result.out
    assert "unavailable" in result.out and "alexnet-owt-7be5be79.pth" in result.out
    rows = {r["measure"]: r for r in pq.read_table(out).to_pylist()}
    assert {f"similarity.{n}" for n in SIX} <= set(rows)
    lpips = rows["similarity.lpips"]
    assert lpips["status"] == "unavailable" and lpips["value"] is None and "alexnet" in lpips["detail"]
    ssim = rows["similarity.ssim"]
    assert ssim["status"] == "ok" and ssim["n"] == 6 and ssim["higher_is_better"] is True
    assert ssim["ci_low"] <= ssim["value"] <= ssim["ci_high"]
    assert rows["similarity.emd"]["higher_is_better"] is False
    assert {r["job"] for r in rows.values()} == {"metrics"} and len({r["run_id"] for r in rows.values()}) == 1
    assert ssim["evaluator"] == "ssim" and ssim["plugin_package"] == "privbench"


def test_lpips_scores_when_its_weights_are_in_the_hub_cache(cli, tmp_path):
    write_alexnet_weights()
    ref, cand = npz_pair(tmp_path, *arrays(n=3))
    out = tmp_path / "m.parquet"
    result = cli("metrics", ref, cand, "--metric", "lpips", "--metric", "ncc", "--out", out, "-q")
    assert result.code == 0, result.err
    rows = {r["measure"]: r for r in pq.read_table(out).to_pylist()}
    assert set(rows) == {"similarity.lpips", "similarity.ncc"}
    assert rows["similarity.lpips"]["status"] == "ok" and rows["similarity.lpips"]["n"] == 3


def test_release_directories(cli, tmp_path):
    ref, cand = arrays(n=4, channels=3)
    labels = torch.zeros(4, dtype=torch.int64)
    save_release(Release(torch.from_numpy(ref), labels, {"method": "original"}), tmp_path / "private")
    save_release(Release(torch.from_numpy(cand), labels, {"method": "dm", "ipc": 2, "seed": 7}), tmp_path / "rel")
    out = tmp_path / "m.parquet"
    result = cli("metrics", tmp_path / "private", tmp_path / "rel", "--metric", "ssim", "--out", out, "-q")
    assert result.code == 0, result.err
    (row,) = pq.read_table(out).to_pylist()
    assert (row["release_method"], row["release_ipc"], row["release_seed"]) == ("dm", 2, 7)
    assert "4 pairs of 3 x 16 x 16" in " ".join(result.out.split())


def test_image_folders_pair_by_name_or_by_order(cli, tmp_path):
    ref, _ = arrays(n=3)
    write_pngs(tmp_path / "ref", ref, ["a.png", "b.png", "c.png"])
    write_pngs(tmp_path / "same", ref[::-1], ["c.png", "b.png", "a.png"])  # same images, written in another order
    write_pngs(tmp_path / "renamed", ref, ["x.png", "y.png", "z.png"])
    out = tmp_path / "m.parquet"
    by_name = cli("metrics", tmp_path / "ref", tmp_path / "same", "--metric", "ncc", "--out", out, "-q")
    assert by_name.code == 0, by_name.err
    assert pq.read_table(out).to_pylist()[0]["value"] == pytest.approx(1.0)
    assert_one_line_error(cli("metrics", tmp_path / "ref", tmp_path / "renamed", "--metric", "ncc"),
                          "no namesake", "a.png", "--pair-by-order")
    by_order = cli("metrics", tmp_path / "ref", tmp_path / "renamed", "--metric", "ncc", "--pair-by-order",
                   "--out", out, "--force", "-q")
    assert by_order.code == 0, by_order.err
    assert pq.read_table(out).to_pylist()[0]["value"] == pytest.approx(1.0)


def _bad_inputs(tmp_path: Path):
    ref, cand = arrays(n=4)
    yield "shape", ref, cand[:, :, :12, :12], "1 x 12 x 12"
    yield "count", ref, cand[:3], "has 4 images but CAND has 3"
    yield "range", ref, cand * 3, "[0, 1]"
    nan = cand.copy()
    nan[0, 0, 0, 0] = np.nan
    yield "nan", ref, nan, "NaN"


@pytest.mark.parametrize("case", ["shape", "count", "range", "nan"])
def test_bad_arrays_exit_2_with_one_line_and_no_output(cli, tmp_path, case):
    _, ref, cand, needle = next(c for c in _bad_inputs(tmp_path) if c[0] == case)
    ref_path, cand_path = npz_pair(tmp_path, ref, cand)
    out = tmp_path / "out.parquet"
    assert_one_line_error(cli("metrics", ref_path, cand_path, "--out", out), needle)
    assert not out.exists() and not list(tmp_path.glob(".out.parquet*"))


def test_bad_input_through_the_real_executable(tmp_path):
    ref, cand = arrays(n=2)
    ref_path, cand_path = npz_pair(tmp_path, ref, cand * 3)
    out = tmp_path / "out.parquet"
    assert_one_line_error(run_subprocess("metrics", ref_path, cand_path, "--out", out, "--metric", "ncc"), "CAND")
    assert not out.exists()


def test_missing_and_unusable_inputs(cli, tmp_path):
    ref, cand = npz_pair(tmp_path, *arrays(n=2))
    assert_one_line_error(cli("metrics", ref, tmp_path / "nope.npz"), "nope.npz", "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("metrics", ref, tmp_path / "empty"), "neither a release directory")
    np.savez(tmp_path / "other.npz", pixels=np.zeros((2, 1, 16, 16), np.float32))
    assert_one_line_error(cli("metrics", ref, tmp_path / "other.npz"), "no 'images' array")
    (tmp_path / "notes.txt").write_text("x")
    assert_one_line_error(cli("metrics", ref, tmp_path / "notes.txt"), "not an .npz file")
    write_pngs(tmp_path / "big", np.zeros((1, 1, 20, 20), np.float32), ["a.png"])
    write_pngs(tmp_path / "big2", np.zeros((1, 1, 16, 16), np.float32), ["a.png"])
    assert_one_line_error(cli("metrics", tmp_path / "big", tmp_path / "big2"), "image sizes differ")


def test_options_are_checked_before_any_work(cli, tmp_path):
    ref, cand = npz_pair(tmp_path, *arrays(n=2))
    assert_one_line_error(cli("metrics", ref, cand, "--metric", "nosuch"), "unknown metric 'nosuch'")
    assert_one_line_error(cli("metrics", ref, cand, "--metric", "ssim", "--set", "ssim.batch_size=0"), "batch_size")
    assert_one_line_error(cli("metrics", ref, cand, "--metric", "ssim", "--set", "window=3"), "ssim.KEY")
    assert_one_line_error(cli("metrics", ref, cand, "--resamples", "-1"), "--resamples")
    (tmp_path / "taken.parquet").write_text("keep me")
    assert_one_line_error(cli("metrics", ref, cand, "--out", tmp_path / "taken.parquet"), "--force")
    assert (tmp_path / "taken.parquet").read_text() == "keep me"


def test_only_unavailable_metrics_is_an_error(cli, tmp_path):
    ref, cand = npz_pair(tmp_path, *arrays(n=2))
    out = tmp_path / "o.parquet"
    assert_one_line_error(cli("metrics", ref, cand, "--metric", "lpips", "--out", out), "no metric could be computed",
                          "alexnet")
    assert not out.exists()


def test_folder_channels_follow_the_images(cli, tmp_path):
    """Grey content stays one channel even when saved as RGB; colour anywhere makes both sides RGB."""
    from PIL import Image

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(2, 16, 16), dtype=np.uint8)
    for name, mode in (("grey_l", "L"), ("grey_rgb", "RGB")):
        (tmp_path / name).mkdir()
        for i, img in enumerate(grey):
            Image.fromarray(img, mode="L").convert(mode).save(tmp_path / name / f"{i}.png")
    (tmp_path / "colour").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8), mode="RGB").save(
            tmp_path / "colour" / f"{i}.png")
    same = cli("metrics", tmp_path / "grey_l", tmp_path / "grey_rgb", "--metric", "psnr", "-q")
    assert same.code == 0, same.err
    assert "2 pairs of 1 x 16 x 16" in " ".join(same.out.split()) and "80" in same.out
    mixed = cli("metrics", tmp_path / "grey_l", tmp_path / "colour", "--metric", "ncc", "-q")
    assert mixed.code == 0, mixed.err
    assert "2 pairs of 3 x 16 x 16" in " ".join(mixed.out.split())
