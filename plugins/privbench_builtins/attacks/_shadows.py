"""Shadow runs for LiRA: the release's whole pipeline re-run on random halves of the population.

The population is every member and every non-member, pooled. Each candidate is
IN the private set of exactly half of the shadows (see
:func:`balanced_assignment`). A shadow run builds a shadow dataset whose
private set is its IN half, calls ``target.rebuild`` (the same distiller with
the same config; for the ``original`` release plain training), trains a
shadow target model on the shadow release with the target's protocol, and
records phi for every scored candidate under every query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from privbench.api import AuditTarget, RunContext, Split
from privbench.errors import UserError

from privbench_builtins.attacks._common import TargetSpec, seed_for, target_model
from privbench_builtins.attacks._lira import balanced_assignment, logit_confidence


@dataclass
class ShadowObservations:
    phi: np.ndarray  # shadows x candidates x queries
    is_in: np.ndarray  # shadows x candidates
    release_sizes: list[int]


def query_phi(model, images: torch.Tensor, labels: torch.Tensor, queries, ctx: RunContext) -> np.ndarray:
    """phi of ``model`` on each image under each query transform: candidates x queries."""
    from privbench.training import predict_logits

    return np.stack([logit_confidence(predict_logits(model, q(images), ctx), labels) for q in queries], axis=1)


def run_shadows(
    target: AuditTarget,
    population: Split,
    scored: torch.Tensor,
    shadows: int,
    spec: TargetSpec,
    queries,
    ctx: RunContext,
) -> ShadowObservations:
    """Train ``shadows`` shadow pipelines; phi of the ``scored`` population rows under each.

    Raises NotImplementedError when the target cannot re-run its pipeline.
    """
    n = len(population)
    assignment = balanced_assignment(n, shadows, seed_for(ctx, "lira", "assignment"))
    images, labels = population.images[scored], population.labels[scored]
    phis, sizes = [], []
    with ctx.progress.task("LiRA shadow pipelines", total=shadows) as bar:
        for s in range(shadows):
            seed = seed_for(ctx, "lira", "shadow", s)
            shadow_ctx = ctx.derive(seed=seed)
            private = population.subset(torch.from_numpy(np.flatnonzero(assignment[s])))
            shadow_data = target.dataset.with_train(private, name_suffix=f"[shadow {s}]")
            try:
                release = target.rebuild(shadow_data, shadow_ctx)
            except UserError as exc:
                raise UserError(f"LiRA shadow {s}: re-running the release pipeline on a random half failed: "
                                f"{exc}") from exc
            model = target_model(release, shadow_data, spec, shadow_ctx, seed=seed, keep=False)
            phis.append(query_phi(model, images, labels, queries, ctx))
            sizes.append(len(release))
            bar.advance(1, shadow=s)
    return ShadowObservations(np.stack(phis), assignment[:, scored.numpy()], sizes)
