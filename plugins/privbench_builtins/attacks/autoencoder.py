"""``autoencoder``: the reconstruction attack (the seed paper's Section 4.3), with its contrast, plus memorisation.

Reconstruction: a convolutional autoencoder with a bottleneck is trained on
the released images only, then asked to reconstruct private images
(members) and real images the pipeline never saw (non-members, as many per
class, no copy of a training image among them). Every metric plugin scores
reconstruction against original, per image:

* ``reconstruction.<metric>``: the mean over members (the paper's tables);
* ``reconstruction_nonmembers.<metric>``: the same over non-members;
* ``reconstruction_gap.<metric>``: members minus non-members, the leakage
  (an autoencoder that reconstructs everyone equally well says nothing about
  the members);
* ``reconstruction_mia.<statistic>``: minus the reconstruction error (MSE)
  as a membership score: AUC, balanced accuracy, TPR at low FPR.

A null control re-runs the release pipeline without a held-out part A of the
training split and scores A against non-members B, both unseen: a gap or an
AUC there is a difference between the splits, and the rows are marked
``confounded`` when it excludes no difference (shared with ``mia``'s null
pipeline within one run).

Memorisation: each released image against its nearest private image, in
pixel space and in a feature space (see ``_memorisation``), scored with every
metric (``memorisation.pixel.<metric>``, ``memorisation.feature.<metric>``);
``memorisation.verbatim``, the fraction of released images within the
duplicate threshold of a private image (a copy), and
``memorisation.near_copies``, the fraction whose nearest private image
reaches a similarity threshold (SSIM >= 0.95 by default); both with exact
binomial 95% CIs.

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
    block) and the number of pooling blocks. ``latent_fraction``: the latent
    code holds at most this fraction of the input's values (0.25: 196 values
    for a 28 x 28 image). ``max_images``: members and non-members
    reconstructed, each (seeded, class-matched, 0 = all); ``max_released``:
    released images checked for memorisation (0 = all).
    ``nonmember_splits``, ``duplicate_rms``, ``null_control``,
    ``null_holdout``: as for ``mia``. ``near_copy_metric`` /
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
    latent_fraction: float = 0.25
    max_images: int = 1000
    max_released: int = 1000
    nonmember_splits: tuple[str, ...] = ("val", "test")
    duplicate_rms: float = 0.01
    null_control: bool = True
    null_holdout: float = 0.25
    near_copy_metric: str = "ssim"
    near_copy_threshold: float = 0.95
    figure_images: int = 10
    resamples: int = 1000

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.width < 1 or self.depth < 1:
            raise ValueError("epochs, batch_size, width and depth must be at least 1")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 < self.latent_fraction <= 1:
            raise ValueError(f"latent_fraction must lie in (0, 1], got {self.latent_fraction}")
        if min(self.min_steps, self.max_images, self.max_released, self.figure_images, self.resamples) < 0:
            raise ValueError("min_steps, max_images, max_released, figure_images and resamples must not be negative")
        if not self.nonmember_splits or any(s not in ("val", "test") for s in self.nonmember_splits):
            raise ValueError(f"nonmember_splits must be val, test or both; got {', '.join(self.nonmember_splits)}")
        if not 0 <= self.duplicate_rms < 1:
            raise ValueError(f"duplicate_rms must lie in [0, 1), got {self.duplicate_rms}")
        if not 0 < self.null_holdout <= 0.5:
            raise ValueError(f"null_holdout must lie in (0, 0.5], got {self.null_holdout}")


class AutoencoderAttack(Attack):
    """Reconstruction attack: an autoencoder trained on the release reconstructs members and non-members."""

    name = "autoencoder"
    Config = AutoencoderConfig

    def run(self, target: AuditTarget, config: AutoencoderConfig, ctx: RunContext) -> list[ResultRow]:
        import numpy as np

        from privbench_builtins.attacks import _common as common
        from privbench_builtins.attacks._games import _matched
        from privbench_builtins.attacks._population import build_population
        from privbench_builtins.attacks._reconstruction import contrast_rows, reconstruct_groups

        common.require_images(target.release)
        if not target.metrics:
            ctx.warn("autoencoder: no metric plugins are installed or chosen, so only near-copies are reported")
        population = build_population(target.dataset, list(dict.fromkeys(config.nonmember_splits)),
                                      config.duplicate_rms, ctx)
        train = population.is_train
        members, nonmembers = _matched(population, np.flatnonzero(train), np.flatnonzero(~train),
                                       config.max_images, config.max_images, common.seed_for(ctx, "autoencoder",
                                                                                               "sample"))
        main = reconstruct_groups(target.release, population, members, nonmembers, config, target.metrics, ctx,
                                  "autoencoder on the release")
        null, null_reason, null_detail = self._null(target, population, config, ctx)
        detail = {"release_images": len(target.release), "private_images": len(target.members),
                  "population": population.facts, **main.facts}
        rows = contrast_rows(main, null, null_reason, {**detail, "null": null_detail}, config,
                             common.seed_for(ctx, "autoencoder", "bootstrap"))
        ctx.record("autoencoder", {"population": population.facts, "autoencoder": main.facts, "null": null_detail,
                                   "null_control": null_reason or "present"})
        from privbench_builtins.attacks._figures import comparison_grid, private_figures_allowed

        show = private_figures_allowed(ctx, "reconstructions.png and memorisation.png")
        rows += self._memorisation(target, config, ctx, common.seed_for(ctx, "autoencoder", "bootstrap"), show)
        if show:
            k = min(config.figure_images, members.size)
            if k:
                comparison_grid([main.originals[0][:k], main.reconstructions[0][:k]],
                                ctx.out_dir / "reconstructions.png")
        return rows

    @staticmethod
    def _null(target, population, config, ctx):
        """The reconstruction contrast of a null pipeline, or why there is none."""
        from privbench.errors import UserError
        from privbench_builtins.attacks import _common as common
        from privbench_builtins.attacks._games import null_groups
        from privbench_builtins.attacks._pipelines import rebuild_release
        from privbench_builtins.attacks._population import train_without
        from privbench_builtins.attacks._reconstruction import reconstruct_groups

        if not config.null_control:
            return None, "the null control is off (null_control=false)", {}
        dataset = target.dataset
        a, b = null_groups(population, dataset.train.class_counts(dataset.num_classes), config.null_holdout, ctx)
        if not a.size:
            return None, "no class has both training images to hold out and non-members", {}
        private = train_without(dataset, population, a)
        try:
            release = rebuild_release(target, private, common.seed_for(ctx, "null", "pipeline"), ctx, "null")
        except NotImplementedError as exc:
            return None, f"this target cannot re-run its release pipeline for the null pipeline: {exc}", {}
        except UserError as exc:
            ctx.warn(f"autoencoder: the null pipeline could not be trained: {exc}")
            return None, str(exc), {}
        if len(release) == 0:
            return None, "the null pipeline's release holds no images", {}
        groups = reconstruct_groups(release, population, a, b, config, target.metrics, ctx, "autoencoder on the null "
                                    "pipeline's release")
        facts = {"pipeline": "the release pipeline re-run on the training split without group A",
                 "private_set": len(private), "held_out_A": int(a.size), "nonmembers_B": int(b.size),
                 "held_out_fraction": config.null_holdout, "release_images": len(release)}
        return groups, None, facts

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
            rows += [dataclasses.replace(r, detail={**r.detail, **detail}, game="release") if r.status == "ok"
                     else dataclasses.replace(r, game="release")
                     for r in summarise_scores(scores, f"memorisation.{space}", resamples=config.resamples,
                                               seed=boot_seed)]
        rows.append(mem.verbatim_row(found["pixel"][0], int(released[0].numel()), config.duplicate_rms))
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
        from privbench.stats import exact_rate_ci

        from privbench_builtins.attacks._memorisation import near_copy_flags

        metric = config.near_copy_metric
        measure = "memorisation.near_copies"
        entries = [s.get(metric) for s in by_space.values()]
        if any(e is None for e in entries):
            return ResultRow.unavailable(measure, f"near-copy metric {metric!r} is not among this run's metrics",
                                         higher_is_better=True, game="release")
        if any(not e.available for e in entries):
            return ResultRow.unavailable(measure, f"near-copy metric {metric!r} is unavailable: {entries[0].reason}",
                                         higher_is_better=True, game="release")
        higher = entries[0].higher_is_better
        flags = near_copy_flags([e.values for e in entries], config.near_copy_threshold, higher)
        count = int(flags.sum())
        ci = exact_rate_ci(count, checked)
        detail = {
            "near_copies": count,
            "released_checked": checked,
            "metric": metric,
            "threshold": config.near_copy_threshold,
            "rule": f"{metric} {'>=' if higher else '<='} {config.near_copy_threshold:g} against the nearest "
                    "private image in pixel or feature space",
            "ci_method": "exact binomial (Clopper-Pearson)",
        }
        return ResultRow(measure, ci.value, ci.ci_low, ci.ci_high, checked, True, detail=detail, game="release")


@hookimpl
def register_attacks(register):
    register(AutoencoderAttack)
