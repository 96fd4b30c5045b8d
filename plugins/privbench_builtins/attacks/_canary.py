"""The canary experiment: choose canaries, insert each with probability 1/2, re-run the pipeline, score, bound.

Canaries come from the non-member splits with every copy of a training image
removed (the audit population of ``mia``), so a canary left out is truly
absent. Run ``j`` draws its own canaries (distinct across runs), the coin
flips that insert them, and a pipeline seed, all from the run's seed; the
private set is the whole training split plus the inserted canaries. The class
sizes are declared public before the coins are flipped (the training counts
plus half of each class's canaries), so a private mechanism that normalises
by class size reads the declaration, not a count that depends on the coins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from privbench.api import AuditTarget, Release, ResultRow, RunContext, Split
from privbench.errors import UserError

from privbench_builtins.attacks._common import nearest, seed_for, target_model, target_spec


@dataclass
class Experiment:
    """Every canary of every run: its image, label, run, whether it went in, and its scores."""

    images: torch.Tensor
    labels: torch.Tensor
    run: np.ndarray
    inserted: np.ndarray
    scores: dict[str, np.ndarray]
    theory_epsilon: float
    delta: float
    releases: list[Release]
    facts: dict = field(default_factory=dict)


def _rng(ctx: RunContext, *purpose) -> np.random.Generator:
    return np.random.default_rng(seed_for(ctx, "canary", *purpose))


def choose_canaries(target: AuditTarget, config, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, dict]:
    """Images, (mis)labels and run of every canary, drawn from non-members that copy no training image."""
    from privbench_builtins.attacks._population import build_population

    dataset = target.dataset
    splits = list(dict.fromkeys(config.nonmember_splits))
    population = build_population(dataset, splits, config.duplicate_rms, ctx)
    pool = np.flatnonzero(~population.is_train)
    per_run = config.canaries
    if pool.size < per_run * config.runs:
        per_run = pool.size // config.runs
        if per_run < 10:
            raise UserError(f"canary: {config.runs} run(s) of at least 10 canaries need {10 * config.runs} "
                            f"non-member images that copy no training image; the data has {pool.size}")
        ctx.warn(f"canary: only {pool.size} usable non-member images, so {per_run} canaries per run instead of "
                 f"{config.canaries}")
    chosen = _rng(ctx, "choose").permutation(pool)[: per_run * config.runs]
    images = population.images[torch.from_numpy(chosen)]
    labels = population.labels[torch.from_numpy(chosen)].clone()
    k = dataset.num_classes
    if config.kind == "mislabeled":
        shift = torch.from_numpy(_rng(ctx, "labels").integers(1, k, size=chosen.size))
        labels = (labels + shift) % k
    run = np.repeat(np.arange(config.runs), per_run)
    facts = {"canaries_per_run": int(per_run), "runs": int(config.runs), "kind": config.kind,
             "drawn_from": splits, "population": population.facts}
    return images, labels, run, facts


def private_set(train: Split, images: torch.Tensor, labels: torch.Tensor, inserted: np.ndarray) -> Split:
    """The training split plus the inserted canaries (attributes the canaries lack are dropped for this run)."""
    take = torch.from_numpy(np.flatnonzero(inserted))
    return Split.concat([train, Split(images[take], labels[take])])


def declared_counts(train: Split, labels: torch.Tensor, num_classes: int) -> tuple[int, ...]:
    """Training counts plus half of each class's canaries (rounded up): fixed before the coins are flipped."""
    base = train.class_counts(num_classes)
    canaries = torch.bincount(labels, minlength=num_classes).tolist()
    return tuple(int(b + math.ceil(c / 2)) for b, c in zip(base, canaries))


def _guarantee(release: Release) -> tuple[float, float | None]:
    """The (epsilon, delta) a release's manifest states; (inf, None) when it states none."""
    from privbench.accounting import stated_guarantee

    epsilon, delta = stated_guarantee(release.manifest)
    return (math.inf if epsilon is None else epsilon), delta


