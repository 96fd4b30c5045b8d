"""bf16 autocast against float32: DM's real-image pass, GM's iteration, the utility score's training.

    python benchmarks/precision.py                       # PneumoniaMNIST when its file is there, else digits
    python benchmarks/precision.py --iterations 50 --epochs 50 --no-write

For each precision (``real_precision=fp32`` and ``bf16``) in one process on
one machine: the seconds per DM iteration at ipc 10 (256 real images per
class, DSA, after a warm-up run), then a release of ``--iterations``
iterations from the same seed, its final loss (the mean of the last tenth of
the loss history) and the balanced accuracy of ``--seeds`` ConvNets trained
on it for ``--epochs`` epochs (Student-t 95% CI over seeds, the official test
split). Writes the ``precision`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, today, update_section  # noqa: E402

PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


def step_seconds(dataset, precision: str, iterations: int, device: str = "cpu") -> float:
    """Seconds per DM iteration at ipc 10 with ``real_precision=precision``, after a warm-up run."""
    from privbench.api import RunContext
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry

    registry = get_registry()
    timing = {"iterations": iterations, "real_precision": precision}
    run_distiller(registry, "dm", dataset, 10, {**timing, "iterations": 2}, RunContext(seed=0, device=device))
    t0 = time.perf_counter()
    run_distiller(registry, "dm", dataset, 10, timing, RunContext(seed=1, device=device))
    return (time.perf_counter() - t0) / iterations


def gm_seconds(dataset, precision: str, device: str = "cpu") -> float:
    """Seconds of one GM iteration at ipc 10 (outer 10, inner 50, no DSA): a run of 2 minus a run of 1."""
    from privbench.api import RunContext
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry

    registry = get_registry()
    base = {"precision": precision}
    run_distiller(registry, "gm", dataset, 10, {**base, "iterations": 1, "outer_loop": 2, "inner_loop": 1},
                  RunContext(seed=0, device=device))  # warm-up
    times = []
    for iterations in (1, 2):
        t0 = time.perf_counter()
        run_distiller(registry, "gm", dataset, 10, {**base, "iterations": iterations}, RunContext(seed=1, device=device))
        times.append(time.perf_counter() - t0)
    return times[1] - times[0]


def utility_training(dataset, release, precision: str, seeds: int, epochs: int) -> dict:
    """Seconds and balanced accuracy of the utility score with its classifiers trained at ``precision``."""
    from privbench.api import RunContext
    from privbench.utility import UtilityConfig, evaluate_release

    t0 = time.perf_counter()
    [(_, rows)] = evaluate_release(release, dataset, models=["convnet"], seeds=seeds,
                                   config=UtilityConfig(epochs=epochs, precision=precision), ctx=RunContext(seed=0))
    bal = next(r for r in rows if r.measure == "balanced_accuracy")
    return {"seconds": time.perf_counter() - t0, "bal": bal.value, "low": bal.ci_low, "high": bal.ci_high}


def measure(dataset, precision: str, timing_iterations: int, iterations: int, seeds: int, epochs: int) -> dict:
    from privbench.api import RunContext
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry
    from privbench.utility import UtilityConfig, evaluate_release

    registry = get_registry()
    step = step_seconds(dataset, precision, timing_iterations)
    release = run_distiller(registry, "dm", dataset, 10, {"iterations": iterations, "real_precision": precision},
                            RunContext(seed=2))
    history = release.provenance["loss_history"]
    tail = history[-max(1, len(history) // 10):]
    [(_, rows)] = evaluate_release(release, dataset, models=["convnet"], seeds=seeds,
                                   config=UtilityConfig(epochs=epochs), ctx=RunContext(seed=0))
    bal = next(r for r in rows if r.measure == "balanced_accuracy")
    return {"step": step, "loss": sum(tail) / len(tail), "bal": bal.value, "low": bal.ci_low, "high": bal.ci_high,
            "n": bal.n, "images": release.images, "release": release}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing-iterations", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from privbench.allocator import tune_host_allocator
    from privbench.data import load_dataset

    tune_host_allocator()  # as the command line runs
    spec = f"npz:{PNEUMONIA}" if PNEUMONIA.is_file() else "digits"
    dataset = load_dataset(spec)
    out = {}
    for precision in ("fp32", "bf16"):
        out[precision] = measure(dataset, precision, args.timing_iterations, args.iterations, args.seeds, args.epochs)
        print(precision, {k: v for k, v in out[precision].items() if k not in ("images", "release")}, flush=True)
    rms = float((out["fp32"]["images"] - out["bf16"]["images"]).pow(2).mean().sqrt())
    release = out["fp32"]["release"]
    gm = {p: gm_seconds(dataset, p) for p in ("fp32", "bf16")}
    print("gm", gm, flush=True)
    training = {p: utility_training(dataset, release, p, args.seeds, args.epochs) for p in ("fp32", "bf16")}
    print("utility training", training, flush=True)
    lines = [
        "## Precision: bf16 autocast against float32 (DM, GM, the utility's training)",
        "",
        f"Measured {today()} on {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, nothing "
        f"else running (`python benchmarks/precision.py --timing-iterations {args.timing_iterations} --iterations "
        f"{args.iterations} --seeds {args.seeds} --epochs {args.epochs}`), on {dataset.name}: DM at ipc 10, 256 "
        "real images per class, DSA on; the synthetic side and the loss stay float32.",
        "",
        f"| real_precision | s / iteration | final loss (last tenth of {args.iterations} iterations) "
        f"| balanced accuracy % [95% CI], n = {args.seeds} |",
        "|---|---|---|---|",
    ]
    for precision, r in out.items():
        lines.append(f"| {precision} | {r['step']:.3f} | {r['loss']:.4f} | {100 * r['bal']:.1f} "
                     f"[{100 * r['low']:.1f}, {100 * r['high']:.1f}] |")
    lines += [
        "",
        f"Under bf16 an iteration runs {out['fp32']['step'] / out['bf16']['step']:.2f}x as fast as in float32. "
        "The two releases, "
        f"made from one seed, differ by an RMS of {rms:.4f} per pixel (pixels in [0, 1]). Utility: ConvNet width "
        f"128, {args.epochs} epochs per seed, the rest of the utility protocol.",
        "",
        "GM (`precision`: its inner loop's training and the real images' gradients; ipc 10, outer loop 10, "
        "inner loop 50, no DSA), seconds per iteration (a run of 2 iterations minus a run of 1, after a "
        f"warm-up): fp32 {gm['fp32']:.1f} s, bf16 {gm['bf16']:.1f} s, {gm['fp32'] / gm['bf16']:.2f}x. Its effect "
        "on GM's release has not been measured.",
        "",
        f"The utility score's own training (`--eval-set precision=bf16`), on the fp32 DM release above, "
        f"{args.seeds} ConvNets x {args.epochs} epochs:",
        "",
        "| training precision | seconds | balanced accuracy % [95% CI] |",
        "|---|---|---|",
    ]
    for precision, r in training.items():
        lines.append(f"| {precision} | {r['seconds']:.1f} | {100 * r['bal']:.1f} [{100 * r['low']:.1f}, "
                     f"{100 * r['high']:.1f}] |")
    lines += [
        "",
        "Every bf16 option is off by default: the published protocols are float32.",
    ]
    if not args.no_write:
        update_section("precision", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
