"""The reconstruction attack's contrast: members against non-members, and its null control, as rows.

An autoencoder fitted to a release reconstructs two groups (members and
non-members, as many per class); each metric plugin scores every
reconstruction. Leakage is the difference between the groups, never the
members' level alone: an autoencoder that has learnt "chest X-rays" in
general reconstructs anyone's X-ray well.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from privbench.api import ImageScores, Release, ResultRow, RunContext

from privbench_builtins.attacks import _roc
from privbench_builtins.attacks._population import Population

GAME = "release"


@dataclass
class Groups:
    """Two groups' originals, reconstructions, per-image metric values and errors."""

    originals: list[torch.Tensor]
    reconstructions: list[torch.Tensor]
    scores: list[dict[str, ImageScores]]
    mse: list[np.ndarray]
    facts: dict = field(default_factory=dict)


def reconstruct_groups(release: Release, population: Population, first: np.ndarray, second: np.ndarray, config,
                       metrics: dict, ctx: RunContext, label: str) -> Groups:
    """Train the attack's autoencoder on ``release`` and reconstruct two groups of population entries."""
    from privbench.api import score_images

    from privbench_builtins.attacks._autoencoder_net import reconstruct, train_autoencoder
    from privbench_builtins.attacks._common import seed_for

    model, facts = train_autoencoder(
        release.images, width=config.width, depth=config.depth, epochs=config.epochs, min_steps=config.min_steps,
        batch_size=config.batch_size, lr=config.lr, seed=seed_for(ctx, "autoencoder"), ctx=ctx,
        latent_fraction=config.latent_fraction, label=label)
    originals, recons, scores, errors = [], [], [], []
    for group in (first, second):
        images = population.images[torch.from_numpy(np.asarray(group, dtype=np.int64))]
        recon = reconstruct(model, images, ctx)
        originals.append(images)
        recons.append(recon)
        scores.append(score_images(metrics, images, recon, progress=ctx.progress) if len(images) else {})
        errors.append(((recon.double() - images.double()) ** 2).flatten(1).mean(1).numpy())
    return Groups(originals, recons, scores, errors, {**facts, "members": int(first.size),
                                                        "nonmembers": int(second.size)})


def _gap(measure: str, a: ImageScores, b: ImageScores, config, seed: int, subset: str, detail: dict) -> ResultRow:
    from privbench.stats import difference_of_means_ci

    if a.values is None or b.values is None:
        return ResultRow.unavailable(measure, a.reason or b.reason or "unavailable", higher_is_better=a.higher_is_better,
                                     subset=subset, game=GAME)
    est = difference_of_means_ci(a.values.numpy(), b.values.numpy(), resamples=config.resamples, seed=seed)
    if not np.isfinite(est.value):
        return ResultRow.unavailable(measure, "no finite values in one of the groups",
                                     higher_is_better=a.higher_is_better, subset=subset, game=GAME)
    return ResultRow(measure, est.value, est.ci_low, est.ci_high, est.n, a.higher_is_better, subset, "ok",
                     {**detail, "members": int(a.values.numel()), "nonmembers": int(b.values.numel()),
                      "ci_method": "bootstrap, each group resampled within itself"}, GAME)


def _excludes_zero(row: ResultRow) -> bool:
    return row.status == "ok" and row.ci_low is not None and (row.ci_low > 0 or row.ci_high < 0)


def contrast_rows(main: Groups, null: Groups | None, null_reason: str | None, detail: dict, config,
                  seed: int) -> list[ResultRow]:
    """The paper's per-metric rows, the non-members' rows, the gaps and the error-as-membership-score rows."""
    from privbench.api import summarise_scores

    def tag(rows: list[ResultRow], extra: dict) -> list[ResultRow]:
        return [dataclasses.replace(r, detail={**r.detail, **extra}, game=GAME) if r.status == "ok"
                else dataclasses.replace(r, game=GAME) for r in rows]

    rows = tag(summarise_scores(main.scores[0], "reconstruction", resamples=config.resamples, seed=seed), detail)
    rows += tag(summarise_scores(main.scores[1], "reconstruction_nonmembers", resamples=config.resamples, seed=seed),
                detail)
    for name, a in main.scores[0].items():
        null_gap = None
        if null is not None:
            null_gap = _gap(f"reconstruction_gap.{name}", null.scores[0][name], null.scores[1][name], config, seed,
                            "null", detail["null"])
        flag = ({"null_control": f"unavailable: {null_reason}"} if null_gap is None else
                {"null_gap": [null_gap.value, null_gap.ci_low, null_gap.ci_high],
                 "confounded": _excludes_zero(null_gap)})
        rows.append(_gap(f"reconstruction_gap.{name}", a, main.scores[1][name], config, seed, "all",
                         {**detail, **flag}))
        if null_gap is not None:
            rows.append(null_gap)
    member = np.r_[np.ones(main.mse[0].size, np.int64), np.zeros(main.mse[1].size, np.int64)]
    score = -np.concatenate(main.mse)
    null_rows: list[ResultRow] = []
    if null is not None:
        null_member = np.r_[np.ones(null.mse[0].size, np.int64), np.zeros(null.mse[1].size, np.int64)]
        null_rows = _roc.variant_rows("reconstruction_mia", null_member, -np.concatenate(null.mse),
                                      [("null", np.ones(null_member.size, bool))],
                                      calibration=_roc.calibration_half(null_member, seed),
                                      resamples=config.resamples, seed=seed, detail=detail["null"], game=GAME)
    else:
        null_rows = [ResultRow.unavailable(f"reconstruction_mia.{s}", null_reason or "no null control",
                                           higher_is_better=True, subset="null", game=GAME) for s in _roc.STATISTICS]
    from privbench_builtins.attacks._membership import confounding

    score_detail = {**detail, "score": "minus the reconstruction's mean squared error", **confounding(null_rows)}
    if member.min() == member.max():
        rows += [ResultRow.unavailable(f"reconstruction_mia.{s}", "needs members and non-members",
                                       higher_is_better=True, game=GAME) for s in _roc.STATISTICS]
    else:
        rows += _roc.variant_rows("reconstruction_mia", member, score, [("all", np.ones(member.size, bool))],
                                  calibration=_roc.calibration_half(member, seed), resamples=config.resamples,
                                  seed=seed, detail=score_detail, game=GAME)
    return rows + null_rows
