"""Membership scores of a game's attacked pipelines, and the rows that report them.

Each variant turns observations into one score per candidate, higher meaning
"more likely a member":

* ``loss``: the attacked model's log p_y (minus its cross-entropy loss);
* ``lira_offline`` / ``lira_online``: LiRA's Gaussian tests against the
  reference pipelines that did not (offline) or did and did not (online) hold
  the candidate (see ``_lira``);
* ``rmia``: RMIA's pairwise likelihood ratios against population samples the
  attacked pipeline never saw (see ``_rmia``);
* ``release_distance``: minus the pixel distance to the nearest released image.

Rows: ``all``, per class, per source of non-members (release game), the
members that seeded the release (``init_members``) and the ``null`` control.
A variant whose null AUC interval excludes 0.5 has every row marked
``confounded``: it reads a difference between the groups, not membership.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from privbench.api import ResultRow

from privbench_builtins.attacks import _lira, _rmia
from privbench_builtins.attacks._games import Attacked, Game

VARIANTS = ("loss", "lira_offline", "lira_online", "rmia", "release_distance")
NEEDS_REFERENCES = ("lira_offline", "lira_online", "rmia")
PER_EXAMPLE_FROM = 64
"""From this many reference pipelines on, ``variance=auto`` fits one variance per candidate (the LiRA paper)."""


@dataclass
class Pooled:
    """The candidates of one role (target or null) across the attacked pipelines, and the subsets of their rows.

    ``groups`` is each candidate's attacked pipeline (an index into the game's
    ``attacked``), ``entries`` its population entry.
    """

    entries: np.ndarray
    member: np.ndarray
    groups: np.ndarray
    subsets: dict[str, np.ndarray]


class Observations:
    """Per pipeline, the statistics every variant reads, computed once over the population."""

    def __init__(self, game: Game):
        labels = game.population.labels
        self.labels = labels.numpy()
        self.held = np.stack([p.held for p in game.pipelines]) if game.pipelines else np.zeros((0, len(labels)), bool)
        self.phi, self.prob, self.logp, self.distance = [], [], [], []
        for p in game.pipelines:
            self.distance.append(p.release_distance)
            if p.logits is None:  # no variant at hand queries a model
                self.phi.append(None), self.prob.append(None), self.logp.append(None)
                continue
            q, n, _ = p.logits.shape
            self.phi.append(np.stack([_lira.logit_confidence(p.logits[k], labels) for k in range(q)], axis=1))
            self.prob.append(_rmia.true_label_probability(p.logits, self.labels))
            self.logp.append(torch.from_numpy(p.logits[0]).log_softmax(1).gather(1, labels.view(-1, 1))
                             .squeeze(1).numpy())


def score(game: Game, obs: Observations, att: Attacked, variant: str, config) -> tuple[np.ndarray | str, dict]:
    """Scores of ``att``'s candidates (in the order of ``att.candidates()``) under ``variant``, or why none."""
    cand = att.candidates()[0]
    t = att.pipeline
    if variant == "loss":
        return obs.logp[t][cand], {"score": "log p_y of the attacked model (minus its cross-entropy loss)"}
    if variant == "release_distance":
        return -obs.distance[t][cand], {"score": "minus the Euclidean pixel distance to the nearest released image"}
    refs = att.references
    if not refs:
        return game.no_references or "no reference pipelines", {}
    held = obs.held[refs][:, cand]
    use_in, use_out = _reference_masks(held, att)
    if variant in ("lira_offline", "lira_online"):
        return _lira_scores(obs, att, cand, use_in, use_out, variant, config)
    return _rmia_scores(obs, att, cand, use_out, config)


def _reference_masks(held: np.ndarray, att: Attacked) -> tuple[np.ndarray, np.ndarray]:
    """Which references each candidate is compared with on the IN and the OUT side (references x candidates).

    All of them, or, for a leave-one-out target (``att.balanced``), a seeded
    choice of as many per candidate as the least-covered candidate has.
    """
    if not att.balanced or held.shape[1] == 0:
        return held, ~held
    rng = np.random.default_rng(att.pipeline)
    masks = []
    for side in (held, ~held):
        k = int(side.sum(axis=0).min())
        noise = np.where(side, rng.random(side.shape), np.inf)
        ranks = noise.argsort(axis=0).argsort(axis=0)
        masks.append(side & (ranks < k))
    return masks[0], masks[1]