def distance_scores(images: torch.Tensor, labels: torch.Tensor, release: Release, ctx: RunContext) -> np.ndarray:
    """Minus the pixel distance to the nearest released image of the canary's class (any class if it has none)."""
    out = np.empty(labels.shape[0])
    for c in labels.unique().tolist():
        rows = torch.nonzero(labels == c).flatten()
        refs = release.images[release.labels.cpu() == c]
        if refs.shape[0] == 0:
            refs = release.images
        d, _ = nearest(images[rows], refs, ctx)
        out[rows.numpy()] = -d.double().numpy()
    return out


def _canary_run(shared: dict, item: tuple, ctx: RunContext) -> tuple:
    """One run of the experiment, for :meth:`RunContext.map`: its release, guarantee and canary scores."""
    from dataclasses import replace

    from privbench_builtins.attacks._lira import logit_confidence
    from privbench_builtins.attacks._pipelines import observe, rebuild_release

    j, own_index, inserted, seed = item
    dataset, images, labels = shared["dataset"], shared["images"], shared["labels"]
    target = replace(shared["target"], dataset=dataset)
    own_index = torch.from_numpy(own_index)
    counts = declared_counts(dataset.train, labels[own_index], dataset.num_classes)
    private = private_set(dataset.train, images[own_index], labels[own_index], inserted)
    name = f"canary run {j + 1} of {shared['runs']}"
    release = rebuild_release(target, private, seed, ctx, name, public_class_counts=counts)
    distance = distance_scores(images[own_index], labels[own_index], release, ctx)
    phi = None
    if shared["needs_model"]:
        data = dataset.with_train(private, name_suffix=f"[{name}]", public_class_counts=counts)
        model = target_model(release, data, shared["spec"], ctx.derive(seed=seed), seed=seed, keep=False)
        phi = logit_confidence(observe(model, images, [lambda x: x], ctx)[0], labels)
    return release, _guarantee(release), distance, phi


def run_experiment(target: AuditTarget, config, ctx: RunContext) -> Experiment:
    """All runs: rebuild each run's release, and observe every canary under it (runs are independent tasks)."""
    from dataclasses import replace

    dataset = target.dataset
    images, labels, run, facts = choose_canaries(target, config, ctx)
    inserted = _rng(ctx, "coins").random(run.size) < 0.5
    spec = target_spec(config)
    needs_model = any(s != "release_distance" for s in config.scores)
    distance = np.empty(run.size)
    phi = np.empty((config.runs, run.size)) if needs_model else None
    cost = f"{config.runs} release pipeline(s){' and target model(s)' if needs_model else ''}"
    shared = {"dataset": dataset, "target": replace(target, dataset=None, metrics={}), "images": images,
              "labels": labels, "spec": spec, "needs_model": needs_model, "runs": config.runs}
    items = [(j, np.flatnonzero(run == j), inserted[run == j], seed_for(ctx, "canary", "pipeline", j))
             for j in range(config.runs)]
    outcomes = ctx.map(_canary_run, items, shared=shared, label=f"canary runs ({run.size} canaries; {cost})")
    releases, guarantees = [], []
    for j, (release, guarantee, own_distance, own_phi) in enumerate(outcomes):
        releases.append(release)
        guarantees.append(guarantee)
        distance[run == j] = own_distance
        if needs_model:
            phi[j] = own_phi
    scores = {}
    for name in config.scores:
        if name == "release_distance":
            scores[name] = distance
        elif name == "loss":
            scores[name] = phi[run, np.arange(run.size)]
        else:
            scores[name] = _lira_offline(phi, run)
    epsilons = [e for e, _ in guarantees]
    deltas = [d for _, d in guarantees if d is not None]
    theory = math.inf if any(math.isinf(e) for e in epsilons) else max(epsilons)
    delta = config.delta or (max(deltas) if deltas else 1.0 / (10 * max(1, len(dataset.train))))
    facts.update({"inserted": int(inserted.sum()), "declared_class_counts": "training counts plus half of each "
                  "class's canaries, fixed before the coins", "target_recipe": spec.recipe(len(releases[0]))
                  if needs_model else "none (no model-based score)"})
    return Experiment(images, labels, run, inserted, scores, theory, float(delta), releases, facts)


