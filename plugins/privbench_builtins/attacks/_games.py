"""The two membership games: which pipelines are trained, which one is attacked, and against whom.

``release`` (audit this one release). The target is the classifier a
recipient trains on the release, whose private set is the whole training
split. Its reference (shadow) pipelines re-run the release's pipeline on
private sets drawn like the target's: the same size and class mix, from the
pooled population of training and non-member images, each candidate IN as
even a share of them as the pool allows. Members are training images,
non-members real images the pipeline never saw, in equal numbers per class.

``method`` (how private is the method on this data?). M pipelines run on
random halves of the pooled population, class by class, each candidate IN
half of them; each pipeline in turn is the target, with the other M - 1 as
its references (leave-one-out, Carlini et al. 2022). Members and non-members
come from one pool, so no difference between splits can pass for membership.
Rows pool the targets and carry the spread across them. Leaving the target
out shifts the counts: a member of the target is IN one reference fewer than
a non-member, and a Gaussian fitted to fewer observations is a worse fit, so
LiRA's online score would favour non-members by construction. Every
candidate therefore uses as many IN references, and as many OUT references,
as the least-covered candidate has (M/2 - 1 each for M pipelines).

Both games carry a null control: the attack scored on two groups that the
attacked pipeline never saw. In the release game a null pipeline re-runs the
release's pipeline on the training split without a held-out part A, and A
(training images) is scored against non-members B: both unseen, so an AUC
away from 0.5 means the attack reads a difference between the training split
and the non-member splits, not membership. In the method game A and B are
two random halves of each target's OUT entries, drawn like its members and
non-members: the row shows the game's floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from privbench.api import AuditTarget, RunContext
from privbench.errors import UserError
from privbench.provenance import member_indices

from privbench_builtins.attacks._assignment import fixed_margin_sets, halves, inclusion_facts
from privbench_builtins.attacks._common import TargetSpec, matched_candidates, seed_for
from privbench_builtins.attacks._pipelines import Pipeline, run_pipeline, run_pipelines
from privbench_builtins.attacks._population import Population, train_without


@dataclass
class Attacked:
    """One pipeline attacked in a game: its candidates and the pipelines it is compared with."""

    pipeline: int
    references: list[int]
    members: np.ndarray  # population entries scored as members
    nonmembers: np.ndarray  # population entries scored as non-members
    role: str  # "target" or "null"
    seeded: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # members that seeded the release
    balanced: bool = False  # use as many IN (and OUT) references for every candidate (leave-one-out)

    def candidates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(entries, member flags, extra flags): the class-matched members, then the seeded members the
        matched sample missed (scored for their own subset only), then the non-members."""
        extra = np.setdiff1d(self.seeded, self.members)
        entries = np.concatenate([self.members, extra, self.nonmembers]).astype(np.int64)
        member = np.r_[np.ones(self.members.size + extra.size, np.int64), np.zeros(self.nonmembers.size, np.int64)]
        is_extra = np.zeros(entries.size, bool)
        is_extra[self.members.size : self.members.size + extra.size] = True
        return entries, member, is_extra


@dataclass
class Game:
    name: str
    population: Population
    pipelines: list[Pipeline]
    attacked: list[Attacked]
    facts: dict
    no_references: str | None = None  # why the attacks that need reference pipelines cannot run
    no_null: str | None = None  # why there is no null control


def _cannot_rebuild(what: str, exc: Exception, ctx: RunContext) -> str:
    if isinstance(exc, NotImplementedError):
        return f"this target cannot re-run its release pipeline for {what}: {exc}"
    ctx.warn(f"mia: {what} could not be trained: {exc}")
    return str(exc)


def _rng(ctx: RunContext, *purpose) -> np.random.Generator:
    return np.random.default_rng(seed_for(ctx, "mia", *purpose))