def _lira_scores(obs, att, cand, use_in, use_out, variant, config):
    refs = att.references
    variance = config.variance if config.variance != "auto" else (
        "fixed" if len(refs) < PER_EXAMPLE_FROM else "per_example")
    need = 2 if variance == "per_example" else 1
    sides = [("OUT", use_out)] + ([("IN", use_in)] if variant == "lira_online" else [])
    for side, mask in sides:
        short = int((mask.sum(axis=0) < need).sum())
        if short:
            return (f"{short} candidates have fewer than {need} {side} reference pipeline(s) among {len(refs)}: "
                    f"use more shadow pipelines"), {}
    phi_refs = np.stack([obs.phi[r][cand] for r in refs])  # refs x candidates x queries
    target_phi = obs.phi[att.pipeline][cand]
    fit_out = _lira.fit_gaussians(phi_refs, use_out, variance)
    note = {"references": len(refs), "variance": variance, "variance_estimate_out": fit_out.estimate,
            "out_references_per_candidate": [int(use_out.sum(0).min()), int(use_out.sum(0).max())],
            "references_balanced": att.balanced}
    if variant == "lira_offline":
        return _lira.offline_scores(target_phi, fit_out), {
            **note, "score": "mean over queries of log Pr[Z <= phi], Z ~ N(OUT references)"}
    fit_in = _lira.fit_gaussians(phi_refs, use_in, variance)
    return _lira.online_scores(target_phi, fit_in, fit_out), {
        **note, "variance_estimate_in": fit_in.estimate,
        "in_references_per_candidate": [int(use_in.sum(0).min()), int(use_in.sum(0).max())],
        "score": "mean over queries of the log likelihood ratio N(IN) / N(OUT)"}


def _rmia_scores(obs, att, cand, use_out, config):
    refs = att.references
    prob_refs = np.stack([obs.prob[r] for r in refs])  # refs x population
    pop_x = _rmia.population_probability(prob_refs[:, cand], use_out, config.rmia_offline_a)
    short = int(np.isnan(pop_x).sum())
    if short:
        return f"{short} candidates have no OUT reference pipeline among {len(refs)}: use more shadow pipelines", {}
    z = np.flatnonzero(~obs.held[att.pipeline])
    if config.rmia_population and z.size > config.rmia_population:
        rng = np.random.default_rng(config.rmia_population + att.pipeline)
        z = np.sort(rng.choice(z, config.rmia_population, replace=False))
    pop_z = _rmia.population_probability(prob_refs[:, z], _reference_masks(obs.held[refs][:, z], att)[1],
                                         config.rmia_offline_a)
    usable = ~np.isnan(pop_z)
    z, pop_z = z[usable], pop_z[usable]
    if z.size == 0:
        return "no population sample has an OUT reference pipeline", {}
    position = np.searchsorted(z, cand)
    same = np.where((position < z.size) & (z[np.minimum(position, z.size - 1)] == cand), position, -1)
    t = att.pipeline
    scores = _rmia.rmia_scores(obs.prob[t][cand], pop_x, obs.prob[t][z], pop_z, config.rmia_gamma, same)
    return scores, {"references": len(refs), "offline_a": config.rmia_offline_a, "gamma": config.rmia_gamma,
                    "population_z": int(z.size), "score": "fraction of population samples z with LR(x, z) > gamma; "
                    "Pr(x) = ((1 + a) mean over OUT references + 1 - a) / 2"}


