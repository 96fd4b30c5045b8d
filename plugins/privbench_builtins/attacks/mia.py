"""``mia``: membership inference. Can an attacker tell a patient who fed the release from one who did not?

Members are all private training images that fed the release pipeline;
non-members are real images it never saw (the val and test splits). Each
variant gives every candidate a score, higher meaning "more likely a member":

* ``loss``: the target model's confidence in the true label, log p_y (minus
  the cross-entropy loss), the paper's threshold attack;
* ``lira_offline`` / ``lira_online``: the likelihood-ratio attack of Carlini
  et al. (2022) against shadow pipelines that re-run the release's whole
  pipeline, distillation included, on random halves of the population;
* ``release_distance``: no model, minus the pixel distance from the candidate
  to its nearest released image.

The target model is a classifier trained on the release with the utility
protocol. Each variant is reported as ROC AUC, balanced accuracy (threshold
chosen on a held-out calibration half, see ``_roc``) and TPR at 1% and 0.1%
FPR, with stratified bootstrap 95% CIs, on all candidates and per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Attack, AuditTarget, ResultRow, RunContext

VARIANTS = ("loss", "lira_offline", "lira_online", "release_distance")
LIRA = ("lira_offline", "lira_online")
PER_EXAMPLE_FROM = 64
"""Below this many shadows ``variance=auto`` uses the fixed variance (the paper's advice for few shadows)."""


@dataclass(frozen=True)
class MIAConfig:
    """Membership inference settings.

    ``variants``: which attacks to run (default all four).
    ``shadows``: LiRA shadow pipelines, 8 by default: each re-runs the release
    pipeline and trains a model, so cost grows linearly; the paper uses up to
    256, and more shadows give a stronger attack. ``variance``: ``auto`` is
    ``fixed`` below 64 shadows and ``per_example`` from 64 on, as the paper
    recommends. ``query_flip`` adds the mirrored image as a second query
    (the target protocol trains with flips, so the mirror is in distribution).
    ``max_members`` / ``max_nonmembers``: seeded caps on the candidates scored
    (0 = all); the shadows always train on halves of the whole population.
    ``match_classes``: draw as many members as non-members in every class, so
    that a difference in class mix (PneumoniaMNIST's test split has fewer
    pneumonia cases than its training split) cannot pass for membership.
    ``nonmember_splits``: where non-members come from (val and test, the
    contract's non-members); with both, rows per source
    (``nonmembers=val``, ``nonmembers=test``) show whether one of them
    differs from the training split in distribution, which an attack would
    read as membership. Use ``val`` alone where the test split comes from
    another source.
    ``target_*``: the target model of the utility protocol (1000 epochs as the
    utility scores; lower it for large releases on a CPU). ``resamples``:
    bootstrap resamples per CI.
    """

    variants: tuple[str, ...] = VARIANTS
    shadows: int = 8
    variance: Literal["auto", "fixed", "per_example"] = "auto"
    query_flip: bool = True
    max_members: int = 2000
    max_nonmembers: int = 2000
    match_classes: bool = True
    nonmember_splits: tuple[str, ...] = ("val", "test")
    target_model: str = "convnet"
    target_epochs: int = 1000
    target_width: int = 128
    target_depth: int = 3
    resamples: int = 1000

    def __post_init__(self) -> None:
        from privbench_builtins.attacks._options import check_target_fields

        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(f"variants must be among {', '.join(VARIANTS)}; got {', '.join(self.variants) or 'none'}")
        if self.shadows < 0 or self.shadows == 1:
            raise ValueError(f"shadows must be 0 (no LiRA) or at least 2, got {self.shadows}")
        if self.variance == "per_example" and 0 < self.shadows < 4:
            raise ValueError("variance=per_example needs at least 4 shadows (two IN and two OUT per candidate)")
        if not self.nonmember_splits or any(s not in ("val", "test") for s in self.nonmember_splits):
            given = ", ".join(self.nonmember_splits) or "none"
            raise ValueError(f"nonmember_splits must be val, test or both; got {given}")
        if self.max_members < 0 or self.max_nonmembers < 0 or self.resamples < 0:
            raise ValueError("max_members, max_nonmembers and resamples must not be negative")
        check_target_fields(self)

    @property
    def resolved_variance(self) -> str:
        if self.variance != "auto":
            return self.variance
        return "fixed" if self.shadows < PER_EXAMPLE_FROM else "per_example"


class MembershipInference(Attack):
    """Membership inference: loss threshold, LiRA offline/online with shadow pipelines, release distance."""

    name = "mia"
    Config = MIAConfig

    def run(self, target: AuditTarget, config: MIAConfig, ctx: RunContext) -> list[ResultRow]:
        import numpy as np
        import torch

        from privbench.api import Split
        from privbench_builtins.attacks import _common as common
        from privbench_builtins.attacks import _roc

        common.require_images(target.release)
        dataset = target.dataset
        members = target.members
        splits = list(dict.fromkeys(config.nonmember_splits))
        nonmembers = Split.concat([getattr(dataset, name) for name in splits])
        source = np.concatenate([np.full(len(getattr(dataset, name)), name) for name in splits])
        population = Split.concat([members, nonmembers])
        n_mem = len(members)
        if config.match_classes:
            chosen_members, chosen_nonmembers = common.matched_candidates(
                members.labels, nonmembers.labels, config.max_members, config.max_nonmembers,
                common.seed_for(ctx, "mia", "candidates"))
        else:
            chosen_members = common.sample_index(n_mem, config.max_members, common.seed_for(ctx, "mia", "members"))
            chosen_nonmembers = common.sample_index(len(nonmembers), config.max_nonmembers,
                                                    common.seed_for(ctx, "mia", "nonmembers"))
        scored = torch.cat([chosen_members, n_mem + chosen_nonmembers])
        member = (scored < n_mem).numpy().astype(np.int64)
        images, labels = population.images[scored], population.labels[scored]
        calibration = _roc.calibration_half(member, common.seed_for(ctx, "mia", "calibration"))
        variants = list(dict.fromkeys(config.variants))
        scores: dict[str, np.ndarray] = {}
        notes: dict[str, dict] = {}
        unavailable: dict[str, str] = {}
        spec = common.target_spec(config)
        queries = [lambda x: x] + ([common.flip] if config.query_flip else [])

        if any(v != "release_distance" for v in variants):
            from privbench.training import predict_logits

            from privbench_builtins.attacks._shadows import query_phi

            model = common.target_model(target.release, dataset, spec, ctx)
            logits = predict_logits(model, images, ctx)
            scores["loss"] = logits.double().log_softmax(1).gather(1, labels.view(-1, 1)).squeeze(1).numpy()
            notes["loss"] = {"score": "log p_y of the target model (minus its cross-entropy loss)",
                             "target_epochs": config.target_epochs, "target_model": config.target_model}
            if any(v in LIRA for v in variants):
                target_phi = query_phi(model, images, labels, queries, ctx)
                outcome = self._lira(target, config, ctx, population, scored, target_phi, queries, spec)
                if isinstance(outcome, str):
                    unavailable.update({v: outcome for v in variants if v in LIRA})
                else:
                    scores.update(outcome[0])
                    notes.update(outcome[1])
        if "release_distance" in variants:
            dist, _ = common.nearest(images, target.release.images, ctx)
            scores["release_distance"] = -dist.double().numpy()
            notes["release_distance"] = {"score": "minus the Euclidean pixel distance to the nearest released image"}

        subsets = [("all", np.ones(member.size, dtype=bool))]
        subsets += [(f"class={c}", labels.numpy() == k) for k, c in enumerate(dataset.class_names)]
        if len(splits) > 1:  # members against one source of non-members: spots a shift between splits
            origin = np.concatenate([np.full(n_mem, "train"), source])[scored.numpy()]
            subsets += [(f"nonmembers={name}", (member == 1) | (origin == name)) for name in splits]
        rows: list[ResultRow] = []
        curves = {}
        for variant in variants:
            if variant in unavailable:
                rows += [ResultRow.unavailable(f"{variant}.{s}", unavailable[variant], higher_is_better=True,
                                               subset=sub) for sub, _ in subsets for s in _roc.STATISTICS]
                continue
            rows += _roc.variant_rows(variant, member, scores[variant], subsets,
                                      calibration=calibration, resamples=config.resamples,
                                      seed=common.seed_for(ctx, "mia", "bootstrap"), detail=notes.get(variant))
            fpr, tpr = _roc.roc_points(member, scores[variant])
            curves[variant] = (fpr, tpr, _roc.auc(member, _roc.clean(scores[variant])))
        if ctx.out_dir is not None and curves:
            from privbench_builtins.attacks._figures import roc_figure

            title = f"MIA on {target.release.method} release of {dataset.name} ({int(member.sum())} members, " \
                    f"{int((1 - member).sum())} non-members)"
            roc_figure(curves, int((1 - member).sum()), ctx.out_dir / "roc.png", title)
        return rows

    @staticmethod
    def _lira(target, config, ctx, population, scored, target_phi, queries, spec) -> tuple[dict, dict] | str:
        """LiRA's offline and online scores with their notes, or the reason they cannot be computed."""
        from privbench.errors import UserError
        from privbench_builtins.attacks import _lira
        from privbench_builtins.attacks._shadows import run_shadows

        if config.shadows == 0:
            return "LiRA is off (shadows=0)"
        try:
            obs = run_shadows(target, population, scored, config.shadows, spec, queries, ctx)
        except NotImplementedError as exc:
            return f"this target cannot re-run its release pipeline for shadow models: {exc}"
        except UserError as exc:  # e.g. the release's distiller is not installed here
            ctx.warn(f"mia: LiRA skipped: {exc}")
            return str(exc)
        variance = config.resolved_variance
        fit_out = _lira.fit_gaussians(obs.phi, ~obs.is_in, variance)
        fit_in = _lira.fit_gaussians(obs.phi, obs.is_in, variance)
        shared = {
            "shadows": config.shadows,
            "variance": variance,
            "queries": ["identity", "flip"][: len(queries)],
            "population": len(population),
            "shadow_release_images": sorted(set(obs.release_sizes)),
            "target_epochs": config.target_epochs,
            "target_model": config.target_model,
        }
        scores = {"lira_offline": _lira.offline_scores(target_phi, fit_out),
                  "lira_online": _lira.online_scores(target_phi, fit_in, fit_out)}
        notes = {
            "lira_offline": {**shared, "score": "mean over queries of log Pr[Z <= phi], Z ~ N(OUT)",
                             "variance_estimate": fit_out.estimate},
            "lira_online": {**shared, "score": "mean over queries of the log likelihood ratio IN / OUT",
                            "variance_estimate_in": fit_in.estimate, "variance_estimate_out": fit_out.estimate},
        }
        return scores, notes


@hookimpl
def register_attacks(register):
    register(MembershipInference)
