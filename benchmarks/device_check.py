"""Checks on a CUDA GPU that the CPU test suite cannot make, in one short run.

Runs every built-in plugin on digits with ``--device cuda`` through the real
command line (distill, audit with every attack, metrics), the quickstart
suite, DM once more on the CPU for comparison, and DM's batched step against
the per-class loop on the GPU (on digits, and on ``--data`` when given), and the
quickstart once more on a local Ray with two tasks per GPU (needs the ``ray`` extra),
and the ratios of ``speed.py`` and ``precision.py`` on the GPU (seeds and shadow
target models as one ensemble against one at a time, GM's vmap step against
its loop, DM's bf16 real pass against float32, DM and a utility ConvNet with
``compile`` against eager, and a distillation with every ``compile`` option on);
prints one JSON line per check and writes nothing outside OUT. Usage::

    python benchmarks/device_check.py --out /tmp/device-check [--data npz:PATH]

Exit code 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHECKS = [
    ("distill dm", ["distill", "--data", "digits", "--method", "dm", "--ipc", "10", "--set", "iterations=200",
                    "--eval-seeds", "2", "--eval-set", "epochs=100"]),
    ("distill gm", ["distill", "--data", "digits", "--method", "gm", "--ipc", "1", "--set", "iterations=20",
                    "--eval-seeds", "2", "--eval-set", "epochs=100"]),
    ("distill ddm", ["distill", "--data", "digits", "--method", "ddm", "--ipc", "10", "--set", "train_steps=500",
                     "--eval-seeds", "2", "--eval-set", "epochs=100"]),
    ("audit dm", ["audit", "--data", "digits", "--release", "{out}/distill-dm", "--set", "mia.shadows=4",
                  "--set", "mia.target_epochs=100", "--set", "aia.target_epochs=100"]),
    ("audit dm, method game", ["audit", "--data", "digits", "--release", "{out}/distill-dm", "--attack", "mia",
                               "--set", "mia.game=method", "--set", "mia.pipelines=4",
                               "--set", "mia.target_steps=100"]),
    ("metrics", ["metrics", "{out}/distill-dm", "{out}/distill-ddm"]),
    ("distill dm compiled", ["distill", "--data", "digits", "--method", "dm", "--ipc", "10", "--set",
                             "iterations=200", "--set", "compile=true", "--eval-seeds", "2", "--eval-set",
                             "epochs=100", "--eval-set", "compile=true"]),
    ("distill gm compiled", ["distill", "--data", "digits", "--method", "gm", "--ipc", "1", "--set", "iterations=20",
                             "--set", "compile=true", "--no-evaluate"]),
    ("run quickstart", ["run", "quickstart"]),
    ("run quickstart, ray", ["run", "quickstart", "--executor", "ray", "--gpus-per-task", "0.5"]),
]


def run(name: str, args: list[str], out: Path, device: str) -> dict:
    target = out / name.replace(" ", "-")
    argv = [a.format(out=out) for a in args]
    if argv[0] in ("distill", "audit"):
        argv += ["--out", str(target), "--force"]
    elif argv[0] == "run":
        argv += ["--out", str(target), "--fresh"]
    argv += ["--device", device, "-q"] if argv[0] != "metrics" else ["--device", device]
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "privbench", *argv], capture_output=True, text=True)
    return {"check": name, "device": device, "ok": proc.returncode == 0, "seconds": round(time.perf_counter() - started, 1),
            "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else ""}


def dm_step_ratio(spec: str, device: str, iterations: int) -> dict:
    """DM iterations per second, every class in one pass against the per-class loop, default DM settings."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from distill import LineProgress, dm_throughput

    from privbench.api import RunContext
    from privbench.data import load_dataset
    from privbench.engine import resolve_device
    from privbench.plugins import get_registry

    dataset = load_dataset(spec)
    ctx = RunContext(device=resolve_device(device), seed=0, progress=LineProgress())
    speed = dm_throughput(get_registry(), dataset, 10, {}, iterations, ctx)
    b, p = speed["batched"]["it_per_s"], speed["per_class"]["it_per_s"]
    return {"check": f"dm throughput {dataset.name} ({dataset.num_classes} classes)", "device": device, "ok": True,
            "batched_it_per_s": round(b, 2), "per_class_it_per_s": round(p, 2), "ratio": round(b / p, 2)}


def speed_figures(spec: str, device: str, epochs: int) -> dict:
    """The ratios of benchmarks/speed.py and benchmarks/precision.py, measured on ``device``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from precision import step_seconds
    from speed import time_compile, time_dm, time_gm, time_shadows, time_utility

    from privbench.data import load_dataset
    from privbench.engine import resolve_device

    device = resolve_device(device)
    dataset = load_dataset(spec)
    u = time_utility(dataset, 5, epochs, device)
    sh = time_shadows(dataset, 4, epochs, device)
    gm = time_gm(dataset, 2, device)
    dm = time_dm(dataset, 8, device)
    fp32, bf16 = (step_seconds(dataset, p, 8, device) for p in ("fp32", "bf16"))
    c = time_compile(dataset, 8, epochs, device)
    return {"check": f"speed {dataset.name}", "device": device, "ok": True, "epochs": epochs,
            "utility_5_seeds_s": {k: round(v, 2) for k, v in u.items()},
            "utility_ensemble_speedup": round(u["sequential"] / u["ensemble"], 2),
            "shadows_4_targets_s": {k: round(v, 2) for k, v in sh.items()},
            "shadows_ensemble_speedup": round(sh["sequential"] / sh["ensemble"], 2),
            "gm_s_per_iteration": {k: round(v, 3) for k, v in gm.items()},
            "gm_vmap_speedup": round(gm["loop"] / gm["vmap"], 2),
            "dm_s_per_iteration": {k: round(v, 4) for k, v in dm.items()},
            "dm_bf16_speedup": round(fp32 / bf16, 2),
            "dm_compile_speedup": round(c["dm False"] / c["dm True"], 2),
            "dm_compile_loss_difference": c["dm loss diff"],
            "train_compile_speedup": round(c["train False"] / c["train True"], 2),
            "train_compile_balanced_accuracy": [c[f"accuracy {f}"]["balanced_accuracy"] for f in (False, True)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", action="append", default=[], help="another dataset for the DM throughput check")
    parser.add_argument("--throughput-iterations", type=int, default=50)
    parser.add_argument("--speed-epochs", type=int, default=100, help="epochs per model of the ensemble timings")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run(name, argv, args.out, args.device) for name, argv in CHECKS]
    results.append(run("distill dm", CHECKS[0][1], args.out / "cpu", "cpu"))
    for spec in ["digits", *args.data]:
        results.append(dm_step_ratio(spec, args.device, args.throughput_iterations))
        results.append(speed_figures(spec, args.device, args.speed_epochs))
    for r in results:
        print(json.dumps(r))
    (args.out / "device_check.json").write_text(json.dumps(results, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