def pool(game: Game, role: str, class_names, rng_seed: int) -> Pooled:
    """The candidates of every attacked pipeline of ``role``, with the subsets of their rows."""
    chosen = [(k, a) for k, a in enumerate(game.attacked) if a.role == role]
    labels = game.population.labels.numpy()
    source = game.population.source
    entries, member, groups, per_target = [], [], [], []
    rng = np.random.default_rng(rng_seed)
    for k, att in chosen:
        cand, is_member, extra = att.candidates()
        matched = ~extra  # the seeded members beyond the class-matched sample count in their own subset only
        masks = {"all": matched} if role == "target" else {"null": matched}
        if role == "target":
            for c, name in enumerate(class_names):
                masks[f"class={name}"] = matched & (labels[cand] == c)
            splits = game.population.facts["nonmember_splits"]
            if game.name == "release" and len(splits) > 1:
                for split in splits:
                    masks[f"nonmembers={split}"] = _source_subset(cand, is_member, labels, source, split, rng,
                                                                  matched)
            if att.seeded.size:
                masks["init_members"] = _seeded_subset(cand, is_member, labels, att.seeded, rng)
        entries.append(cand)
        member.append(is_member)
        groups.append(np.full(cand.size, k))
        per_target.append(masks)
    if not entries:
        return Pooled(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), {})
    names = list(dict.fromkeys(name for masks in per_target for name in masks))
    stacked = {name: np.concatenate([masks.get(name, np.zeros(e.size, bool)) for masks, e in zip(per_target, entries)])
               for name in names}  # a subset some targets lack (no seeded members) is empty there
    return Pooled(np.concatenate(entries), np.concatenate(member), np.concatenate(groups), stacked)


def _source_subset(cand, is_member, labels, source, split, rng, matched) -> np.ndarray:
    """Members against the non-members of one split, with equal counts per class on both sides."""
    mask = np.zeros(cand.size, bool)
    for c in np.unique(labels[cand]):
        mem = np.flatnonzero((is_member == 1) & matched & (labels[cand] == c))
        non = np.flatnonzero((is_member == 0) & (labels[cand] == c) & (source[cand] == split))
        k = min(mem.size, non.size)
        mask[rng.choice(mem, k, replace=False)] = True
        mask[rng.choice(non, k, replace=False)] = True
    return mask


def _seeded_subset(cand, is_member, labels, seeded, rng) -> np.ndarray:
    """The members that seeded the release, all of them, against non-members in the same class proportions."""
    mask = np.zeros(cand.size, bool)
    mine = (is_member == 1) & np.isin(cand, seeded)
    mask[mine] = True
    counts = {c: int((mine & (labels[cand] == c)).sum()) for c in np.unique(labels[cand[mine]])}
    pools = {c: np.flatnonzero((is_member == 0) & (labels[cand] == c)) for c in counts}
    factor = max(1, min(pools[c].size // counts[c] for c in counts))
    for c, k in counts.items():
        take = min(pools[c].size, factor * k)
        mask[rng.choice(pools[c], take, replace=False)] = True
    return mask


def confounding(null_rows: list[ResultRow], one_pool: bool = False) -> dict:
    """Whether the null control's AUC interval excludes 0.5, and its figures.

    ``one_pool``: members and non-members were drawn from one pool in the same
    way (the method game), so no difference between them but membership exists
    to be read; the null row then shows the game's floor, and an interval that
    misses 0.5 is the chance a 95% interval leaves, not a confound.
    """
    auc = next((r for r in null_rows if r.measure.endswith(".auc") and r.status == "ok"), None)
    if auc is None:
        reason = next((r.detail.get("reason") for r in null_rows if r.measure.endswith(".auc")), None)
        return {"null_control": f"unavailable: {reason}" if reason else "unavailable"}
    excluded = auc.ci_low is not None and (auc.ci_low > 0.5 or auc.ci_high < 0.5)
    figures = {"null_auc": [auc.value, auc.ci_low, auc.ci_high]}
    if one_pool:
        return {**figures, "confounded": False,
                "null_control": "members and non-members are drawn alike from one pool, so nothing but membership "
                                "separates them; the null row shows the floor" + (
                                    " (its interval misses 0.5 by the chance a 95% interval leaves)" if excluded
                                    else " (its interval contains 0.5)")}
    return {**figures, "confounded": bool(excluded),
            "null_control": ("its AUC interval excludes 0.5: the attack reads a difference between the groups, "
                             "not membership" if excluded else "its AUC interval contains 0.5")}
