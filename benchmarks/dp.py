"""Private releases of PneumoniaMNIST: dp-dm at epsilon 1, 10 and inf beside random and DM, each with its canary bound.

    python benchmarks/dp.py --out /tmp/dp            # about half an hour on a 2-core CPU; updates docs/benchmarks.md
    python benchmarks/dp.py --out /tmp/dp --no-write

Runs the ``dp`` suite (``registry/suites/dp.toml``) on the given file with ``privbench run``, as a user would,
then tabulates per release: the guaranteed epsilon and the noise multiplier that buys it, balanced accuracy on the
real test split with its CI and n, the canary audit's 95% lower bound on epsilon (score, right guesses, canaries),
and the wall time of each step. The suite's own results and report stay in OUT.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, today, update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pneumoniamnist.npz"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a MedMNIST-layout .npz (PneumoniaMNIST)")
    p.add_argument("--suite", default="dp", help="the suite to run (a registry name or a .toml path)")
    p.add_argument("--out", type=Path, required=True, help="the suite's output folder")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    return p.parse_args(argv)


def release_manifests(out: Path) -> dict[tuple, dict]:
    """(method, ipc, stated epsilon) -> the release.json of each distill job."""
    from privbench.accounting import stated_guarantee

    found = {}
    for path in sorted(out.glob("jobs/*/release.json")):
        manifest = json.loads(path.read_text())
        found[(manifest.get("method"), manifest.get("ipc"), stated_guarantee(manifest)[0])] = manifest
    return found


def tabulate(out: Path) -> tuple[list[dict], float]:
    from privbench.report.tables import Cell, epsilon_text, release_label
    from privbench.results import read_results, read_runs

    records = read_results(out / "results.parquet")
    runs = read_runs(out / "runs.parquet")
    manifests = release_manifests(out)
    rows = []
    labels = list(dict.fromkeys(release_label(r) for r in records))
    for label in labels:
        mine = [r for r in records if release_label(r) == label]
        pick = lambda measure, evaluator: next((Cell.of(r) for r in mine if r["measure"] == measure  # noqa: E731
                                                and r["evaluator"] == evaluator and r["subset"] == "all"),
                                               Cell(None, status="missing"))
        first = mine[0]
        seconds = {}
        for run in runs:
            if release_label(run) == label:
                seconds[run["task"] if run["task"] != "audit" else run["evaluator"]] = run["elapsed_s"] or 0.0
        manifest = manifests.get((first["release_method"], first["release_ipc"], first.get("release_epsilon")), {})
        privacy = manifest.get("privacy") or {}
        bound = pick("canary.epsilon_lower", "canary")
        rows.append({"release": label, "epsilon": epsilon_text(first.get("release_epsilon")),
                     "sigma": privacy.get("noise_multiplier"), "delta": privacy.get("delta"),
                     "balanced_accuracy": pick("balanced_accuracy", "convnet"), "bound": bound,
                     "seconds": seconds})
    total = sum(r["elapsed_s"] or 0.0 for r in runs)
    return rows, total


def markdown(rows: list[dict], args, wall: float, jobs_seconds: float) -> str:
    lines = [
        "## Private releases: dp-dm against its canary audit",
        "",
        f"`python benchmarks/dp.py --out OUT` on {today()}, {machine()}, nothing else running: the `dp` suite "
        f"(`registry/suites/dp.toml`) on `{args.data.name}` (4,708 private training images, 28 x 28), ipc 10. "
        "dp-dm: 200 iterations, q = 0.05, C = 1, lr_img 10, width 128, noise initialisation, delta 1 / (10 n), "
        "opacus's RDP accountant; DM: 200 iterations at its defaults otherwise. Utility: ConvNet, 3 seeds, 300 "
        "epochs (the protocol's 1,000 would take three times longer), balanced accuracy on the official test split "
        "(624 images) with a Student-t 95% CI over seeds (n = seeds). Canary audit: 500 mislabeled canaries from the "
        "val and test splits (no copy of a training image), each inserted with probability 1/2, one pipeline run, "
        "scores release distance and the target model's loss (ConvNet, 300 epochs on the release), the 95% "
        "confidence split over 2 scores x 4 guess fractions (release distance alone for the original training set, the "
        "audit's control: it copies every inserted canary); n = canaries.",
        "",
        "| release | ε guaranteed | σ (noise multiplier) | balanced accuracy % [95% CI] (n) | ε lower bound, 95% "
        "(best score: right / guesses) | distill s | utility s | canary s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        u, b = r["balanced_accuracy"], r["bound"]
        sigma = "–" if r["sigma"] is None else f"{r['sigma']:.3f}"
        bound = "–" if b.value is None else (f"{b.value:.3f} ({str(b.detail.get('score', '')).replace('_', ' ')}: "
                                              f"{b.detail.get('right')} / {b.detail.get('guesses')}; n = {b.n})")
        s = r["seconds"]
        lines.append(f"| {r['release']} | {r['epsilon']} | {sigma} | {u.text(percent=True)} ({u.n}) | {bound} | "
                     f"{s.get('distill', 0):.0f} | {s.get('utility', 0):.0f} | {s.get('canary', 0):.0f} |")
    lines += ["", f"The jobs took {jobs_seconds / 60:.1f} min in all (the suite's runs table; this command's own wall "
                  f"time, {wall / 60:.1f} min, counts only the jobs it did not find finished)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        print(f"no such file: {args.data}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "privbench", "run", args.suite, "--data", f"npz:{args.data}", "--out",
               str(args.out)]
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        return done.returncode
    wall = time.perf_counter() - t0
    rows, jobs_seconds = tabulate(args.out)
    text = markdown(rows, args, wall, jobs_seconds)
    print(text)
    (args.out / "dp.md").write_text(text + "\n")
    if not args.no_write:
        update_section("dp", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
