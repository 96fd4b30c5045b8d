"""The paper-protocol suite end to end on generated data, its report read back in headless Chromium.

Builds small folder trees in the real layouts of the three binary cards (JPEG and PNG, mixed sizes,
RGB and grey files, stray non-image files), a ResNet-18 weights file of the right shapes (random
values: this checks the pipeline, not the paper's numbers), runs the suite's datasets, releases,
models and paper declaration at tiny settings, then renders report.html with Chromium and checks
that every published number of the paper is in the page, beside a measured value or marked
"not run"::

    python benchmarks/paper_protocol_check.py [--out DIR] [--chromium /usr/bin/chromium]

A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TINY = """
name = "paper-protocol-tiny"
datasets = [{datasets}]
seeds = [0]

[[releases]]
method = "original"

[[releases]]
method = "dm"
ipc = [2]
config = {{ feature_extractor = "resnet18", init = "noise", iterations = 3, batch_real = 16 }}

[[releases]]
method = "gm"
ipc = [2]
config = {{ iterations = 1, outer_loop = 1, inner_loop = 1, batch_real = 16 }}

[[releases]]
method = "ddm"
ipc = [2]
config = {{ feature_extractor = "resnet18", train_steps = 10, batch_size = 16, timesteps = 50, unet_channels = [8, 16], norm_groups = 4, attention = false, sampling_steps = 3, min_candidates = 4, candidates_per_image = 2, refine_steps = 2 }}

[utility]
models = ["resnet50"]
seeds = 2
config = {{ epochs = 1, batch_size = 32, weights = "imagenet" }}

[audit]
attacks = ["autoencoder", "mia", "aia"]
metrics = ["ssim", "psnr", "ncc"]

[audit.config.autoencoder]
max_images = 30
min_steps = 5
resamples = 50

[audit.config.mia]
pipelines = 4
target_model = "resnet50"
target_steps = 2
max_members = 40
max_nonmembers = 40
resamples = 50

[audit.config.aia]
target_model = "resnet50"
target_steps = 2
resamples = 50

[report]
reproduces = "{paper}"
"""


def _images(folder: Path, count: int, ext: str, rng: np.random.Generator, stray: bool = True) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        side = int(rng.integers(20, 48))
        grey = rng.integers(0, 256, (side, side + int(rng.integers(0, 9))), dtype=np.uint8)
        image = Image.fromarray(grey) if i % 3 else Image.fromarray(np.stack([grey] * 3, -1)).convert("RGB")
        image.save(folder / f"img{i:03d}{ext if i % 4 else '.png'}")
    if stray:
        (folder / "notes.txt").write_text("not an image")


def make_trees(root: Path, per_class: int = 24) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c in ("NORMAL", "PNEUMONIA"):
            _images(root / "chest_xray" / split / c, per_class // 3, ".jpeg", rng)
    covid = root / "COVID-19_Radiography_Dataset"
    _images(covid / "COVID" / "images", per_class, ".png", rng)
    _images(covid / "Normal" / "images", per_class * 2, ".png", rng)  # balanced away by the card
    _images(covid / "Lung_Opacity" / "images", 5, ".png", rng)  # not read by the binary card
    _images(covid / "COVID" / "masks", 3, ".png", rng, stray=False)
    for c in ("tumor", "normal"):
        _images(root / "Brain_Tumor_Augmented" / c, per_class, ".jpg", rng)


def write_weights(torch_home: Path) -> None:
    import torch
    import torchvision

    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), checkpoints / "resnet18-f37072fd.pth")


def check_against_suite(tiny: dict, suite: dict) -> None:
    """The tiny suite runs the paper-protocol suite's grid: same cards, methods, models and paper."""
    assert [d.split("?")[0] for d in tiny["datasets"]] == suite["datasets"]
    assert [r["method"] for r in tiny["releases"]] == [r["method"] for r in suite["releases"]]
    assert tiny["utility"]["models"] == suite["utility"]["models"]
    for attack in ("mia", "aia"):
        assert tiny["audit"]["config"][attack]["target_model"] == suite["audit"]["config"][attack]["target_model"]
    for rel_t, rel_s in zip(tiny["releases"], suite["releases"]):
        assert rel_t.get("config", {}).get("feature_extractor") == rel_s.get("config", {}).get("feature_extractor")
    assert tiny["report"]["reproduces"] == suite["report"]["reproduces"]


def read_back(report: Path, chromium: str, paper_values: list[float]) -> dict[str, int]:
    """Render the page in headless Chromium and find every published number in its section."""
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--dump-dom", report.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=True).stdout
    section = dom.split("Published figures beside measured ones", 1)[1].split("<h2>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", section, flags=re.S)
    cells = [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
             for r in rows]
    cells = [c for c in cells if c]
    published = [c[3] for c in cells]
    missing = [v for v in paper_values if f"{v:.4g}" not in published]
    paired = sum(1 for c in cells if c[6] not in ("", "-"))
    not_run = sum(1 for c in cells if c[5] == "not run")
    unpaired = [c for c in cells if c[5] != "not run" and c[6] in ("", "-") and c[6] != "unavailable"]
    return {"rows": len(cells), "missing": len(missing), "measured": paired, "not_run": not_run,
            "neither": len(unpaired), "outside_ci": sum("outside the CI" in c[7] for c in cells)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="paper-protocol-"))
    out = args.out or work / "run"
    make_trees(work / "data")
    write_weights(work / "torch")
    suite = tomllib.loads((ROOT / "registry" / "suites" / "paper-protocol.toml").read_text())
    text = TINY.format(datasets=", ".join(f'"{d}?size=16"' for d in suite["datasets"]),
                       paper=suite["report"]["reproduces"])
    check_against_suite(tomllib.loads(text), suite)
    (work / "tiny.toml").write_text(text)
    env = {**os.environ, "PRIVBENCH_DATA_ROOT": str(work / "data"), "TORCH_HOME": str(work / "torch"),
           "PRIVBENCH_CACHE_DIR": str(work / "cache")}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "privbench", "run", str(work / "tiny.toml"), "--out", str(out), "-q"],
                   env=env, check=True)
    print(f"suite ran in {time.perf_counter() - started:.0f} s -> {out}")
    sys.path.insert(0, str(ROOT))
    from privbench.report.paper import load_paper

    paper = load_paper(suite["report"]["reproduces"])
    counts = read_back(out / "report.html", args.chromium, [f["value"] for f in paper.figures])
    print(f"published figures: {len(paper.figures)}; section rows: {counts['rows']}; published numbers missing "
          f"from the page: {counts['missing']}; beside a measured value: {counts['measured']}; marked not run: "
          f"{counts['not_run']}; neither: {counts['neither']}; measured CI excludes the published value: "
          f"{counts['outside_ci']}")
    return 0 if counts["missing"] == 0 and counts["neither"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
