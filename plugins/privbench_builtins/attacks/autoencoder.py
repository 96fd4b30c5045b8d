"""``autoencoder``: the reconstruction attack (the seed paper's Section 4.3), plus a memorisation check.

Reconstruction: a convolutional autoencoder is trained on the released images
only, then asked to reconstruct the private images. If the release carries
the patients' images, an autoencoder fitted to it reconstructs them well.
Every metric plugin scores reconstruction against original, per image, and the
rows are ``reconstruction.<metric>``: the mean over private images with a
bootstrap 95% CI and n.

Memorisation: each released image against its nearest private image, in
pixel space and in a feature space (see ``_memorisation``), scored with every
metric (``memorisation.pixel.<metric>``, ``memorisation.feature.<metric>``),
and ``memorisation.near_copies``: the fraction of released images whose
nearest private image (by either search) reaches a similarity threshold
(SSIM >= 0.95 by default), with an exact binomial 95% CI.

Figures in the output directory, only when private images may be shown:
``reconstructions.png`` (originals above reconstructions) and
``memorisation.png`` (released images above their nearest private images).
"""

from __future__ import annotations

from dataclasses import dataclass

from privbench import hookimpl
from privbench.api import Attack, AuditTarget, ResultRow, RunContext


@dataclass(frozen=True)
class AutoencoderConfig:
    """Reconstruction attack settings.

    ``epochs`` 10, Adam ``lr`` 1e-3, MSE, ``batch_size`` 32: the seed paper's
    training. ``min_steps`` 500 raises the epochs for small releases (20 images
    in 10 epochs would be 10 optimiser steps, an untrained network whose poor
    reconstructions would say nothing about the release); 0 keeps exactly
    ``epochs``. ``width`` / ``depth``: channels of the first block (doubling per
    block) and the number of pooling blocks. ``max_images``: private images
    reconstructed (seeded sample, 0 = all); ``max_released``: released images
    checked for memorisation (0 = all). ``near_copy_metric`` /
    ``near_copy_threshold``: a released image is a near-copy when this metric
    against its nearest private image reaches the threshold (at least it for
    metrics where higher is closer, at most it otherwise). ``figure_images``:
    columns in the figures. ``resamples``: bootstrap resamples per CI.
    """

    epochs: int = 10
    min_steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 32
    depth: int = 2
    max_images: int = 1000
    max_released: int = 1000
    near_copy_metric: str = "ssim"
    near_copy_threshold: float = 0.95
    figure_images: int = 10
    resamples: int = 1000

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.width < 1 or self.depth < 1:
            raise ValueError("epochs, batch_size, width and depth must be at least 1")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if min(self.min_steps, self.max_images, self.max_released, self.figure_images, self.resamples) < 0:
            raise ValueError("min_steps, max_images, max_released, figure_images and resamples must not be negative")


