"""``mia``: membership inference. Can an attacker tell a patient who fed the release from one who did not?

Two games (``game``), named in every row:

* ``release`` (the default of ``privbench audit``): this one release. The
  target is the classifier a recipient trains on it; reference (shadow)
  pipelines re-run the release's whole pipeline on private sets drawn like
  the target's (same size and class mix) from the pooled population.
* ``method`` (the default in suites): how private is the release's method on
  this data? ``pipelines`` runs on random halves of the pooled population,
  each in turn the target with the others as its references.

Variants (see ``_membership``): ``loss``, ``lira_offline``, ``lira_online``
(Carlini et al. 2022), ``rmia`` (Zarifzadeh et al. 2024), ``release_distance``.
Every row compares members and non-members with the same class mix;
non-members hold no copy of a training image (``duplicate_rms``); a null
control scores two groups the attacked pipeline never saw, and marks a
variant ``confounded`` where its AUC interval excludes 0.5. Reported: ROC
AUC (bootstrap CI), balanced accuracy (calibrated threshold), TPR at 1% and
0.1% FPR with exact intervals (``insufficient`` where the non-members
cannot resolve the rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Attack, AuditTarget, ResultRow, RunContext

from privbench_builtins.attacks._options import TargetOptions

VARIANTS = ("loss", "lira_offline", "lira_online", "rmia", "release_distance")
NEEDS_REFERENCES = ("lira_offline", "lira_online", "rmia")


@dataclass(frozen=True)
class MIAConfig(TargetOptions):
    """Membership inference settings (docs/attacks.md explains each).

    ``game``: ``release`` or ``method``. ``shadows``: reference pipelines of
    the release game (0: only the attacks that need none). ``pipelines``: the
    method game's pipelines (at least 4). ``variants``: which attacks.
    ``variance`` (LiRA): ``auto`` is ``fixed`` below 64 references.
    ``query_flip``: add the mirrored image as a query; empty (auto) when the
    target trains with a flip augmentation. ``max_members`` /
    ``max_nonmembers``: seeded caps per attacked pipeline (0 = all), always
    class-matched; members that seeded the release are scored beyond the cap.
    ``nonmember_splits``: where non-members come from. ``duplicate_rms``: a
    non-member within this RMS pixel distance of a training image is removed
    (0: byte-identical copies only). ``null_control`` / ``null_holdout``: the
    null pipeline, trained without this fraction of each class's training
    images. ``rmia_offline_a``, ``rmia_gamma``, ``rmia_population`` (0 = every
    entry the attacked pipeline did not hold): RMIA's settings. ``target_*``:
    the recipient's training recipe (``target_steps`` > 0 fixes the optimiser
    steps instead of the epochs; ``target_augment=false`` trains without
    augmentation, the worst case). ``resamples``: bootstrap resamples per CI.
    ``shadow_group``: pipelines per task (a Ray task under ``--executor ray``);
    their target models train as one ensemble when ``shadow_ensemble`` allows
    (``auto``, ``on``, ``off``: the utility's ``ensemble`` policy). The groups
    depend on these settings alone, so results do not depend on the executor.
    """

    game: Literal["release", "method"] = "release"
    variants: tuple[str, ...] = VARIANTS
    shadows: int = 8
    pipelines: int = 8
    variance: Literal["auto", "fixed", "per_example"] = "auto"
    query_flip: bool | None = None
    max_members: int = 2000
    max_nonmembers: int = 2000
    nonmember_splits: tuple[str, ...] = ("val", "test")
    duplicate_rms: float = 0.01
    null_control: bool = True
    null_holdout: float = 0.25
    rmia_offline_a: float = 0.3
    rmia_gamma: float = 1.0
    rmia_population: int = 0
    shadow_group: int = 4
    shadow_ensemble: Literal["auto", "on", "off"] = "auto"

    def __post_init__(self) -> None:
        from privbench_builtins.attacks._options import check_population_fields, check_target_fields

        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(f"variants must be among {', '.join(VARIANTS)}; got {', '.join(self.variants) or 'none'}")
        if self.shadows < 0 or self.shadows == 1:
            raise ValueError(f"shadows must be 0 (no reference pipelines) or at least 2, got {self.shadows}")
        if self.pipelines < 4:
            raise ValueError(f"pipelines must be at least 4 (each target needs IN and OUT references among the "
                             f"others), got {self.pipelines}")
        if min(self.max_members, self.max_nonmembers, self.resamples, self.rmia_population) < 0:
            raise ValueError("max_members, max_nonmembers, resamples and rmia_population must not be negative")
        if not 0 < self.null_holdout <= 0.5:
            raise ValueError(f"null_holdout must lie in (0, 0.5], got {self.null_holdout}")
        if not 0 <= self.rmia_offline_a <= 1 or self.rmia_gamma <= 0:
            raise ValueError("rmia_offline_a must lie in [0, 1] and rmia_gamma must be positive")
        if self.shadow_group < 1 or self.shadow_ensemble not in ("auto", "on", "off"):
            raise ValueError(f"shadow_group must be at least 1 and shadow_ensemble auto, on or off; got "
                             f"{self.shadow_group} and {self.shadow_ensemble!r}")
        check_population_fields(self)
        check_target_fields(self)


class MembershipInference(Attack):
    """Membership inference in the release or method game: loss, LiRA, RMIA, release distance, null control."""

    name = "mia"
    Config = MIAConfig

    def run(self, target: AuditTarget, config: MIAConfig, ctx: RunContext) -> list[ResultRow]:
        from privbench_builtins.attacks import _common as common
        from privbench_builtins.attacks import _games
        from privbench_builtins.attacks._pipelines import queries
        from privbench_builtins.attacks._population import build_population

        common.require_images(target.release)
        dataset = target.dataset
        splits = list(dict.fromkeys(config.nonmember_splits))
        population = build_population(dataset, splits, config.duplicate_rms, ctx)
        spec = common.target_spec(config)
        flip = config.query_flip if config.query_flip is not None else spec.augment and _flips(spec)
        variants = list(dict.fromkeys(config.variants))
        query_list = queries(flip) if any(v != "release_distance" for v in variants) else []
        needs_refs = any(v in NEEDS_REFERENCES for v in variants)
        if config.game == "method":
            game = _games.method_game(target, population, config, spec, query_list, ctx)
        else:
            game = _games.release_game(target, population, config, spec, query_list, ctx, needs_references=needs_refs)
        facts = {"game": game.name, "population": population.facts, **game.facts,
                 "queries": ["identity", "flip"][: len(query_list)] or "none (no variant queries a model)",
                 "release_provenance": "absent" if target.release.provenance is None else "present"}
        if game.pipelines and query_list:
            first = game.attacked[0]
            facts["target_recipe"] = game.pipelines[first.pipeline].recipe
            if first.references:
                facts["reference_recipe"] = game.pipelines[first.references[0]].recipe
        ctx.record("mia", facts)
        return self._rows(game, variants, config, ctx, facts, dataset, target.release.method)

    @staticmethod
    def _rows(game, variants, config, ctx, facts, dataset, method) -> list[ResultRow]:
        import numpy as np

        from privbench_builtins.attacks import _membership, _roc
        from privbench_builtins.attacks._common import seed_for

        rows: list[ResultRow] = []
        if not game.pipelines:
            for variant in variants:
                rows += [ResultRow.unavailable(f"{variant}.{s}", game.no_references or "no pipelines",
                                               higher_is_better=True, subset=sub, game=game.name)
                         for sub in ("all", "null") for s in _roc.STATISTICS]
            return rows
        obs = _membership.Observations(game)
        labels = obs.labels
        seed = seed_for(ctx, "mia", "bootstrap")
        pooled = {role: _membership.pool(game, role, dataset.class_names, seed_for(ctx, "mia", "subsets", role))
                  for role in ("null", "target")}
        curves = {}
        for variant in variants:
            per_role = {}
            for role, p in pooled.items():
                scores, notes, reason = [], {}, None
                for k in np.unique(p.groups):
                    result, notes = _membership.score(game, obs, game.attacked[int(k)], variant, config)
                    if isinstance(result, str):
                        reason = result
                        break
                    scores.append(result)
                per_role[role] = (reason, np.concatenate(scores) if reason is None and scores else None, notes)
            null_rows = []
            reason, null_scores, _ = per_role["null"]
            p = pooled["null"]
            if p.entries.size == 0 or reason is not None:
                why = reason or game.no_null or "no null control"
                null_rows = [ResultRow.unavailable(f"{variant}.{s}", why, higher_is_better=True, subset="null",
                                                   game=game.name) for s in _roc.STATISTICS]
            else:
                null_rows = _roc.variant_rows(
                    variant, p.member, null_scores, list(p.subsets.items()),
                    calibration=_roc.calibration_half(p.member, seed), resamples=config.resamples, seed=seed,
                    detail={"game": game.name, **facts.get("null", {}), "population": facts["population"]},
                    game=game.name, groups=p.groups, labels=labels[p.entries], clusters=p.entries)
            flag = _membership.confounding(null_rows, one_pool=game.name == "method")
            reason, main_scores, notes = per_role["target"]
            p = pooled["target"]
            if reason is not None or main_scores is None:
                rows += [ResultRow.unavailable(f"{variant}.{s}", reason or "no candidates", higher_is_better=True,
                                               subset=sub, game=game.name)
                         for sub in (p.subsets or {"all": None}) for s in _roc.STATISTICS]
            else:
                detail = {**notes, **flag, **{k: v for k, v in facts.items() if k != "null"}}
                rows += _roc.variant_rows(variant, p.member, main_scores, list(p.subsets.items()),
                                          calibration=_roc.calibration_half(p.member, seed),
                                          resamples=config.resamples, seed=seed, detail=detail, game=game.name,
                                          groups=p.groups, labels=labels[p.entries], clusters=p.entries)
                shown = p.subsets["all"]  # the class-matched candidates, as the 'all' rows
                fpr, tpr = _roc.roc_points(p.member[shown], main_scores[shown])
                curves[variant] = (fpr, tpr, _roc.auc(p.member[shown], main_scores[shown]))
            rows += null_rows
        if ctx.out_dir is not None and curves:
            from privbench_builtins.attacks._figures import roc_figure

            p = pooled["target"]
            members = int(p.member[p.subsets["all"]].sum())
            nonmembers = int((1 - p.member[p.subsets["all"]]).sum())
            title = (f"MIA, {game.name} game, {method} on {dataset.name} ({members} member and {nonmembers} "
                     f"non-member candidates{', pooled over targets' if game.name == 'method' else ''})")
            roc_figure(curves, nonmembers, ctx.out_dir / "roc.png", title)
        return rows


def _flips(spec) -> bool:
    """Whether the target's augmentation mirrors images (then the mirror is an in-distribution query)."""
    from privbench.augment import parse_strategy

    return "flip" in parse_strategy(spec.utility_config(1).dsa_strategy)


@hookimpl
def register_attacks(register):
    register(MembershipInference)
