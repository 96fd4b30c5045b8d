"""Seconds per iteration of privbench's DM and GM beside the published reference code, on PneumoniaMNIST.

    git clone https://github.com/VICO-UoE/DatasetCondensation /tmp/reference
    git -C /tmp/reference checkout 306245d074cca5524694a8a83ca0797a6e85dfc8
    python benchmarks/reference_speed.py --reference /tmp/reference
    python benchmarks/reference_speed.py --reference /tmp/reference --dm-iterations 20 --gm-iterations 2 --no-write

The reference (Zhao & Bilen's ``main_DM.py`` for DM, ``main.py --method DC``
for GM, with their ``utils.py`` and ``networks.py``) is imported from
``--reference`` and its own ``main()`` runs unmodified, in a child process with
glibc's default allocator (as anyone would run it) and the same torch threads
as privbench; privbench's rows come from this process, with the allocator
settings its command line makes (:mod:`privbench.allocator`), and from the
child after the reference, with glibc's defaults. Only names in the two modules'
namespaces are replaced: ``get_dataset`` returns PneumoniaMNIST (train and
test, normalised by the training set's per-channel mean and std as the
reference's transforms do), ``evaluate_synset`` and ``save_image`` do
nothing, ``get_network`` is wrapped to record the time of each call, and
``sys.argv`` carries the settings; ``--data_path`` and ``--save_path`` point
into a temporary folder (the final ``torch.save`` lands there). DM's
``DiffAugment`` is wrapped to give its output the default strides, without
which the reference fails on 1-channel data under torch 2.x (see
:func:`default_strides`).

* reference: ``get_network`` is called once at the start of every training
  iteration, so an iteration's time is the gap between two calls; the mean of
  the gaps without the first (warm-up) is reported, over ``--dm-iterations``
  (``--gm-iterations``) gaps: ``--Iteration`` is one more, and the reference
  runs ``Iteration + 1`` iterations;
* privbench: ``run_distiller`` after a warm-up run; (time of a run of N + k
  iterations - time of a run of k) / N, which removes the per-run setup;
* ``--rounds`` (3): the two sides are measured in turn this many times, and
  the table gives each side's median and the median and range of the
  per-round speed-ups (on a shared 2-core machine one run of either side can
  differ from the next by a quarter).

Settings (both sides): ipc 10, ConvNet width 128, depth 3, instance norm.
DM: 256 real images per class, init real, lr_img 1, DSA
color_crop_cutout_flip_scale_rotate (main_DM.py's defaults). GM: DC without
DSA, init noise, lr_img 0.1, lr_net 0.01, batch_real and batch_train 256,
outer loop 10 and inner loop 50 (the reference's get_loops(10)).

Writes the ``reference`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, today, update_section  # noqa: E402

PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"
COMMIT = "306245d074cca5524694a8a83ca0797a6e85dfc8"
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reference_data(dataset):
    """A stand-in for the reference's ``get_dataset``: PneumoniaMNIST as its transforms would give it."""
    import torch

    from privbench.nets import channel_stats

    mean, std = (t.tolist() for t in channel_stats(dataset.train.images))

    class Items(torch.utils.data.Dataset):  # items: (C x H x W tensor normalised by mean/std, int label)
        def __init__(self, split):
            m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
            self.images, self.labels = (split.images - m) / s, split.labels.tolist()

        def __getitem__(self, i):
            return self.images[i], self.labels[i]

        def __len__(self):
            return len(self.labels)

    def get_dataset(name, data_path):
        dst_train, dst_test = Items(dataset.train), Items(dataset.test)
        testloader = torch.utils.data.DataLoader(dst_test, batch_size=256, shuffle=False, num_workers=0)
        return (dataset.channels, tuple(dataset.image_shape[1:]), dataset.num_classes, list(dataset.class_names),
                mean, std, dst_train, dst_test, testloader)

    return get_dataset