def _matched(population: Population, member_pool: np.ndarray, nonmember_pool: np.ndarray, cap_m: int, cap_u: int,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = population.labels
    if member_pool.size == 0 or nonmember_pool.size == 0:
        return member_pool[:0], nonmember_pool[:0]
    m, u = matched_candidates(labels[torch.from_numpy(member_pool)], labels[torch.from_numpy(nonmember_pool)],
                              cap_m, cap_u, seed)
    return member_pool[m.numpy()], nonmember_pool[u.numpy()]


def release_game(target: AuditTarget, population: Population, config, spec: TargetSpec, query_list,
                 ctx: RunContext, *, needs_references: bool) -> Game:
    dataset = target.dataset
    train = population.is_train
    member_pool, nonmember_pool = np.flatnonzero(train), np.flatnonzero(~train)
    members, nonmembers = _matched(population, member_pool, nonmember_pool, config.max_members,
                                   config.max_nonmembers, seed_for(ctx, "mia", "candidates"))
    seeded_rows = member_indices(target.release.provenance)  # in range: Release.check_against saw to it
    seeded = np.unique(population.train_pool[np.asarray(seeded_rows, dtype=np.int64)]) if seeded_rows else \
        np.empty(0, dtype=np.int64)
    images = population.images
    pipelines = [run_pipeline(target, "target", dataset.train, train.copy(), population.train_pool, images, spec,
                              query_list, ctx.seed, ctx, release=target.release)]
    facts = {"target_private_set": len(dataset.train),
             "target_class_counts": dataset.train.class_counts(dataset.num_classes)}
    game = Game("release", population, pipelines, [], facts)
    refs: list[int] = []
    if needs_references and config.shadows > 0:
        take = dataset.train.class_counts(dataset.num_classes)
        sets = fixed_margin_sets(population.labels.numpy(), take, config.shadows,
                                 seed_for(ctx, "mia", "release", "shadow-sets"))
        scored = np.concatenate([members, nonmembers])
        facts["shadows"] = {**inclusion_facts(sets, scored), "drawn_from": "the de-duplicated pool of training "
                            "and non-member images, each shadow with the target's class counts",
                            "class_counts": population.class_counts(sets[0])}
        items = [(f"shadow {s}", np.flatnonzero(sets[s]), sets[s], seed_for(ctx, "mia", "release", "shadow", s))
                 for s in range(config.shadows)]
        try:
            shadows = run_pipelines(items, target, population, spec, query_list, config, ctx, "shadow pipelines")
            pipelines += shadows
            refs = list(range(1, len(pipelines)))
        except (NotImplementedError, UserError) as exc:
            game.no_references = _cannot_rebuild("shadow models", exc, ctx)
            del pipelines[1:]
            refs = []
    elif needs_references:
        game.no_references = "no shadow pipelines (shadows=0)"
    game.attacked.append(Attacked(0, refs, members, nonmembers, "target", seeded))
    if config.null_control:
        _release_null(game, target, config, spec, query_list, ctx, refs)
    else:
        game.no_null = "the null control is off (null_control=false)"
    return game


def null_groups(population: Population, train_counts: list[int], holdout: float,
                ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
    """A: training images to hold out of the null pipeline (``holdout`` of each class, at most as many as there
    are non-members); B: as many non-members per class. Seeded by the run alone, so every attack of a run that
    asks for the same null draws the same groups and shares the null pipeline."""
    rng = np.random.default_rng(seed_for(ctx, "null", "groups"))
    labels = population.labels.numpy()
    train = population.is_train
    held_out, controls = [], []
    for c in range(population.num_classes):
        a_pool = np.flatnonzero(train & (labels == c))
        b_pool = np.flatnonzero(~train & (labels == c))
        k = min(b_pool.size, int(train_counts[c] * holdout), a_pool.size)
        if k:
            held_out.append(rng.choice(a_pool, k, replace=False))
            controls.append(rng.choice(b_pool, k, replace=False))
    if not held_out:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.sort(np.concatenate(held_out)), np.sort(np.concatenate(controls))


def null_pipeline(target: AuditTarget, population: Population, a: np.ndarray, spec, query_list,
                  ctx: RunContext) -> Pipeline:
    """The release's pipeline re-run on the training split without A (and without every copy of A)."""
    private = train_without(target.dataset, population, a)
    keep = ~np.isin(population.train_pool, a)
    held = population.is_train & ~np.isin(np.arange(len(population)), a)
    return run_pipeline(target, "null", private, held, population.train_pool[keep], population.images, spec,
                        query_list, seed_for(ctx, "null", "pipeline"), ctx)


def null_facts(pipeline: Pipeline, a: np.ndarray, b: np.ndarray, holdout: float) -> dict:
    return {"pipeline": "the release pipeline re-run on the training split without group A",
            "private_set": int(pipeline.private_to_pool.size), "held_out_A": int(a.size),
            "nonmembers_B": int(b.size), "held_out_fraction": holdout,
            "groups": "A: training images the null pipeline never saw; B: non-members, as many per class"}


def _release_null(game: Game, target: AuditTarget, config, spec, query_list, ctx: RunContext, refs: list[int]) -> None:
    """A: training images held out of a null pipeline; B: non-members as many per class; neither seen by it."""
    dataset = target.dataset
    a, b = null_groups(game.population, dataset.train.class_counts(dataset.num_classes), config.null_holdout, ctx)
    if not a.size:
        game.no_null = "no class has both training images to hold out and non-members"
        return
    try:
        pipeline = null_pipeline(target, game.population, a, spec, query_list, ctx)
    except (NotImplementedError, UserError) as exc:
        game.no_null = _cannot_rebuild("the null pipeline", exc, ctx)
        return
    game.pipelines.append(pipeline)
    game.attacked.append(Attacked(len(game.pipelines) - 1, refs, a, b, "null"))
    game.facts["null"] = null_facts(pipeline, a, b, config.null_holdout)


def method_game(target: AuditTarget, population: Population, config, spec: TargetSpec, query_list,
                ctx: RunContext) -> Game:
    labels = population.labels.numpy()
    take = halves(labels, population.num_classes, config.pipelines)
    sets = fixed_margin_sets(labels, take, config.pipelines, seed_for(ctx, "mia", "method", "sets"))
    game = Game("method", population, [], [], {
        "pipelines": {**inclusion_facts(sets), "drawn_from": "random halves of every class of the de-duplicated "
                      "pool of training and non-member images", "class_counts": population.class_counts(sets[0])}})
    items = [(f"pipeline {i}", np.flatnonzero(sets[i]), sets[i], seed_for(ctx, "mia", "method", "pipeline", i))
             for i in range(config.pipelines)]
    try:
        game.pipelines = run_pipelines(items, target, population, spec, query_list, config, ctx,
                                       "method-game pipelines")
    except (NotImplementedError, UserError) as exc:
        game.pipelines = []
        game.no_references = game.no_null = _cannot_rebuild("the method game's pipelines", exc, ctx)
        return game
    for i, pipeline in enumerate(game.pipelines):
        others = [j for j in range(config.pipelines) if j != i]
        inside, outside = np.flatnonzero(pipeline.held), np.flatnonzero(~pipeline.held)
        members, nonmembers = _matched(population, inside, outside, config.max_members, config.max_nonmembers,
                                       seed_for(ctx, "mia", "method", "candidates", i))
        seeded = pipeline.seeded_members
        game.attacked.append(Attacked(i, others, members, nonmembers, "target", seeded, balanced=True))
        if config.null_control:
            rng = _rng(ctx, "method", "null-groups", i)
            a, b = [], []
            for c in range(population.num_classes):
                out_c = rng.permutation(outside[labels[outside] == c])
                half = out_c.size // 2
                a.append(out_c[:half])
                b.append(out_c[half : 2 * half])
            game.attacked.append(Attacked(i, others, np.sort(np.concatenate(a)), np.sort(np.concatenate(b)), "null",
                                          balanced=True))
    if config.null_control:
        game.facts["null"] = {"groups": "A and B: two random halves, class by class, of each target's OUT entries "
                              "(drawn as its members and non-members are)"}
    else:
        game.no_null = "the null control is off (null_control=false)"
    return game
