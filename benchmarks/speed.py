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
  and in the reference's per-class loop;
* compile: DM's iterations per second with ``compile`` off and on (each after
  a warm-up run, which for the compiled one includes compiling) and the
  largest relative difference of the two loss histories from one seed; one
  utility ConvNet's training, eager and compiled, with each model's balanced
  accuracy on the test split.

The process tunes the host allocator as the command line does
(:mod:`privbench.allocator`).

Writes the ``speed`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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


def time_compile(dataset, iterations: int, epochs: int, device: str = "cpu") -> dict:
    """DM and the training loop eager and compiled: time, loss and accuracy side by side."""
    from privbench.api import RunContext
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry
    from privbench.training import classification_scores, predict_proba
    from privbench.utility import UtilityConfig, train_seeds

    registry = get_registry()
    out = {}
    for flag in (False, True):
        overrides = {"iterations": iterations, "compile": flag}
        t0 = time.perf_counter()
        run_distiller(registry, "dm", dataset, 10, {**overrides, "iterations": 2}, RunContext(seed=0, device=device))
        out[f"dm warm-up {flag}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        release = run_distiller(registry, "dm", dataset, 10, overrides, RunContext(seed=1, device=device))
        out[f"dm {flag}"] = (time.perf_counter() - t0) / iterations
        out[f"dm loss {flag}"] = release.provenance["loss_history"]
    eager, comp = out["dm loss False"], out["dm loss True"]
    out["dm loss diff"] = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(eager, comp))
    release = _release(dataset, 10)
    for flag in (False, True):
        ctx = RunContext(seed=0, device=device)
        t0 = time.perf_counter()
        train_seeds(release, dataset, "convnet", [0], UtilityConfig(epochs=2, ensemble="off", compile=flag), ctx)
        out[f"train warm-up {flag}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        (model,) = train_seeds(release, dataset, "convnet", [1], UtilityConfig(epochs=epochs, ensemble="off",
                                                                              compile=flag), ctx)
        out[f"train {flag}"] = time.perf_counter() - t0
        probs = predict_proba(model, dataset.test.images, ctx)
        out[f"accuracy {flag}"] = classification_scores(probs, dataset.test.labels, dataset.num_classes)
    return out


def step_gflop(dataset, images: int) -> float:
    """GFLOP of one training step of the utility ConvNet on ``images`` images (torch's FLOP counter)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from privbench.nets import make_model

    model = make_model("convnet", dataset.channels, dataset.num_classes, dataset.image_shape[1:], seed=0)
    x = torch.rand(images, *dataset.image_shape)
    y = torch.randint(0, dataset.num_classes, (images,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 1e9


def conv_gflops(repeats: int = 20) -> float:
    """This CPU's best convolution rate: the ConvNet's middle convolution (128 -> 128, 3 x 3) on 64 maps of 16 x 16."""
    import torch
    import torch.nn.functional as F

    x, w = torch.rand(64, 128, 16, 16), torch.rand(128, 128, 3, 3)
    for _ in range(3):
        F.conv2d(x, w, padding=1)
    t0 = time.perf_counter()
    for _ in range(repeats):
        F.conv2d(x, w, padding=1)
    return 2 * 64 * 16 * 16 * 128 * 128 * 9 * repeats / (time.perf_counter() - t0) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--shadows", type=int, default=4)
    parser.add_argument("--dm-iterations", type=int, default=10)
    parser.add_argument("--gm-iterations", type=int, default=2)
    parser.add_argument("--compile-epochs", type=int, default=300)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    # A fresh inductor cache, so the compiling column is a first compile and not what earlier runs left.
    cache = tempfile.TemporaryDirectory(prefix="privbench-speed-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    import torch

    from privbench.allocator import tune_host_allocator

    tune_host_allocator()  # as the command line runs

    from privbench.data import load_dataset

    datasets = [("digits (16 px, 10 classes)", "digits")]
    if PNEUMONIA.is_file():
        datasets.append(("PneumoniaMNIST (28 px, 2 classes)", f"npz:{PNEUMONIA}"))
    rows = []
    peak = conv_gflops()
    for label, spec in datasets:
        dataset = load_dataset(spec)
        u = time_utility(dataset, args.seeds, args.epochs)
        sh = time_shadows(dataset, args.shadows, args.epochs)
        d = time_dm(dataset, args.dm_iterations)
        gm = time_gm(dataset, args.gm_iterations)
        c = time_compile(dataset, args.dm_iterations, args.compile_epochs)
        # An ipc-10 release is one mini-batch per epoch: seeds x epochs steps, each of this many GFLOP.
        c["floor"] = step_gflop(dataset, 10 * dataset.num_classes) / peak
        rows.append((label, u, sh, d, gm, c))
        print(label, u, sh, d, gm, {k: v for k, v in c.items() if "loss " not in k}, flush=True)
    lines = [
        "## Speed: seeds and shadows as one ensemble, DM's and GM's batched steps",
        "",
        f"Measured {today()} on {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        "nothing else running; every ratio from two timings taken back to back "
        f"(`python benchmarks/speed.py --seeds {args.seeds} --shadows {args.shadows} --epochs {args.epochs} "
        f"--dm-iterations {args.dm_iterations} --gm-iterations {args.gm_iterations} "
        f"--compile-epochs {args.compile_epochs}`).",
        "",
        f"| data | {args.seeds} utility seeds, sequential (s) | as one ensemble (s) | speed-up "
        f"| {args.shadows} shadow target models, sequential (s) | as one ensemble (s) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    bounds, best_bound = [], 0.0
    for label, u, sh, *_, c in rows:
        floor_u, floor_sh = c["floor"] * args.seeds * args.epochs, c["floor"] * args.shadows * args.epochs
        bounds.append(f"{floor_u:.1f} s for the seeds and {floor_sh:.1f} s for the shadows on {label.split(' (')[0]} "
                      f"(so together at most {u['sequential'] / floor_u:.2f}x and {sh['sequential'] / floor_sh:.2f}x "
                      "as fast as one at a time)")
        best_bound = max(best_bound, u["sequential"] / floor_u, sh["sequential"] / floor_sh)
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
    for label, _, _, d, gm, _ in rows:
        lines.append(
            f"| {label} | {d['per_class']:.3f} | {d['batched']:.3f} | {d['per_class'] / d['batched']:.2f}x "
            f"| {gm['loop']:.2f} | {gm['vmap']:.2f} | {gm['loop'] / gm['vmap']:.2f}x |"
        )
    lines += [
        "",
        "| data | DM it/s, eager | compiled | speed-up | compiling (s) | loss, largest relative difference "
        f"| one utility ConvNet, {args.compile_epochs} epochs, eager (s) | compiled (s) | speed-up | compiling (s) "
        "| balanced accuracy %, eager | compiled |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, *_, c in rows:
        e, k = c["accuracy False"]["balanced_accuracy"], c["accuracy True"]["balanced_accuracy"]
        lines.append(
            f"| {label} | {1 / c['dm False']:.2f} | {1 / c['dm True']:.2f} | {c['dm False'] / c['dm True']:.2f}x "
            f"| {c['dm warm-up True'] - c['dm warm-up False']:.0f} | {c['dm loss diff']:.1e} "
            f"| {c['train False']:.1f} | {c['train True']:.1f} | {c['train False'] / c['train True']:.2f}x "
            f"| {c['train warm-up True'] - c['train warm-up False']:.0f} | {100 * e:.1f} | {100 * k:.1f} |"
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
        "",
        f"What any ensemble could gain on this CPU: its convolutions ran at most {peak:.0f} GFLOP/s (the ConvNet's "
        "middle convolution on 64 maps of 16 x 16, timed in this run), and torch's FLOP counter puts a "
        "training step of the utility ConvNet at the same number of operations however the models are batched. "
        "With no overhead left at all, that arithmetic alone takes " + "; ".join(bounds) + "."
        + (" A 3x gain is out of reach of any batching on this CPU." if best_bound < 3 else ""),
        "",
        "Compile: `compile=true` (`privbench.compiling`) against the eager default, each after a warm-up run "
        "(2 DM iterations; 2 epochs of training) whose extra time over the eager warm-up is the compiling "
        f"column. DM as above, {args.dm_iterations} iterations from one seed; the largest relative difference "
        "of its two loss histories is in the table. The utility ConvNet: the first seed of the utility protocol "
        "on the ipc-10 random release, trained one at a time, scored on the test split. Inductor's cache starts "
        "empty in this run (a temporary folder), so the compiling column is a first compile, except that the "
        "second data set may reuse kernels compiled for the first; later processes reuse inductor's cache on "
        "disk and pay less.",
    ]
    if not args.no_write:
        update_section("speed", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
