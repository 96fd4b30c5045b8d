"""Peak resident memory of DM on a large synthetic folder, streamed and in memory.

    python benchmarks/memory.py                          # 20,000 images, 224 x 224, grayscale
    python benchmarks/memory.py --images 2000 --no-write

Writes a folder of ``--images`` PNG files in two classes (smooth random
fields, a class-dependent brightness) under ``--dir``, then runs
``privbench distill --method dm --no-evaluate`` on it as a separate process
three times, sampling the process's resident memory (VmRSS) every 0.1 s:

1. ``stream=on``, first load: the folder decoded into the cache a chunk at a time;
2. ``stream=on`` again: DM reads real batches from the cached store;
3. ``stream=off``: the same DM with every split in memory as one float32 tensor.

The DM network is small (width 32, depth 4, ``batch_real`` 32 per class) so
that the figures measure the data, not the activations: a ConvNet of width
128 on 224-pixel images needs gigabytes of activations on its own. Writes
the ``memory`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, today, update_section  # noqa: E402


def write_folder(root: Path, images: int, side: int, seed: int = 0) -> float:
    """``images`` PNGs in ``root/class0`` and ``root/class1`` (skipped when already there); seconds taken."""
    import numpy as np
    from PIL import Image

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    for i in range(images):
        c = i % 2
        path = root / f"class{c}" / f"{i:06d}.png"
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        coarse = rng.normal(100 + 50 * c, 35, size=(side // 16, side // 16)).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(coarse, mode="L").resize((side, side), Image.Resampling.BICUBIC)
        img.save(path, compress_level=1)
    return time.perf_counter() - t0


def peak_rss(cmd: list[str], env: dict) -> tuple[int, float, int, str]:
    """Run ``cmd``; its peak VmRSS in bytes (sampled every 0.1 s), wall seconds, exit code and stderr's tail."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except OSError:
                break
            time.sleep(0.1)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    watcher.join()
    return peak[0], time.perf_counter() - t0, proc.returncode, err.strip()[-300:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "privbench-memory")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    folder = args.dir / f"folder-{args.images}-{args.side}"
    made = write_folder(folder, args.images, args.side)
    print(f"folder ready in {made:.0f} s: {folder}", flush=True)
    env = {**os.environ, "PRIVBENCH_CACHE_DIR": str(args.dir / "cache")}
    dm = ["--method", "dm", "--ipc", "10", "--no-evaluate", "-q", "--set", f"iterations={args.iterations}",
          "--set", "width=32", "--set", "depth=4", "--set", "batch_real=32"]
    runs = []
    for label, stream in (("stream=on, first load (decodes into the cache)", "on"),
                          ("stream=on, from the cache", "on"), ("stream=off (in memory)", "off")):
        out = args.dir / f"out-{len(runs)}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        spec = f"folder:{folder}?size={args.side}&channels=1&stream={stream}"
        cmd = [sys.executable, "-m", "privbench", "distill", "--data", spec, *dm, "--out", str(out)]
        rss, wall, code, err = peak_rss(cmd, env)
        runs.append((label, rss, wall, code, err))
        print(label, f"{rss / 2**30:.2f} GiB", f"{wall:.0f} s", code, err, flush=True)
    floats = args.images * args.side * args.side * 4
    lines = [
        "## Memory: DM on a folder larger than the 2 GiB budget, streamed and in memory",
        "",
        f"Measured {today()} on {machine()}, 24 GiB of memory, nothing else running (`python benchmarks/memory.py "
        f"--images {args.images} --side {args.side} --iterations {args.iterations}`). The folder: {args.images:,} "
        f"grayscale PNGs of {args.side} x {args.side} in two classes; as float32, its images take "
        f"{floats / 2**30:.1f} GiB. Each run is `privbench distill --method dm --ipc 10 --no-evaluate` with "
        f"{args.iterations} iterations, width 32, depth 4, 32 real images per class per iteration, in a process "
        "of its own; the peak is its resident memory (VmRSS and VmHWM) sampled every 0.1 s.",
        "",
        "| run | peak resident memory | wall time | exit |",
        "|---|---|---|---|",
    ]
    for label, rss, wall, code, _ in runs:
        lines.append(f"| {label} | {rss / 2**30:.2f} GiB | {wall:.0f} s | {code} |")
    lines += [
        "",
        "Streamed, the images stay in the decoded cache on disk and each batch is read with `pread` as DM "
        "draws it, so the process holds the batch, the network and the release; the kernel's page cache "
        "holds what was read recently, outside the process. In memory, every split is one float32 tensor. "
        "The command line keeps up to 1 GiB of freed heap for reuse (`privbench.allocator`); blocks over 32 MiB, "
        "such as these feature maps, still go back to the kernel when freed.",
    ]
    if not args.no_write:
        update_section("memory", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