class AutoencoderAttack(Attack):
    """Reconstruction attack: an autoencoder trained on the release reconstructs the private images."""

    name = "autoencoder"
    Config = AutoencoderConfig

    def run(self, target: AuditTarget, config: AutoencoderConfig, ctx: RunContext) -> list[ResultRow]:
        import dataclasses

        from privbench.api import score_images, summarise_scores
        from privbench_builtins.attacks import _common as common
        from privbench_builtins.attacks._autoencoder_net import reconstruct, train_autoencoder

        common.require_images(target.release)
        if not target.metrics:
            ctx.warn("autoencoder: no metric plugins are installed or chosen, so only near-copies are reported")
        seed = common.seed_for(ctx, "autoencoder")
        model, facts = train_autoencoder(
            target.release.images, width=config.width, depth=config.depth, epochs=config.epochs,
            min_steps=config.min_steps, batch_size=config.batch_size, lr=config.lr, seed=seed, ctx=ctx,
        )
        pick = common.sample_index(len(target.members), config.max_images, common.seed_for(ctx, "autoencoder", "sample"))
        originals = target.members.images[pick]
        recon = reconstruct(model, originals, ctx)
        boot_seed = common.seed_for(ctx, "autoencoder", "bootstrap")
        scores = score_images(target.metrics, originals, recon, progress=ctx.progress)
        detail = {**facts, "release_images": len(target.release), "private_images": len(target.members),
                  "reconstructed": int(pick.numel())}
        rows = [dataclasses.replace(r, detail={**r.detail, **detail}) if r.status == "ok" else r
                for r in summarise_scores(scores, "reconstruction", resamples=config.resamples, seed=boot_seed)]
        from privbench_builtins.attacks._figures import comparison_grid, private_figures_allowed

        show = private_figures_allowed(ctx, "reconstructions.png and memorisation.png")
        rows += self._memorisation(target, config, ctx, boot_seed, show)
        if show:
            k = min(config.figure_images, originals.shape[0])
            if k:
                comparison_grid([originals[:k], recon[:k]], ctx.out_dir / "reconstructions.png")
        return rows

    def _memorisation(self, target, config, ctx, boot_seed, show: bool) -> list[ResultRow]:
        import dataclasses

        from privbench.api import score_images, summarise_scores
        from privbench_builtins.attacks import _common as common
        from privbench_builtins.attacks import _memorisation as mem

        released_all = target.release.images
        pick = common.sample_index(len(target.release), config.max_released,
                                   common.seed_for(ctx, "autoencoder", "released"))
        released = released_all[pick]
        found = mem.nearest_private(released, target.dataset, common.seed_for(ctx, "memorisation", "features"), ctx)
        rows, by_space = [], {}
        for space, (dist, index) in found.items():
            neighbours = target.members.images[index]
            scores = score_images(target.metrics, neighbours, released, progress=ctx.progress)
            by_space[space] = scores
            detail = {"released_checked": int(pick.numel()), "release_images": len(target.release),
                      "mean_distance": float(dist.double().mean()),
                      "space": "pixels, Euclidean distance" if space == "pixel" else mem.FEATURE_SPACE}
            rows += [dataclasses.replace(r, detail={**r.detail, **detail}) if r.status == "ok" else r
                     for r in summarise_scores(scores, f"memorisation.{space}", resamples=config.resamples,
                                               seed=boot_seed)]
        rows.append(self._near_copies(config, by_space, int(pick.numel())))
        if show:
            from privbench_builtins.attacks._figures import comparison_grid

            order = found["pixel"][0].argsort()[: config.figure_images]
            if order.numel():
                comparison_grid([released[order], target.members.images[found["pixel"][1][order]],
                                 target.members.images[found["feature"][1][order]]],
                                ctx.out_dir / "memorisation.png")
        return rows

    @staticmethod
    def _near_copies(config, by_space, checked: int) -> ResultRow:
        from scipy.stats import binomtest

        from privbench_builtins.attacks._memorisation import near_copy_flags

        metric = config.near_copy_metric
        measure = "memorisation.near_copies"
        entries = [s.get(metric) for s in by_space.values()]
        if any(e is None for e in entries):
            return ResultRow.unavailable(measure, f"near-copy metric {metric!r} is not among this run's metrics",
                                         higher_is_better=True)
        if any(not e.available for e in entries):
            return ResultRow.unavailable(measure, f"near-copy metric {metric!r} is unavailable: {entries[0].reason}",
                                         higher_is_better=True)
        higher = entries[0].higher_is_better
        flags = near_copy_flags([e.values for e in entries], config.near_copy_threshold, higher)
        count = int(flags.sum())
        ci = binomtest(count, checked).proportion_ci(confidence_level=0.95, method="exact")
        detail = {
            "near_copies": count,
            "released_checked": checked,
            "metric": metric,
            "threshold": config.near_copy_threshold,
            "rule": f"{metric} {'>=' if higher else '<='} {config.near_copy_threshold:g} against the nearest "
                    "private image in pixel or feature space",
            "ci_method": "exact binomial (Clopper-Pearson)",
        }
        return ResultRow(measure, count / checked, float(ci.low), float(ci.high), checked, True, detail=detail)


@hookimpl
def register_attacks(register):
    register(AutoencoderAttack)