@contextlib.contextmanager
def patched(module, **names):
    """Replace names in ``module``'s namespace for the duration, then put the originals back."""
    saved = {name: getattr(module, name) for name in names}
    for name, value in names.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def default_strides(diff_augment):
    """``DiffAugment`` with its output in the default (NCHW) strides: the same numbers, a layout only.

    Under torch 2.x ``rand_crop`` of a single-channel batch returns channels-last strides that count as
    contiguous, so the reference's ``.contiguous()`` keeps them, the ConvNet's features come out
    channels-last and ``ConvNet.embed``'s ``.view`` fails; the reference cannot run on 1-channel data
    with DSA crop otherwise.
    """
    import torch

    def wrapped(*args, **kwargs):
        x = diff_augment(*args, **kwargs)
        return x if x.stride() == torch.empty(x.shape).stride() else x.clone(memory_format=torch.contiguous_format)

    return wrapped


def time_reference(module, options: list[str], timed: int, get_dataset, **extra) -> float:
    """Seconds per iteration of ``module.main()`` run with ``options`` for ``timed`` + 1 iterations."""
    calls, evaluations = [], []
    original = module.get_network

    def get_network(*args, **kwargs):
        _sync()
        calls.append(time.perf_counter())
        return original(*args, **kwargs)

    def evaluate_synset(*args, **kwargs):
        evaluations.append(1)
        return None, 0.0, 0.0

    with tempfile.TemporaryDirectory() as tmp:
        argv = [f"{module.__name__}.py", *options, "--Iteration", str(timed + 1), "--num_exp", "1", "--num_eval", "0",
                "--data_path", str(Path(tmp) / "data"), "--save_path", str(Path(tmp) / "result")]
        with patched(sys, argv=argv), patched(module, get_dataset=get_dataset, get_network=get_network,
                                               evaluate_synset=evaluate_synset, save_image=lambda *a, **k: None,
                                               **extra):
            module.main()
    # Iteration + 1 training iterations, one get_network each; none from evaluation.
    if len(calls) != timed + 2 or evaluations:
        raise RuntimeError(f"{module.__name__}: {len(calls)} get_network calls (expected {timed + 2}), "
                           f"{len(evaluations)} evaluations")
    gaps = [b - a for a, b in zip(calls, calls[1:])][1:]
    return sum(gaps) / len(gaps)


def time_privbench(method: str, dataset, overrides: dict, timed: int, k: int, warmup: dict, device: str) -> float:
    """Seconds per iteration of privbench's ``method``: (run of timed + k - run of k) / timed, after a warm-up."""
    from privbench.api import RunContext
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry

    registry = get_registry()
    run_distiller(registry, method, dataset, 10, {**overrides, **warmup}, RunContext(seed=0, device=device))
    spans = []
    for seed, iterations in ((1, k), (2, timed + k)):
        t0 = time.perf_counter()
        run_distiller(registry, method, dataset, 10, {**overrides, "iterations": iterations},
                      RunContext(seed=seed, device=device))
        spans.append(time.perf_counter() - t0)
    return (spans[1] - spans[0]) / timed


