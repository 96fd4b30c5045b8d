"""Audit original, random and DM releases of PneumoniaMNIST in both membership games: the paper's Table 2, with
its controls.

    python benchmarks/audit.py --out /tmp/audit          # about an hour on a 2-core CPU; updates docs/benchmarks.md
    python benchmarks/audit.py --pipelines 4 --shadows 4 --no-write --out /tmp/quick

Every release is attacked with ``mia`` in the ``release`` game (shadow pipelines drawn like the target, a null
pipeline) and in the ``method`` game (pipelines on random halves of the pooled data, each in turn the target), with
``autoencoder`` (reconstruction of members against non-members, near-copies) and ``aia`` (the diagnosis label from a
centre-masked X-ray: members against controls). Every target model, whatever the release, takes the same number of
optimiser steps, so rows compare like with like. ``OUT/results.parquet`` and ``OUT/runs.parquet`` hold every row and
every setting of the games.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, today, update_section  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pneumoniamnist.npz"
VARIANTS = ("loss", "lira_offline", "lira_online", "rmia", "release_distance")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a MedMNIST-layout .npz (PneumoniaMNIST)")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--dm-iterations", type=int, default=200, help="DM iterations (the paper: 20000)")
    p.add_argument("--dm-batch-real", type=int, default=64, help="real images per class per DM iteration (256)")
    p.add_argument("--shadows", type=int, default=8, help="release game: shadow pipelines per release")
    p.add_argument("--pipelines", type=int, default=8, help="method game: pipelines per release")
    p.add_argument("--target-steps", type=int, default=200, help="optimiser steps of every target model")
    p.add_argument("--target-width", type=int, default=64)
    p.add_argument("--augment", action="store_true", help="train target models with DSA (default: without, the "
                   "worst case)")
    p.add_argument("--max-candidates", type=int, default=2000, help="members and non-members per target, each")
    p.add_argument("--games", default="release,method")
    p.add_argument("--metrics", default="ssim,psnr", help="metrics for the autoencoder attack")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="write results.parquet and runs.parquet here")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    return p.parse_args(argv)


def target_options(args) -> dict:
    return {"target_steps": args.target_steps, "target_width": args.target_width, "target_augment": args.augment}


def attack_plan(args) -> list[tuple[str, dict]]:
    caps = {"max_members": args.max_candidates, "max_nonmembers": args.max_candidates, "resamples": args.resamples}
    plan = [("mia", {**target_options(args), **caps, "game": game, "shadows": args.shadows,
                     "pipelines": args.pipelines}) for game in args.games.split(",")]
    plan.append(("autoencoder", {"max_images": args.max_candidates, "max_released": args.max_candidates,
                                 "resamples": args.resamples}))
    plan.append(("aia", {**target_options(args), **caps}))
    return plan


def audit_release(registry, dataset, release, args, ctx) -> tuple[list[dict], list[dict], dict[str, float]]:
    from privbench.api import AuditTarget
    from privbench.config import build_config
    from privbench.engine import make_rebuild, metric_instances, run_attack
    from privbench.results import result_records, run_record

    target = AuditTarget(dataset, release, metric_instances(registry, ctx.device, args.metrics.split(",")),
                         make_rebuild(registry, release.manifest))
    records, runs, times = [], [], {}
    for name, options in attack_plan(args):
        config = build_config(registry.get("attack", name).Config, options, owner=f"attack {name}")
        label = f"{name}[{options['game']}]" if "game" in options else name
        t0 = time.perf_counter()
        info, rows = run_attack(registry, name, target, config, ctx)
        times[label] = time.perf_counter() - t0
        info.job = f"{dataset.name}: audit {label} on {release.method}"
        records += result_records(info, rows)
        runs.append(run_record(info))
        print(f"  {label}: {times[label] / 60:.1f} min", flush=True)
    return records, runs, times


def _find(records, method, evaluator, measure, subset="all", game=None):
    for r in records:
        if (r["release_method"] == method and r["evaluator"] == evaluator and r["measure"] == measure
                and r["subset"] == subset and (game is None or r["game"] == game)):
            return r
    return None


def _cell(records, method, evaluator, measure, subset="all", game=None, percent=False) -> str:
    from privbench.report.tables import Cell

    c = Cell.of(_find(records, method, evaluator, measure, subset, game))
    text = c.text(3, percent=percent)
    return text + (" (confounded)" if c.confounded else "")


def _detail(records, method, evaluator, measure, subset="all", game=None) -> dict:
    r = _find(records, method, evaluator, measure, subset, game)
    return json.loads(r["detail"]) if r and r["detail"] else {}


def _strongest(records, method, game, statistic="tpr_at_fpr_0.01") -> str | None:
    from privbench.report.tables import Cell

    best, value = None, -1.0
    for v in VARIANTS:
        c = Cell.of(_find(records, method, "mia", f"{v}.{statistic}", "all", game))
        if c.value is not None and not c.confounded and c.value > value:
            best, value = v, c.value
    return best


def markdown(records, releases, args, wall, times, dataset) -> str:
    games = args.games.split(",")
    population = _detail(records, releases[0][1].method, "mia", "loss.auc", game=games[0]).get("population", {})
    lines = [
        "## Audit: PneumoniaMNIST, original, random and DM releases in both games (the paper's Table 2)",
        "",
        f"Measured {today()} on {machine()}, a quiet machine (no other job), by `python benchmarks/audit.py "
        f"{' '.join(sys.argv[1:])}`; wall time {wall / 60:.0f} min. Every cell is the value with its 95% CI: AUC by a bootstrap stratified by membership, "
        "TPR at low FPR by the exact Clopper-Pearson interval. Higher AUC / TPR means a stronger attack. "
        "*confounded*: the attack's null control excludes 0.5.",
        "",
        "Membership inference, AUC by attack (every target model: the same "
        f"{args.target_steps} optimiser steps):",
        "",
        "| game | release | images | loss | LiRA offline | LiRA online | RMIA | release distance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for game in games:
        for label, rel in releases:
            m = rel.method
            lines.append(f"| {game} | {label} | {len(rel)} | " + " | ".join(
                _cell(records, m, "mia", f"{v}.auc", game=game) for v in VARIANTS) + " |")
    lines += [
        "",
        "Exposure at low FPR, the null control and the members that seeded the release (the strongest "
        "unconfounded attack at 1% FPR):",
        "",
        "| game | release | attack | TPR at 1% FPR | TPR at 0.1% FPR | its null-control AUC | its AUC on the init "
        "members | non-members / pairs | spread of its AUC over targets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for game in games:
        for label, rel in releases:
            m = rel.method
            v = _strongest(records, m, game) or "loss"
            d = _detail(records, m, "mia", f"{v}.tpr_at_fpr_0.01", game=game)
            a = _detail(records, m, "mia", f"{v}.auc", game=game)
            spread = (f"mean {a['mean_over_targets']:.3f}, {a['min_over_targets']:.3f}-{a['max_over_targets']:.3f} "
                      f"({a['targets']} targets)" if a.get("targets") else "one target")
            tpr1 = _cell(records, m, "mia", f"{v}.tpr_at_fpr_0.01", game=game, percent=True)
            tpr01 = _cell(records, m, "mia", f"{v}.tpr_at_fpr_0.001", game=game, percent=True)
            lines.append(
                f"| {game} | {label} | {v.replace('_', ' ')} | {tpr1} % | {tpr01} % "
                f"| {_cell(records, m, 'mia', f'{v}.auc', 'null', game)} "
                f"| {_cell(records, m, 'mia', f'{v}.auc', 'init_members', game)} "
                f"| {d.get('nonmembers', '?')} / {d.get('members', 0) + d.get('nonmembers', 0)} | {spread} |")
    lines += [
        "",
        "Copies, reconstruction (members against non-members) and attribute inference (members against controls), "
        "release game:",
        "",
        "| release | verbatim copies | near-copies (SSIM >= 0.95) | reconstruction SSIM, members | SSIM gap "
        "(members - non-members) | reconstruction-error AUC (null) | AIA AUC with model / baseline | AIA risk "
        "(Anonymeter) | attack time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rel in releases:
        m = rel.method
        verbatim = _detail(records, m, "autoencoder", "memorisation.verbatim")
        near = _detail(records, m, "autoencoder", "memorisation.near_copies")
        lines.append(
            f"| {label} | {verbatim.get('verbatim', '?')} of {verbatim.get('released_checked', '?')} "
            f"({_cell(records, m, 'autoencoder', 'memorisation.verbatim', percent=True)} %) "
            f"| {near.get('near_copies', '?')} of {near.get('released_checked', '?')} "
            f"({_cell(records, m, 'autoencoder', 'memorisation.near_copies', percent=True)} %) "
            f"| {_cell(records, m, 'autoencoder', 'reconstruction.ssim')} "
            f"| {_cell(records, m, 'autoencoder', 'reconstruction_gap.ssim')} "
            f"| {_cell(records, m, 'autoencoder', 'reconstruction_mia.auc')} "
            f"({_cell(records, m, 'autoencoder', 'reconstruction_mia.auc', 'null')}) "
            f"| {_cell(records, m, 'aia', 'with_model.auc')} / {_cell(records, m, 'aia', 'baseline.auc')} "
            f"| {_cell(records, m, 'aia', 'risk')} | {sum(times[m].values()) / 60:.0f} min |")
    shadows = _detail(records, releases[1][1].method, "mia", "loss.auc", game="release").get("shadows", {}) \
        if "release" in games else {}
    null = _detail(records, releases[0][1].method, "mia", "loss.auc", "null", "release") if "release" in games else {}
    lines += [
        "",
        "Settings (lowered from the published ones so that a CPU finishes; all are `--set` options; every setting of "
        "each game is in `runs.parquet` under `settings`):",
        "",
        f"- data: {dataset.name}, {len(dataset.train)} private training images (members), {len(dataset.val)} val + "
        f"{len(dataset.test)} test images (non-members). Removed before any attack: "
        f"{population.get('nonmembers_removed_exact', '?')} non-members byte-identical to a training image and "
        f"{population.get('nonmembers_removed_near', '?')} within RMS {population.get('duplicate_threshold_rms', '?')} "
        f"of one; {population.get('training_images_duplicating_training_images', '?')} duplicates inside the "
        f"training split merged; pool {population.get('pool', '?')} images.",
        f"- releases: original (all {len(dataset.train)} training images), random {args.ipc} per class, DM {args.ipc} "
        f"per class ({args.dm_iterations} iterations, batch_real {args.dm_batch_real}; the paper: 20000, 256); the "
        "same settings in every pipeline.",
        f"- target model (every pipeline): the utility protocol's ConvNet, width {args.target_width}, depth 3, "
        f"instance norm, SGD lr 0.01 momentum 0.9, batches of 256, **{args.target_steps} optimiser steps** whatever "
        f"the release's size (the original: {args.target_steps // 19 + (args.target_steps % 19 > 0)} epochs of 19 "
        f"batches; a 20-image release: {args.target_steps} epochs of one batch), augmentation "
        f"{'DSA' if args.augment else 'off (the worst case)'}.",
        f"- release game: {args.shadows} shadow pipelines per release, each with the target's class counts "
        f"({shadows.get('class_counts', '?')}) drawn from the pool; each candidate IN "
        f"{shadows.get('inclusion_rate_min', '?')}-{shadows.get('inclusion_rate_max', '?')} of them. Null pipeline: "
        f"the release pipeline without A = {null.get('held_out_A', '?')} training images; A against "
        f"{null.get('nonmembers_B', '?')} non-members B.",
        f"- method game: {args.pipelines} pipelines on random halves of the pool (each candidate IN exactly half), "
        "each in turn the target with the others as references (M/2 - 1 IN and OUT references per candidate); rows "
        "pool the targets.",
        f"- candidates: at most {args.max_candidates} members and non-members per target, equal per class. LiRA: fixed "
        "variance (below 64 references), queries the image and its mirror. RMIA: offline, a = 0.3, gamma = 1, every "
        "entry the target never saw as population z.",
        "- autoencoder: bottleneck of 4 x 7 x 7 = 196 values (a quarter of the 784 pixels), 10 epochs (at least 500 "
        f"steps), metrics {args.metrics}; its null control is the release game's null pipeline.",
        "- AIA: the diagnosis label (PneumoniaMNIST has no attribute column; its figures mix utility with leakage) "
        "from the image with its centre half masked; logistic regression fitted on half of the val split; members "
        "against the other half (controls), as many per label.",
        f"- torch threads: {args.threads or 'default'}; seed {args.seed}; "
        f"device {releases[0][1].manifest.get('device', '?')}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from privbench.api import RunContext
    from privbench.data import load_dataset
    from privbench.engine import original_release, resolve_device, run_distiller
    from privbench.plugins import get_registry
    from privbench.results import write_results, write_runs

    started = time.perf_counter()
    registry = get_registry()
    dataset = load_dataset(f"npz:{args.data}")
    ctx = RunContext(device=resolve_device(args.device), seed=args.seed, allow_private_images=False)
    dm = {"iterations": args.dm_iterations, "batch_real": args.dm_batch_real}
    releases = [("original", original_release(registry, dataset, ctx)),
                (f"random ipc={args.ipc}", run_distiller(registry, "random", dataset, args.ipc, None, ctx)),
                (f"dm ipc={args.ipc}", run_distiller(registry, "dm", dataset, args.ipc, dm, ctx))]
    records, runs, times = [], [], {}
    for label, release in releases:
        print(f"{label}: {len(release)} images", flush=True)
        rows, run_rows, times[release.method] = audit_release(registry, dataset, release, args, ctx)
        records += rows
        runs += run_rows
        args.out.mkdir(parents=True, exist_ok=True)
        write_results(args.out / "results.parquet", records)  # after every release: a crash keeps what finished
        write_runs(args.out / "runs.parquet", runs)
    wall = time.perf_counter() - started
    text = markdown(records, releases, args, wall, times, dataset)
    print(text)
    if not args.no_write:
        update_section("audit", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
