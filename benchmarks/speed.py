"""Speed ratios measured in one run on one machine: ensembles against sequential training, batched DM and GM steps against their per-class loops.

    python benchmarks/speed.py                       # digits, and PneumoniaMNIST when its file is there
    python benchmarks/speed.py --epochs 100 --no-write

Every figure is a ratio of two timings taken back to back in this process, so
it holds on a loaded machine better than an absolute time; run nothing else
meanwhile all the same (on two cores a second torch job slows the first 2-3x).

* utility: ``--seeds`` ConvNets (width 128, depth 3, instance norm) trained on
  an ipc-10 random release with the utility protocol, one after another
  (``ensemble=false``) and as one vectorised ensemble, ``--epochs`` each;
* shadows: the target models of ``--shadows`` shadow pipelines (each on its
  own ipc-10 random release, the ``mia`` recipe at width 128), one after
  another and as one ensemble (``shadow_ensemble``), ``--epochs`` each;
* DM: the seconds per iteration of ``dm`` at ipc 10 with every class in one
  pass (``batched=true``) and with the reference's per-class loop;
* GM: the seconds per iteration of ``gm`` at ipc 10 (outer 2, inner 5: a
  tenth of the published loops) with the per-class gradients in one vmap call
  and in the reference's per-class loop.

Writes the ``speed`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, today, update_section  # noqa: E402

PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


def _release(dataset, ipc: int, seed: int = 0):
    import torch

    from privbench.api import Release

    g = torch.Generator().manual_seed(seed)
    picks = [torch.nonzero(dataset.train.labels == c).flatten() for c in range(dataset.num_classes)]
    index = torch.cat([p[torch.randperm(p.numel(), generator=g)[:ipc]] for p in picks])
    return Release(dataset.train.images[index], dataset.train.labels[index], {"method": "random", "ipc": ipc})


def time_utility(dataset, seeds: int, epochs: int, device: str = "cpu") -> dict:
    from privbench.api import RunContext
    from privbench.utility import UtilityConfig, train_seeds

    release = _release(dataset, 10)
    out = {}
    for ensemble in (False, True):
        config = UtilityConfig(epochs=epochs, ensemble="on" if ensemble else "off")
        t0 = time.perf_counter()
        train_seeds(release, dataset, "convnet", list(range(seeds)), config, RunContext(device=device))
        out["ensemble" if ensemble else "sequential"] = time.perf_counter() - t0
    return out


def time_shadows(dataset, shadows: int, epochs: int, device: str = "cpu") -> dict:
    from privbench.api import RunContext
    from privbench_builtins.attacks._common import TargetSpec, shadow_models

    releases = [_release(dataset, 10, seed=s) for s in range(shadows)]
    spec = TargetSpec(epochs=epochs)
    out = {}
    for ensemble in ("off", "on"):
        t0 = time.perf_counter()
        shadow_models(releases, [dataset] * shadows, spec, list(range(shadows)), RunContext(device=device),
                      ensemble=ensemble)
        out["ensemble" if ensemble == "on" else "sequential"] = time.perf_counter() - t0
    return out


def time_gm(dataset, iterations: int, device: str = "cpu") -> dict:
    from privbench.api import RunContext
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry

    registry = get_registry()
    out = {}
    for batching in ("vmap", "loop"):
        overrides = {"iterations": iterations, "class_batching": batching, "outer_loop": 2, "inner_loop": 5}
        run_distiller(registry, "gm", dataset, 10, {**overrides, "iterations": 1}, RunContext(seed=0, device=device))
        t0 = time.perf_counter()  # after a warm-up
        run_distiller(registry, "gm", dataset, 10, overrides, RunContext(seed=1, device=device))
        out[batching] = (time.perf_counter() - t0) / iterations
    return out


def time_dm(dataset, iterations: int, device: str = "cpu") -> dict:
    from privbench.api import RunContext
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry

    registry = get_registry()
    out = {}
    for batched in (True, False):
        overrides = {"iterations": iterations, "batched": batched}
        run_distiller(registry, "dm", dataset, 10, overrides, RunContext(seed=0, device=device))  # warm-up
        t0 = time.perf_counter()
        run_distiller(registry, "dm", dataset, 10, overrides, RunContext(seed=1, device=device))
        out["batched" if batched else "per_class"] = (time.perf_counter() - t0) / iterations
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--shadows", type=int, default=4)
    parser.add_argument("--dm-iterations", type=int, default=10)
    parser.add_argument("--gm-iterations", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from privbench.data import load_dataset

    datasets = [("digits (16 px, 10 classes)", "digits")]
    if PNEUMONIA.is_file():
        datasets.append(("PneumoniaMNIST (28 px, 2 classes)", f"npz:{PNEUMONIA}"))
    rows = []
    for label, spec in datasets:
        dataset = load_dataset(spec)
        u = time_utility(dataset, args.seeds, args.epochs)
        sh = time_shadows(dataset, args.shadows, args.epochs)
        d = time_dm(dataset, args.dm_iterations)
        gm = time_gm(dataset, args.gm_iterations)
        rows.append((label, u, sh, d, gm))
        print(label, u, sh, d, gm, flush=True)
    lines = [
        "## Speed: seeds and shadows as one ensemble, DM's and GM's batched steps",
        "",
        f"Measured {today()} on {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        "nothing else running; every ratio from two timings taken back to back "
        f"(`python benchmarks/speed.py --seeds {args.seeds} --shadows {args.shadows} --epochs {args.epochs} "
        f"--dm-iterations {args.dm_iterations} --gm-iterations {args.gm_iterations}`).",
        "",
        f"| data | {args.seeds} utility seeds, sequential (s) | as one ensemble (s) | speed-up "
        f"| {args.shadows} shadow target models, sequential (s) | as one ensemble (s) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, u, sh, _, _ in rows:
        lines.append(
            f"| {label} | {u['sequential']:.1f} | {u['ensemble']:.1f} | {u['sequential'] / u['ensemble']:.2f}x "
            f"| {sh['sequential']:.1f} | {sh['ensemble']:.1f} | {sh['sequential'] / sh['ensemble']:.2f}x |"
        )
    lines += [
        "",
        "| data | DM s/iteration, per-class loop | batched | speed-up | GM s/iteration, per-class loop | vmap "
        "| speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, _, _, d, gm in rows:
        lines.append(
            f"| {label} | {d['per_class']:.3f} | {d['batched']:.3f} | {d['per_class'] / d['batched']:.2f}x "
            f"| {gm['loop']:.2f} | {gm['vmap']:.2f} | {gm['loop'] / gm['vmap']:.2f}x |"
        )
    lines += [
        "",
        f"Utility: an ipc-10 random release, ConvNet width 128, depth 3, instance norm, {args.epochs} epochs "
        "per seed. Shadows: one ipc-10 random release per shadow (a different draw each), the `mia` target "
        f"recipe (ConvNet width 128, depth 3, DSA), {args.epochs} epochs each. DM: ipc 10, 256 real images "
        f"per class, DSA on, after one warm-up run. GM: ipc 10, 256 real images per class, outer loop 2 and "
        "inner loop 5, no DSA, after a one-iteration warm-up. On a CPU an ensemble saves the per-kernel "
        "overhead but none of the arithmetic, which dominates a ConvNet of width 128, and its vectorised "
        "kernels can be slower than one model's: `ensemble=\"auto\"` (and `shadow_ensemble=\"auto\"`) is "
        "therefore on for CUDA and off on a CPU. The gains it is built for need a GPU.",
    ]
    if not args.no_write:
        update_section("speed", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