def measure(args, side: str) -> dict[str, float]:
    """Seconds per iteration for one side: ``reference`` (the reference, then privbench, both with glibc's
    default allocator) or ``privbench`` (as its command line runs: allocator tuned)."""
    import torch

    from privbench.data import load_dataset
    from privbench_builtins.distillers._gm import loops_for

    if str(args.reference.resolve()) not in sys.path:  # once, though each round measures again
        sys.path.insert(0, str(args.reference.resolve()))
    ref_dm, ref_gm = importlib.import_module("main_DM"), importlib.import_module("main")
    outer, inner = ref_gm.get_loops(10)
    if loops_for(10) != (outer, inner):
        raise RuntimeError(f"privbench's loops for ipc 10 {loops_for(10)} differ from the reference's {outer, inner}")
    dataset = load_dataset(f"npz:{PNEUMONIA}")
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the reference picks CUDA whenever there is one
    common = ["--dataset", "PneumoniaMNIST", "--model", "ConvNet", "--ipc", "10", "--batch_real", "256"]
    dm_options = [*common, "--init", "real", "--lr_img", "1.0", "--dsa_strategy", DSA_STRATEGY]
    gm_options = ["--method", "DC", *common, "--batch_train", "256", "--init", "noise", "--lr_img", "0.1",
                  "--lr_net", "0.01"]
    dm = {"batch_real": 256, "init": "real", "lr_img": 1.0, "dsa_strategy": DSA_STRATEGY}
    gm = {"batch_real": 256, "batch_train": 256, "init": "noise", "lr_img": 0.1, "lr_net": 0.01,
          "dsa_strategy": "none", "outer_loop": outer, "inner_loop": inner, "class_batching": "auto"}
    # The warm-up meets every kernel shape of a full iteration with fewer loops.
    gm_warmup = {"iterations": 1, "outer_loop": 2, "inner_loop": 1}
    n_dm, n_gm = args.dm_iterations, args.gm_iterations
    out = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    if side == "reference":
        out["ref DM"] = time_reference(ref_dm, dm_options, n_dm, reference_data(dataset),
                                       DiffAugment=default_strides(ref_dm.DiffAugment))
        out["ref GM"] = time_reference(ref_gm, gm_options, n_gm, reference_data(dataset))
        out["default DM"] = time_privbench("dm", dataset, dm, n_dm, 2, {"iterations": 2}, device)
        out["default GM"] = time_privbench("gm", dataset, gm, n_gm, 1, gm_warmup, device)
    else:
        out["DM"] = time_privbench("dm", dataset, dm, n_dm, 2, {"iterations": 2}, device)
        out["DM bf16"] = time_privbench("dm", dataset, {**dm, "real_precision": "bf16"}, n_dm, 2, {"iterations": 2},
                                        device)
        out["GM"] = time_privbench("gm", dataset, gm, n_gm, 1, gm_warmup, device)
    out["loops"] = [outer, inner]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="folder with the reference's main_DM.py, "
                        "main.py, utils.py and networks.py")
    parser.add_argument("--dm-iterations", type=int, default=20)
    parser.add_argument("--gm-iterations", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="reference and privbench measured in turn, this "
                        "many times; the table gives medians and the range of the speed-ups")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--side", choices=["reference"], help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.dm_iterations < 1 or args.gm_iterations < 1 or args.rounds < 1:
        parser.error("--dm-iterations, --gm-iterations and --rounds must be at least 1")
    if args.side:
        print(json.dumps(measure(args, args.side)), flush=True)
        return 0

    from privbench.allocator import ENV, tune_host_allocator

    if not tune_host_allocator():
        raise RuntimeError("the allocator could not be tuned here (not glibc, or the environment sets it)")
    theirs, ours = [], []
    for round_ in range(args.rounds):  # the two sides alternate, so a slow spell of the machine hits both
        # The reference runs as anyone would run it: a process of its own with glibc's default allocator.
        child = subprocess.run(
            [sys.executable, __file__, "--reference", str(args.reference), "--dm-iterations",
             str(args.dm_iterations), "--gm-iterations", str(args.gm_iterations), "--side", "reference"],
            env={**os.environ, ENV: "default"}, stdout=subprocess.PIPE, text=True, check=True,
        )
        theirs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"round {round_ + 1} reference side", theirs[-1], flush=True)
        ours.append(measure(args, "privbench"))
        print(f"round {round_ + 1} privbench side", ours[-1], flush=True)
        if ours[-1]["threads"] != theirs[-1]["threads"]:
            raise RuntimeError(f"thread counts differ: {theirs[-1]['threads']} against {ours[-1]['threads']}")
    write(args, theirs, ours)
    return 0


