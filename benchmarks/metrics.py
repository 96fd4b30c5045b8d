"""Time the batched metric plugins against per-image loops of the reference libraries, and check the values.

    python benchmarks/metrics.py                 # 10,000 pairs of 28 x 28 images, updates docs/benchmarks.md
    python benchmarks/metrics.py --n 1000 --no-write

Reference images are scikit-learn's digits upsampled to 28 x 28 (the MedMNIST
size) and tiled; each candidate is its reference with Gaussian noise of a
random strength (sigma between 0.01 and 0.2, so no pair comes near PSNR's
80 dB ceiling), half of them also blurred. The per-image
loop is what a script without privbench would do: scikit-image's
``structural_similarity`` (same Gaussian window as privbench) and
``peak_signal_noise_ratio``, a NumPy Pearson correlation and SciPy's
``wasserstein_distance`` on 256-bin histograms. The speed ratio compares those
four metrics with privbench's batched versions of the same four; FSIM and LPIPS
have no per-image counterpart in the loop and are timed on their own (FSIM's
per-image piq loop on a subset, for scale). Libraries are imported and every
metric is run once on a few images before timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, today, update_section  # noqa: E402

REFERENCE_METRICS = ("ssim", "psnr", "ncc", "emd")
TOLERANCE = {"ssim": 1e-4, "psnr": 5e-3, "ncc": 1e-6, "emd": 1e-6}


def make_pairs(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    from privbench.data.arrays import resize

    digits = torch.from_numpy((load_digits().images / 16.0).astype(np.float32))[:, None]
    base = resize(digits, size)
    g = torch.Generator().manual_seed(seed)
    ref = base[torch.randint(0, base.shape[0], (n,), generator=g)].contiguous()
    sigma = 0.01 + 0.19 * torch.rand(n, 1, 1, 1, generator=g)
    cand = ref + sigma * torch.randn(ref.shape, generator=g)
    blur = torch.rand(n, generator=g) < 0.5
    cand[blur] = torch.nn.functional.avg_pool2d(cand[blur], 3, stride=1, padding=1, count_include_pad=False)
    return ref, cand.clamp(0, 1).contiguous()


def reference_loop(ref: torch.Tensor, cand: torch.Tensor) -> dict[str, np.ndarray]:
    """One image at a time with scikit-image, NumPy and SciPy.

    SSIM, PSNR and NCC get float64 copies (the most accurate reference); the
    histograms are binned from the float32 pixels every metric sees.
    """
    from scipy.stats import wasserstein_distance
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    levels = np.arange(256)
    ref32, cand32 = ref.numpy(), cand.numpy()
    ref64, cand64 = ref32.astype(np.float64), cand32.astype(np.float64)
    out = {name: np.empty(ref.shape[0]) for name in REFERENCE_METRICS}
    for i in range(ref.shape[0]):
        x, y = ref64[i, 0], cand64[i, 0]
        out["ssim"][i] = structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False)
        out["psnr"][i] = peak_signal_noise_ratio(x, y, data_range=1.0)
        out["ncc"][i] = np.corrcoef(x.ravel(), y.ravel())[0, 1]
        hx = np.bincount(np.clip(np.round(ref32[i].ravel() * 255), 0, 255).astype(np.int64), minlength=256)
        hy = np.bincount(np.clip(np.round(cand32[i].ravel() * 255), 0, 255).astype(np.int64), minlength=256)
        out["emd"][i] = wasserstein_distance(levels, levels, hx / hx.sum(), hy / hy.sum())
    return out


def fsim_loop(ref: torch.Tensor, cand: torch.Tensor) -> float:
    import piq

    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(ref.shape[0]):
            piq.fsim(cand[i : i + 1], ref[i : i + 1], data_range=1.0, chromatic=False)
    return time.perf_counter() - t0


def lpips_with_random_backbone(tmp: Path) -> str:
    """A randomly initialised AlexNet of the right shapes, for timing only when the real weights are absent."""
    import torchvision

    path = tmp / "alexnet-random.pth"
    features = torchvision.models.alexnet().features
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="image pairs")
    parser.add_argument("--size", type=int, default=28, help="image side in pixels")
    parser.add_argument("--fsim-loop", type=int, default=500, help="pairs in the per-image FSIM loop (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); 1 compares like with like with the loop")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from privbench.api import MetricUnavailable, score_images
    from privbench.engine import metric_instances
    from privbench.plugins import get_registry

    ref, cand = make_pairs(args.n, args.size, args.seed)
    registry = get_registry()
    names = registry.names("metric")
    tmp = Path(tempfile.mkdtemp(prefix="privbench-bench-"))
    metrics = metric_instances(registry, "cpu", names)
    lpips_note = ""
    if "lpips" in metrics:
        try:
            metrics["lpips"].check_available()
        except MetricUnavailable:
            metrics.update(metric_instances(registry, "cpu", ["lpips"],
                                            {"lpips": {"weights": lpips_with_random_backbone(tmp)}}))
            lpips_note = ("LPIPS weights are not installed on this machine, so LPIPS was timed with a randomly "
                          "initialised AlexNet of the right shapes (speed only; its values mean nothing).")

    # Warm up: imports, model construction, first-call allocations.
    score_images(metrics, ref[:8], cand[:8])
    reference_loop(ref[:8], cand[:8])

    print(f"scoring {args.n} pairs of {args.size} x {args.size} with {', '.join(names)} ...", flush=True)
    scores = score_images(metrics, ref, cand)
    batched_s = {name: s.elapsed_s for name, s in scores.items()}
    print("batched:", {k: round(v, 2) for k, v in batched_s.items()}, flush=True)

    t0 = time.perf_counter()
    expected = reference_loop(ref, cand)
    loop_s = time.perf_counter() - t0
    print(f"per-image loop: {loop_s:.2f} s", flush=True)

    diffs = {name: float(np.max(np.abs(scores[name].values.numpy() - expected[name]))) for name in REFERENCE_METRICS}
    agree = all(diffs[n] <= TOLERANCE[n] for n in REFERENCE_METRICS)
    fsim_loop_s = None
    if args.fsim_loop and "fsim" in metrics:
        k = min(args.fsim_loop, args.n)
        fsim_loop_s = fsim_loop(ref[:k], cand[:k]) * args.n / k

    same_four = sum(batched_s[n] for n in REFERENCE_METRICS)
    ratio = loop_s / same_four
    rows = []
    for name in names:
        s = scores[name]
        mean = float(s.values.mean()) if s.available else float("nan")
        check = f"max abs diff {diffs[name]:.1e} (tolerance {TOLERANCE[name]:g})" if name in diffs else "-"
        rows.append(f"| {name} | {batched_s[name]:.2f} | {args.n / batched_s[name]:,.0f} | {mean:.4g} | {check} |")
    lines = [
        "## Metrics: batched plugins against a per-image loop",
        "",
        f"- Date: {today()}; machine: {machine()}; torch {torch.__version__} with {torch.get_num_threads()} "
        "CPU thread(s) (the per-image loop runs on one).",
        "- The CPU was shared with other jobs while this ran, so absolute times are upper bounds; torch's "
        "thread pool suffers most from such sharing, hence a one-thread run is the fair comparison there.",
        f"- {args.n:,} pairs of 1 x {args.size} x {args.size} images (scikit-learn digits upsampled, candidates "
        "noised with sigma from 0.01 to 0.2, half of them blurred); default plugin settings "
        "(batch sizes: SSIM 1024, PSNR 4096, NCC 4096, EMD 2048, FSIM 256, LPIPS 32 at 64 x 64); device cpu.",
        "- Per-image loop: scikit-image `structural_similarity` (Gaussian window, sigma 1.5, population covariance) "
        "and `peak_signal_noise_ratio`, NumPy `corrcoef`, SciPy `wasserstein_distance` on 256-bin histograms.",
        "",
        "| metric | batched time (s) | pairs / s | mean | agreement with the per-image loop |",
        "|---|---:|---:|---:|---|",
        *rows,
        "",
        f"SSIM + PSNR + NCC + EMD: **{same_four:.2f} s batched against {loop_s:.2f} s per image, "
        f"{ratio:.0f}x faster**; values agree within tolerance: {'yes' if agree else 'NO'}.",
    ]
    total = sum(batched_s.values())
    lines.append(f"All {len(names)} metrics batched: {total:.1f} s for {args.n:,} pairs.")
    if fsim_loop_s is not None:
        lines.append(f"FSIM one pair at a time with piq (timed on {min(args.fsim_loop, args.n)} pairs, scaled to "
                     f"{args.n:,}): {fsim_loop_s:.1f} s, {fsim_loop_s / batched_s['fsim']:.1f}x the batched time.")
    if lpips_note:
        lines.append(lpips_note)
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        update_section("metrics", markdown)
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
