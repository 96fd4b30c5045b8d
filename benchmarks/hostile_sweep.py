"""A hostile sweep: malformed and hostile inputs against every command, each checked against the promise.

The promise: exit code 2 with exactly one line on stderr (``privbench: error: ...``), no traceback,
nothing left behind, no input changed; or success where the input is in fact fine. Each case runs
in its own child process in a scratch folder::

    python benchmarks/hostile_sweep.py            # every case, a table, exit 1 if any broke the promise
    python benchmarks/hostile_sweep.py --only npz  # cases whose name contains "npz"
    python benchmarks/hostile_sweep.py --known     # the inputs of each class guarded by design (hostile_known.py)

It takes a few minutes on 2 cores (each case starts Python and torch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

FAST = ["--method", "random", "--ipc", "2", "--no-evaluate", "-q"]


@dataclass
class Case:
    name: str
    make: Callable[[Path], list[str]]  # builds its inputs in the scratch folder, returns the argv
    expect: int = 2
    env: dict[str, str] | Callable[[Path], dict[str, str]] | None = None


def npz(path: Path, n=(20, 6, 6), size=8, classes=2, **changes) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % classes).astype(np.int64)
    for key, value in changes.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


def release(root: Path, images=None, labels=None, manifest=None, provenance=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(1).random((4, 1, 16, 16), dtype=np.float32) if images is None else images
    labels = np.array([0, 1, 2, 3]) if labels is None else labels
    np.savez(root / "release.npz", images=images, labels=labels)
    (root / "release.json").write_text(json.dumps(manifest if manifest is not None else {"method": "random", "ipc": 1}))
    if provenance is not None:
        (root / "provenance.private.json").write_text(json.dumps(provenance))
    return root


def suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def png_folder(root: Path, classes=("a", "b"), per_class=4) -> Path:
    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def audit(rel: str, *extra: str) -> list[str]:
    return ["audit", "--data", "digits", "--release", rel, "--out", "aud", "--attack", "aia",
            "--set", "aia.target_steps=2", "-q", *extra]


def cases() -> list[Case]:
    d = "digits"
    c: list[Case] = [
        Case("spec: npz with no path", lambda w: ["distill", "--data", "npz:", "--out", "o", *FAST]),
        Case("spec: folder that does not exist", lambda w: ["distill", "--data", f"folder:{w}/none", "--out", "o", *FAST]),
        Case("spec: size not a number", lambda w: ["distill", "--data", "digits?size=abc", "--out", "o", *FAST]),
        Case("spec: size 3", lambda w: ["distill", "--data", "digits?size=3", "--out", "o", *FAST]),
        Case("spec: channels 2", lambda w: ["distill", "--data", "digits?channels=2", "--out", "o", *FAST]),
        Case("spec: unknown option", lambda w: ["distill", "--data", "digits?colour=1", "--out", "o", *FAST]),
        Case("spec: empty string", lambda w: ["distill", "--data", "", "--out", "o", *FAST]),
        Case("spec: val_fraction 1.5", lambda w: ["distill", "--data", f"folder:{png_folder(w / 'f')}?val_fraction=1.5",
                                                  "--out", "o", *FAST]),
        Case("distill: ipc negative", lambda w: ["distill", "--data", d, "--method", "random", "--ipc", "-5",
                                                 "--out", "o", "--no-evaluate"]),
        Case("distill: option of the wrong type", lambda w: ["distill", "--data", d, "--method", "dm", "--ipc", "1",
                                                             "--set", "iterations=abc", "--out", "o", "--no-evaluate"]),
        Case("distill: negative iterations", lambda w: ["distill", "--data", d, "--method", "dm", "--ipc", "1",
                                                        "--set", "iterations=-1", "--out", "o", "--no-evaluate"]),
        Case("distill: --set without a key", lambda w: ["distill", "--data", d, "--out", "o", "--set", "=5", *FAST]),
        Case("distill: --set without =", lambda w: ["distill", "--data", d, "--out", "o", "--set", "nokey", *FAST]),
        Case("distill: eval seeds 0", lambda w: ["distill", "--data", d, "--method", "random", "--ipc", "1",
                                                 "--eval-seeds", "0", "--out", "o"]),
        Case("distill: unknown eval model", lambda w: ["distill", "--data", d, "--method", "random", "--ipc", "1",
                                                       "--eval-model", "vgg", "--out", "o"]),
        Case("distill: eval epochs 0", lambda w: ["distill", "--data", d, "--method", "random", "--ipc", "1",
                                                  "--eval-set", "epochs=0", "--out", "o"]),
        Case("distill: cuda without a GPU", lambda w: ["distill", "--data", d, "--device", "cuda", "--out", "o", *FAST]),
        Case("distill: seed not a number", lambda w: ["distill", "--data", d, "--seed", "abc", "--out", "o", *FAST]),
        Case("distill: out is an existing file", lambda w: (w / "file").write_text("x") and
             ["distill", "--data", d, "--out", "file", "--force", *FAST]),
        Case("distill: out inside an npz input's folder is fine",
             lambda w: ["distill", "--data", f"npz:{npz(w / 'x.npz')}", "--out", "o", *FAST], expect=0),
        Case("npz: negative labels", lambda w: ["distill", "--data", f"npz:{npz(w / 'x.npz', train_labels=-np.ones(20, int))}",
                                                "--out", "o", *FAST]),
        Case("npz: float images above 1", lambda w: ["distill", "--data", f"npz:{npz(w / 'x.npz', train_images=np.full((20, 8, 8), 2.0))}",
                                                     "--out", "o", *FAST]),
        Case("npz: labels shorter than images", lambda w: ["distill", "--data",
                                                           f"npz:{npz(w / 'x.npz', train_labels=np.zeros(3, int))}",
                                                           "--out", "o", *FAST]),
        Case("npz: object array (pickle)", lambda w: ["distill", "--data",
                                                      f"npz:{_pickled(w / 'x.npz')}", "--out", "o", *FAST]),
        Case("npz: a zip that is not npz", lambda w: ["distill", "--data", f"npz:{_plain_zip(w / 'x.npz')}", "--out", "o", *FAST]),
        Case("npz: a directory named .npz", lambda w: (w / "d.npz").mkdir() or
             ["distill", "--data", f"npz:{w / 'd.npz'}", "--out", "o", *FAST]),
        Case("folder: one class", lambda w: ["distill", "--data", f"folder:{png_folder(w / 'f', classes=('a',))}",
                                             "--out", "o", *FAST]),
        Case("folder: a text file named .png", lambda w: (png_folder(w / "f") / "a" / "bad.png").write_text("no") and
             ["distill", "--data", f"folder:{w / 'f'}", "--out", "o", *FAST]),
        Case("audit: release that does not exist", lambda w: audit(str(w / "none"))),
        Case("audit: release that is a file", lambda w: (w / "r").write_text("x") and audit("r")),
        Case("audit: release.json is a list", lambda w: release(w / "r", manifest=[1, 2]) and audit("r")),
        Case("audit: release.json empty", lambda w: release(w / "r") and (w / "r" / "release.json").write_text("") == 0 and audit("r")),
        Case("audit: labels beyond the classes", lambda w: release(w / "r", labels=np.array([0, 1, 2, 99])) and audit("r")),
        Case("audit: images of another size", lambda w: release(w / "r", images=np.zeros((4, 1, 9, 9), np.float32)) and audit("r")),
        Case("audit: NaN images", lambda w: release(w / "r", images=np.full((4, 1, 16, 16), np.nan, np.float32)) and audit("r")),
        Case("audit: method with a path in it", lambda w: release(w / "r", manifest={"method": "../../etc/passwd", "ipc": 1})
             and audit("r"), expect=0),
        Case("audit: provenance index out of range", lambda w: release(w / "r", provenance={"init_indices": [10 ** 9]}) and audit("r")),
        Case("audit: provenance indices are strings", lambda w: release(w / "r", provenance={"init_indices": ["a"]}) and audit("r")),
        Case("audit: release.npz truncated", lambda w: release(w / "r") and _truncate(w / "r" / "release.npz") and audit("r")),
        Case("audit: unknown metric", lambda w: ["audit", "--data", d, "--release", "original", "--metric", "nope", "--out", "a"]),
        Case("audit: option for an attack not run", lambda w: ["audit", "--data", d, "--release", "original", "--attack", "aia",
                                                               "--set", "mia.pipelines=2", "--out", "a"]),
        Case("audit: mia with one pipeline", lambda w: ["audit", "--data", d, "--release", "original", "--attack", "mia",
                                                        "--set", "mia.pipelines=1", "--set", "mia.game=method", "--out", "a"]),
        Case("metrics: missing reference", lambda w: ["metrics", "nope.npz", "nope2.npz"]),
        Case("metrics: counts differ", lambda w: _two_npz(w, 3, 4) and ["metrics", "a.npz", "b.npz", "--metric", "psnr"]),
        Case("metrics: negative resamples", lambda w: _two_npz(w, 3, 3) and ["metrics", "a.npz", "b.npz", "--resamples", "-1"]),
        Case("metrics: out is a folder", lambda w: _two_npz(w, 3, 3) and (w / "dir").mkdir() is None and
             ["metrics", "a.npz", "b.npz", "--metric", "psnr", "--out", "dir"]),
        Case("report: file that does not exist", lambda w: ["report", "none.parquet"]),
        Case("report: a folder", lambda w: (w / "dir").mkdir() or ["report", "dir"]),
        Case("report: an empty file", lambda w: (w / "r.parquet").write_bytes(b"") == 0 and ["report", "r.parquet", "--out", "rep"]),
        Case("run: unknown suite", lambda w: ["run", "no-such-suite"]),
        Case("run: suite with an unknown key", lambda w: ["run", str(suite(w / "s.toml", 'name="s"\ndatasets=["digits"]\nextra=1\n'
                                                                              '[[releases]]\nmethod="original"\n')), "--out", "o"]),
        Case("run: suite with no datasets", lambda w: ["run", str(suite(w / "s.toml", 'name="s"\ndatasets=[]\n[[releases]]\n'
                                                                             'method="original"\n')), "--out", "o"]),
        Case("run: suite with an unknown method", lambda w: ["run", str(suite(w / "s.toml", 'name="s"\ndatasets=["digits"]\n'
                                                                                    '[[releases]]\nmethod="magic"\n')), "--out", "o"]),
        Case("run: suite with an unknown attack", lambda w: ["run", str(suite(w / "s.toml", 'name="s"\ndatasets=["digits"]\n'
                                                                                    '[[releases]]\nmethod="original"\n[audit]\n'
                                                                                    'attacks=["nope"]\n')), "--out", "o"]),
        Case("run: TOML syntax error", lambda w: ["run", str(suite(w / "s.toml", 'name = "s\n')), "--out", "o"]),
        Case("run: --data file missing", lambda w: ["run", "--data", f"npz:{w}/missing.npz", "--out", "o"]),
        Case("run: suite path is a folder", lambda w: (w / "s.toml").mkdir() or ["run", str(w / "s.toml")]),
        Case("plugins: unknown kind", lambda w: ["plugins", "--kind", "nope"]),
        Case("datasets: unknown card for layout", lambda w: ["datasets", "--layout", "nope"]),
        # Round two: outputs, caches, limits and odd names.
        Case("cache dir inside a folder dataset", lambda w: ["distill", "--data", f"folder:{png_folder(w / 'f')}",
                                                             "--cache-dir", str(w / "f" / "cache"), "--out", "o", *FAST]),
        Case("cache dir is a file", lambda w: (w / "c").write_text("x") and
             ["distill", "--data", "digits", "--cache-dir", "c", "--out", "o", *FAST]),
        Case("limit env var is garbage", lambda w: ["distill", "--data", f"npz:{npz(w / 'x.npz')}", "--out", "o", *FAST],
             env={"PRIVBENCH_MAX_BYTES": "lots"}),
        Case("utility ConvNet of width 10**6", lambda w: ["distill", "--data", "digits", "--method", "random", "--ipc", "1",
                                                          "--eval-set", "width=1000000", "--eval-seeds", "1", "--out", "o"]),
        Case("release.npz is a link to /dev/zero", lambda w: release(w / "r") and _link(w / "r" / "release.npz", "/dev/zero")
             and audit("r")),
        Case("release.json with NaN", lambda w: release(w / "r") and
             (w / "r" / "release.json").write_text('{"method": "random", "ipc": 1, "config": {"x": NaN}}') and audit("r")),
        Case("release.json nested 100000 deep", lambda w: release(w / "r") and
             (w / "r" / "release.json").write_text('{"method": "random", "config": ' + "[" * 100000 + "]" * 100000 + "}")
             and audit("r")),
        Case("release with two channels", lambda w: release(w / "r", images=np.zeros((4, 2, 16, 16), np.float32)) and audit("r")),
        Case("release with float labels", lambda w: release(w / "r", labels=np.array([0.5, 1, 2, 3])) and audit("r")),
        Case("release with no images", lambda w: release(w / "r", images=np.zeros((0, 1, 16, 16), np.float32),
                                                         labels=np.zeros(0, int)) and audit("r")),
        Case("release.json without a method", lambda w: release(w / "r", manifest={"ipc": 1}) and audit("r")),
        Case("provenance is a JSON string", lambda w: release(w / "r", provenance="x") and audit("r")),
        Case("spec: duplicate option", lambda w: ["distill", "--data", "digits?size=8&size=12", "--out", "o", *FAST], expect=0),
        Case("spec: medmnist path traversal", lambda w: ["distill", "--data", "medmnist:../../etc/passwd", "--out", "o", *FAST]),
        Case("spec: card name with a slash", lambda w: ["distill", "--data", "../digits", "--out", "o", *FAST]),
        Case("npz: every label one class", lambda w: ["distill", "--data", f"npz:{npz(w / 'x.npz', classes=1)}", "--out", "o",
                                                      *FAST]),
        Case("folder: images of mixed sizes", lambda w: _mixed_sizes(w / "f") and
             ["distill", "--data", f"folder:{w / 'f'}?size=8", "--out", "o", *FAST], expect=0),
        Case("metrics: reference is the candidate", lambda w: _two_npz(w, 3, 3) and
             ["metrics", "a.npz", "a.npz", "--metric", "psnr", "--resamples", "10"], expect=0),
        Case("metrics: empty image folders", lambda w: (w / "e1").mkdir() or (w / "e2").mkdir() or ["metrics", "e1", "e2"]),
        Case("report: --runs is a text file", lambda w: _results(w) and (w / "runs.txt").write_text("x") and
             ["report", "a/results.parquet", "--runs", "runs.txt", "--out", "rep"]),
        Case("report: --out is a file", lambda w: _results(w) and (w / "f").write_text("x") and
             ["report", "a/results.parquet", "--out", "f"]),
        Case("run: --out holds the suite file", lambda w: (w / "o").mkdir() or
             ["run", str(suite(w / "o" / "s.toml", 'name="s"\ndatasets=["digits"]\n[[releases]]\nmethod="original"\n')),
              "--out", "o", "--no-report"]),
        Case("run: --fresh on a folder with the user's jobs/", lambda w: _user_jobs(w / "o") and
             ["run", str(suite(w / "s.toml", 'name="s"\ndatasets=["digits"]\n[[releases]]\nmethod="original"\n')),
              "--out", "o", "--fresh"]),
        Case("run: ipc 0 in a suite", lambda w: ["run", str(suite(w / "s.toml", 'name="s"\ndatasets=["digits"]\n[[releases]]\n'
                                                                        'method="random"\nipc=[0]\n')), "--out", "o"]),
        Case("run: unknown utility model", lambda w: ["run", str(suite(w / "s.toml", 'name="s"\ndatasets=["digits"]\n'
                                                                             '[[releases]]\nmethod="original"\n[utility]\n'
                                                                             'models=["vgg"]\n')), "--out", "o"]),
        Case("run: seeds of infinity", lambda w: ["run", str(suite(w / "s.toml", 'name="s"\ndatasets=["digits"]\nseeds=[inf]\n'
                                                                         '[[releases]]\nmethod="original"\n')), "--out", "o"]),
        Case("out: a link to the input folder", lambda w: _link(w / "o", str(png_folder(w / "f"))) and
             ["distill", "--data", f"folder:{w / 'f'}", "--out", "o", "--force", *FAST]),
        Case("out: the current folder", lambda w: ["distill", "--data", "digits", "--out", ".", "--force", *FAST]),
        Case("out: a name that is not UTF-8", lambda w: ["distill", "--data", "digits", "--out", os.fsdecode(b"o\xff"), *FAST],
             expect=0),
        Case("out: a name with a newline", lambda w: ["distill", "--data", "digits", "--out", "o\nx", *FAST], expect=0),
        Case("set: a fraction for an int option", lambda w: ["distill", "--data", "digits", "--method", "dm", "--ipc", "1",
                                                        "--set", "iterations=2.5", "--out", "o", "--no-evaluate"]),
        Case("set: empty channel list for ddm", lambda w: ["distill", "--data", "digits", "--method", "ddm", "--ipc", "1",
                                                           "--set", "unet_channels=[]", "--out", "o", "--no-evaluate"]),
        Case("set: an iteration count beyond 64 bits", lambda w: [
            "distill", "--data", "digits", "--method", "dm", "--ipc", "1", "--set", "iterations=99999999999999999999999",
            "--out", "o", "--no-evaluate"]),
        Case("audit: attack option of the wrong type", lambda w: ["audit", "--data", "digits", "--release", "original",
                                                                  "--attack", "aia", "--set", "aia.target_steps=many",
                                                                  "--out", "a"]),
    ]
    return c


def _link(path: Path, target: str) -> bool:
    path.unlink(missing_ok=True)
    path.symlink_to(target)
    return True


def _mixed_sizes(root: Path) -> bool:
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i, side in enumerate((6, 9, 13, 20)):
            Image.fromarray(np.full((side, side + 1), 30 * i, np.uint8)).save(root / c / f"{i}.png")
    return True


def _results(work: Path) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from privbench.results import RESULTS_SCHEMA

    (work / "a").mkdir()
    pq.write_table(pa.Table.from_pylist([], schema=RESULTS_SCHEMA), work / "a" / "results.parquet")
    return True


def _user_jobs(out: Path) -> bool:
    (out / "jobs" / "mine").mkdir(parents=True)
    (out / "jobs" / "mine" / "notes.txt").write_text("the user's")
    return True


def _pickled(path: Path) -> Path:
    arrays = dict(np.load(npz(path)))
    arrays["train_images"] = np.array([object()] * 20, dtype=object)
    np.savez(path, **arrays)
    return path


def _plain_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not an array")
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _two_npz(work: Path, a: int, b: int) -> bool:
    np.savez(work / "a.npz", images=np.zeros((a, 8, 8), np.uint8))
    np.savez(work / "b.npz", images=np.full((b, 8, 8), 7, np.uint8))
    return True


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel.startswith("cache") or rel.startswith("home"):
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def run_case(case: Case, scratch: Path) -> tuple[bool, str]:
    work = Path(tempfile.mkdtemp(dir=scratch))
    argv = case.make(work)
    extra = case.env(work) if callable(case.env) else case.env or {}
    before = snapshot(work)
    env = {**os.environ, "PRIVBENCH_CACHE_DIR": str(work / "cache"), "HOME": str(work / "home"),
           "OMP_NUM_THREADS": "1", **extra}
    proc = subprocess.run([sys.executable, "-m", "privbench", *map(str, argv)], cwd=work, capture_output=True, errors="backslashreplace",
                          text=True, env=env, timeout=300)
    after = snapshot(work)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    problems = []
    if proc.returncode != case.expect:
        problems.append(f"exit {proc.returncode}, expected {case.expect}")
    if "Traceback" in proc.stderr:
        problems.append("traceback")
    if proc.returncode == 2 and (len(lines) != 1 or not lines[0].startswith("privbench: error:")):
        problems.append(f"{len(lines)} stderr lines")
    changed = [k for k in before if after.get(k) != before[k]]
    if changed:
        problems.append(f"input changed: {changed[:2]}")
    if proc.returncode != 0:
        new = sorted(set(after) - set(before))
        if new:
            problems.append(f"left behind: {new[:3]}")
    said = lines[-1] if lines else ""
    return not problems, "; ".join(problems) or said


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--known", action="store_true", help="run the cases of hostile_known.py instead")
    args = parser.parse_args()
    if args.known:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from hostile_known import known_cases

        chosen = [c for c in known_cases() if args.only in c.name]
    else:
        chosen = [c for c in cases() if args.only in c.name]
    broken = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for case in chosen:
            ok, said = run_case(case, Path(scratch))
            broken += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {case.name}: {said[:150]}", flush=True)
    print(f"{len(chosen)} cases, {len(chosen) - broken} kept the promise, {broken} did not "
          f"({time.perf_counter() - started:.0f} s)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
