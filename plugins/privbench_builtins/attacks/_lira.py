"""The likelihood-ratio attack's statistics (Carlini et al., "Membership Inference Attacks From First Principles", 2022).

For each candidate the attack observes phi = log(p_y / (1 - p_y)), the
logit-scaled confidence of a model in the candidate's true label, which is
close to Gaussian across models trained with and without the candidate. Shadow
models give, per candidate and per query (the image, its flip, ...), samples of
phi with the candidate IN their private set and samples with it OUT. From them:

* online:  log N(phi; mu_in, sigma_in^2) - log N(phi; mu_out, sigma_out^2),
  the log likelihood ratio of IN against OUT;
* offline: log Pr[Z <= phi] with Z ~ N(mu_out, sigma_out^2), the paper's
  one-sided test against the OUT distribution alone (no IN shadows needed).

With several queries the per-query scores are averaged (queries treated as
independent). Means are per candidate. Variances are either per candidate
(``per_example``, sample variance, needs two or more shadows on that side) or
``fixed``: one variance per side and query shared by all candidates, pooled
from each candidate's deviations from its own mean. With a single shadow per
side there are no within-candidate deviations, so the fixed variance falls back
to the spread of phi across candidates, which over-estimates it (the attack is
then conservative, never overconfident).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_STD = 1e-3
"""Floor on a fitted standard deviation (phi units): shadows that agree exactly must not divide by zero."""


def logit_confidence(logits, labels) -> np.ndarray:
    """phi = log(p_y / (1 - p_y)) per row, computed from logits as z_y - logsumexp(z_j, j != y).

    That identity avoids forming p_y, so phi stays finite for confident models
    (p_y rounding to 1 in float32 would give infinity).
    """
    import torch

    z = torch.as_tensor(logits).detach().to("cpu", torch.float64)
    y = torch.as_tensor(labels).detach().to("cpu", torch.long).view(-1, 1)
    own = z.gather(1, y).squeeze(1)
    others = z.scatter(1, y, float("-inf"))
    return (own - torch.logsumexp(others, dim=1)).numpy()


@dataclass(frozen=True)
class GaussianFit:
    """Per candidate and query: the mean and standard deviation of phi on one side (IN or OUT)."""

    mean: np.ndarray  # candidates x queries
    std: np.ndarray  # candidates x queries
    variance: str  # "fixed" or "per_example"
    estimate: str  # how the variance was estimated, in words


def fit_gaussians(phi: np.ndarray, mask: np.ndarray, variance: str) -> GaussianFit:
    """Fit one side's Gaussians from shadow observations.

    ``phi`` is shadows x candidates x queries, ``mask`` shadows x candidates
    (True where that shadow's observation belongs to this side).
    """
    phi = np.asarray(phi, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if phi.ndim != 3 or mask.shape != phi.shape[:2]:
        raise ValueError(f"phi must be shadows x candidates x queries and mask shadows x candidates, got "
                         f"{phi.shape} and {mask.shape}")
    count = mask.sum(axis=0)  # per candidate
    if (count == 0).any():
        raise ValueError(f"{int((count == 0).sum())} candidates have no shadow observation on this side")
    weight = mask[:, :, None].astype(np.float64)
    mean = (phi * weight).sum(axis=0) / count[:, None]
    squares = (((phi - mean[None]) ** 2) * weight).sum(axis=0)  # candidates x queries
    if variance == "per_example":
        if (count < 2).any():
            raise ValueError("per-example variances need at least two shadow observations per candidate and side")
        var = squares / (count[:, None] - 1)
        estimate = "per candidate (sample variance)"
    elif variance == "fixed":
        dof = int((count - 1).sum())
        if dof > 0:
            pooled = squares.sum(axis=0) / dof  # per query
            estimate = f"pooled within-candidate variance ({dof} degrees of freedom)"
        else:
            observed = phi[mask]  # one observation per candidate: queries in the last axis
            pooled = observed.var(axis=0, ddof=1) if observed.shape[0] > 1 else np.zeros(phi.shape[2])
            estimate = "spread across candidates (one shadow per side, an over-estimate)"
        var = np.broadcast_to(pooled, mean.shape).copy()
    else:
        raise ValueError(f"unknown variance {variance!r}; valid: fixed, per_example")
    std = np.sqrt(np.maximum(var, MIN_STD**2))
    return GaussianFit(mean, std, variance, estimate)


def online_scores(target_phi: np.ndarray, fit_in: GaussianFit, fit_out: GaussianFit) -> np.ndarray:
    """Mean over queries of log N(phi; IN) - log N(phi; OUT): higher means more likely a member."""
    from scipy.stats import norm

    target_phi = _as_2d(target_phi)
    ratio = norm.logpdf(target_phi, fit_in.mean, fit_in.std) - norm.logpdf(target_phi, fit_out.mean, fit_out.std)
    return ratio.mean(axis=1)


def offline_scores(target_phi: np.ndarray, fit_out: GaussianFit) -> np.ndarray:
    """Mean over queries of log Pr[Z <= phi], Z ~ OUT: higher means more likely a member."""
    from scipy.stats import norm

    target_phi = _as_2d(target_phi)
    return norm.logcdf(target_phi, fit_out.mean, fit_out.std).mean(axis=1)


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x