def _lira_offline(phi: np.ndarray, run: np.ndarray) -> np.ndarray:
    """Each canary's confidence under its own run's model against its confidences under the others (all OUT)."""
    from privbench_builtins.attacks._lira import fit_gaussians, offline_scores

    runs = phi.shape[0]
    out_mask = np.arange(runs)[:, None] != run[None, :]
    fit = fit_gaussians(phi[:, :, None], out_mask, "fixed")
    return offline_scores(phi[run, np.arange(run.size)], fit)


def rows(experiment: Experiment, config, ctx: RunContext) -> list[ResultRow]:
    """The bound (best of the family, and per score), the guessing accuracy behind it, and each score's AUC."""
    from privbench.auditing import epsilon_lower_bound
    from privbench.stats import bootstrap_ci, exact_rate_ci

    from privbench_builtins.attacks._roc import auc

    e = experiment
    bound = epsilon_lower_bound(e.scores, e.inserted, e.delta, config.fractions, config.confidence,
                                seed=seed_for(ctx, "canary", "ties"))
    theory = "inf" if math.isinf(e.theory_epsilon) else e.theory_epsilon
    violation = bound.epsilon > e.theory_epsilon * (1 + 1e-9)
    common = {"confidence": config.confidence, "delta": e.delta, "theoretical_epsilon": theory,
              "canaries": bound.m, "family": bound.family, "alpha_per_test": bound.alpha,
              "analysis": "one run (Steinke, Nasr & Jagielski 2023), runs pooled, Bonferroni over scores x "
                          "fractions", "interval": f"one-sided: [bound, inf) at {config.confidence:.0%}",
              **e.facts}
    if violation:
        ctx.warn(f"canary: the empirical lower bound {bound.epsilon:.3f} exceeds the release's guarantee "
                 f"epsilon = {e.theory_epsilon:.3f}: the mechanism or its accounting is wrong")
    out = [ResultRow("canary.epsilon_lower", bound.epsilon, bound.epsilon, math.inf, bound.m, True,
                     detail={**common, "score": bound.score, "fraction": bound.fraction, "guesses": bound.r,
                             "right": bound.v, "violation": violation,
                             "per_score": {k: v for k, v in bound.per_score.items()}})]
    member = e.inserted.astype(np.int64)
    seed = seed_for(ctx, "canary", "bootstrap")
    for name, own in bound.per_score.items():
        detail = {**common, "fraction": own["fraction"], "guesses": own["r"], "right": own["v"]}
        out.append(ResultRow(f"canary.{name}.epsilon_lower", own["epsilon"], own["epsilon"], math.inf, bound.m, True,
                             detail=detail))
        rate = exact_rate_ci(own["v"], own["r"])
        out.append(ResultRow(f"canary.{name}.guess_accuracy", rate.value, rate.ci_low, rate.ci_high, rate.n, True,
                             detail={**detail, "chance": 0.5}))
        counts = {"inserted": int(member.sum()), "left_out": int((1 - member).sum())}
        if min(counts.values()) == 0:
            out.append(ResultRow.insufficient(f"canary.{name}.auc", "the coins put every canary on one side",
                                              n=int(member.size), higher_is_better=True))
            continue
        est = bootstrap_ci(auc, member, e.scores[name], resamples=config.resamples, seed=seed, strata=member)
        out.append(ResultRow(f"canary.{name}.auc", est.value, est.ci_low, est.ci_high, est.n, True, detail=counts))
    return out
