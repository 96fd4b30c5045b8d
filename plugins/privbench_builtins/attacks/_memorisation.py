"""Memorisation: how close is each released image to the nearest patient image?

A distilled image initialised from a patient's X-ray may still be that X-ray.
For each released image the nearest private training image is found twice:

* in pixel space (Euclidean distance), which finds copies and light edits;
* in a feature space: the embedding (flattened features before the classifier)
  of a freshly initialised, seeded ConvNet of the distillation literature
  (width 128, depth 3, instance norm, inputs normalised with the private set's
  statistics), compared by cosine distance. That is the family of networks DM
  matches distributions under, so an image that drifted from its
  initialisation in pixels but kept its features is still found; it needs no
  training and no downloaded weights, and is the same on every machine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from privbench.api import Dataset, RunContext

from privbench_builtins.attacks._common import nearest

FEATURE_SPACE = "random-init ConvNet embedding (width 128, depth 3, instance norm), cosine distance"


def embedder(dataset: Dataset, seed: int, ctx: RunContext):
    """A function from images to L2-normalised ConvNet embeddings (CPU)."""
    from privbench.nets import channel_stats, make_model

    mean, std = channel_stats(dataset.train.images)
    net = make_model("convnet", dataset.channels, dataset.num_classes, dataset.image_shape[1:], seed=seed,
                     mean=mean, std=std).to(ctx.torch_device).eval()

    @torch.no_grad()
    def embed(images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        out = []
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(ctx.torch_device, torch.float32)
            out.append(F.normalize(net.embed(x).float(), dim=1).cpu())
        return torch.cat(out)

    return embed


def nearest_private(released: torch.Tensor, dataset: Dataset, seed: int, ctx: RunContext) -> dict[str, tuple]:
    """``{"pixel": (distance, index), "feature": (distance, index)}`` into ``dataset.train`` per released image."""
    private = dataset.train.images
    out = {"pixel": nearest(released, private, ctx)}
    embed = embedder(dataset, seed, ctx)
    out["feature"] = nearest(embed(released), embed(private), ctx)
    return out


def near_copy_flags(values: list[torch.Tensor], threshold: float, higher_is_better: bool) -> torch.Tensor:
    """True where any of the per-image values (one tensor per neighbour found) reaches the threshold."""
    stacked = torch.stack([v.double() for v in values])
    best = stacked.max(0).values if higher_is_better else stacked.min(0).values
    return best >= threshold if higher_is_better else best <= threshold


def verbatim_row(pixel_distance: torch.Tensor, values: int, threshold_rms: float):
    """The fraction of released images that are copies of a private image (RMS distance within the
    duplicate threshold, or byte-identical when it is 0), with its exact binomial interval."""
    from privbench.api import ResultRow
    from privbench.stats import exact_rate_ci

    rms = pixel_distance.double() / values**0.5
    limit = max(threshold_rms, 1e-7)  # float32 pixels: identical images differ by rounding at most
    count = int((rms <= limit).sum())
    checked = int(rms.numel())
    ci = exact_rate_ci(count, checked)
    detail = {"verbatim": count, "released_checked": checked, "threshold_rms": threshold_rms,
              "rule": f"RMS pixel distance to the nearest private image <= {threshold_rms:g} (pixels in [0, 1])",
              "ci_method": "exact binomial (Clopper-Pearson)"}
    return ResultRow("memorisation.verbatim", ci.value, ci.ci_low, ci.ci_high, checked, True, detail=detail,
                     game="release")