def write(args, theirs: list[dict], ours: list[dict]) -> None:
    """The ``reference`` section: per row, the median seconds of each side and the median and range of the
    per-round speed-ups."""
    from statistics import median

    n_dm, n_gm, rounds = args.dm_iterations, args.gm_iterations, len(ours)
    outer, inner = ours[0]["loops"]
    rows = [  # (label, reference's key, privbench's side, privbench's key)
        ("DM: ipc 10, 256 real images per class, DSA, init real", "ref DM", ours, "DM"),
        (f"GM (DC): ipc 10, outer {outer}, inner {inner}, no DSA, init noise", "ref GM", ours, "GM"),
        ("DM, privbench with glibc's default allocator (`PRIVBENCH_ALLOCATOR=default`)", "ref DM", theirs,
         "default DM"),
        ("GM, privbench with glibc's default allocator", "ref GM", theirs, "default GM"),
        ("DM, privbench `real_precision=\"bf16\"` (not the same arithmetic)", "ref DM", ours, "DM bf16"),
    ]
    lines = [
        "## Against the reference implementation: DM and GM seconds per iteration",
        "",
        f"Measured {today()} on {machine()}, torch {ours[0]['torch']}, {ours[0]['threads']} threads (both sides), "
        "nothing else running; PneumoniaMNIST (4708 training images, 2 classes, 28 px); "
        f"`python benchmarks/reference_speed.py --reference /tmp/reference --dm-iterations {n_dm} "
        f"--gm-iterations {n_gm} --rounds {rounds}`.",
        "",
        f"| setting | reference s/iteration, median of {rounds} | privbench s/iteration, median | speed-up, median "
        f"| speed-up, lowest and highest of {rounds} rounds |",
        "|---|---|---|---|---|",
    ]
    for label, ref_key, side, key in rows:
        r = [t[ref_key] for t in theirs]
        p = [o[key] for o in side]
        ratios = [a / b for a, b in zip(r, p)]
        lines.append(f"| {label} | {median(r):.3f} | {median(p):.3f} | {median(ratios):.2f}x "
                     f"| {min(ratios):.2f}x, {max(ratios):.2f}x |")
    lines += [
        "",
        "Reference: [VICO-UoE/DatasetCondensation](https://github.com/VICO-UoE/DatasetCondensation) at "
        f"`{COMMIT}`, `main_DM.py` (DM) and `main.py --method DC` (GM) run unmodified in a process of their own "
        "with glibc's default allocator settings, as anyone would run them; only "
        "data loading (`get_dataset`: PneumoniaMNIST normalised by its training mean and std), evaluation "
        "(`evaluate_synset`, and `--num_eval 0`) and saving (`save_image`; `torch.save` into a temporary "
        "folder) are replaced, and `get_network` is wrapped to time it. One more wrapper, a layout and not "
        "the arithmetic: DM's `DiffAugment` output is given the default NCHW strides when it has others (under "
        "torch 2.x the reference's crop of a 1-channel batch keeps channels-last strides through its "
        "`.contiguous()`, and `ConvNet.embed`'s `.view` then fails). Reference options: `--model ConvNet "
        "--ipc 10 --batch_real 256 --num_exp 1 --num_eval 0`; DM `--init real --lr_img 1.0 --dsa_strategy "
        f"{DSA_STRATEGY}`; GM `--method DC --init noise --lr_img 0.1 --lr_net 0.01 --batch_train 256` (loops "
        f"{outer} and {inner} from its `get_loops(10)`). privbench: the same settings, its defaults otherwise "
        "(`dm` with every class in one pass, `gm` with `class_batching=auto`: the per-class loop on a CPU, "
        "vmap on CUDA), in the parent process with the allocator settings its command line makes "
        "(`privbench.allocator`: glibc's mmap threshold at 32 MiB and trim threshold at 1 GiB); the rows "
        "with glibc's defaults ran in the reference's process, after it.",
        "",
        f"Reference time: the mean gap between consecutive `get_network` calls (one per iteration), the first "
        f"gap left out, over {n_dm} (DM) and {n_gm} (GM) iterations. privbench: (a run of N + k iterations "
        f"minus a run of k) / N after a warm-up run, N = {n_dm} and k = 2 for DM, N = {n_gm} and k = 1 for GM. "
        "Both sides draw a fresh random ConvNet every iteration and include building it. Each round measures "
        "the reference (and privbench with glibc's defaults) in its child process, then privbench; a speed-up "
        "is the ratio of one round's two timings.",
    ]
    if not args.no_write:
        update_section("reference", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
