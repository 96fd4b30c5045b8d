"""One measured number and what stands behind it: the row every plugin returns and every table holds.

Part of the plugin contract (re-exported by :mod:`privbench.api`); it imports
nothing heavy, so that listing plugins stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

STATUSES = ("ok", "unavailable", "insufficient")
"""A result row's status: a number, a number this machine cannot compute, a number the data cannot resolve."""


@dataclass(frozen=True)
class ResultRow:
    """One measured number, with its uncertainty and the count behind it.

    ``measure`` names what was measured (``accuracy``, ``loss_threshold.auc``,
    ``reconstruction.ssim``); the host adds run, dataset, release, device,
    versions and timing when it writes the row. ``status`` is ``ok``, or
    ``unavailable`` when a number could not be computed on this machine, or
    ``insufficient`` when the data cannot resolve it (a TPR at 0.1% FPR from
    fewer than 10,000 non-members): then ``value`` is ``None``, never a
    made-up number, and ``detail["reason"]`` says why. ``detail`` holds extra
    JSON-serialisable facts, such as the counts behind a rate. ``game`` names
    the privacy game a membership figure belongs to (``release`` or
    ``method``, see ``docs/attacks.md``); ``None`` for numbers outside any.
    """

    measure: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    higher_is_better: bool | None = None
    subset: str = "all"
    status: str = "ok"
    detail: dict[str, Any] = field(default_factory=dict)
    game: str | None = None

    @classmethod
    def mean_of(
        cls,
        measure: str,
        values: Any,
        *,
        higher_is_better: bool | None,
        resamples: int = 1000,
        seed: int = 0,
        subset: str = "all",
        detail: dict[str, Any] | None = None,
    ) -> "ResultRow":
        """The mean of per-sample values with a seeded bootstrap 95% CI."""
        from privbench.stats import bootstrap_mean_ci

        est = bootstrap_mean_ci(values, resamples=resamples, seed=seed)
        return cls(
            measure,
            est.value,
            est.ci_low,
            est.ci_high,
            est.n,
            higher_is_better,
            subset,
            "ok",
            dict(detail or {}),
        )

    @classmethod
    def bootstrap(
        cls,
        measure: str,
        statistic: Callable[..., float],
        *arrays: Any,
        higher_is_better: bool | None,
        strata: Any = None,
        resamples: int = 1000,
        seed: int = 0,
        subset: str = "all",
        detail: dict[str, Any] | None = None,
    ) -> "ResultRow":
        """``statistic(*arrays)`` (an AUC, a TPR at fixed FPR) with a seeded bootstrap 95% CI.

        Rows of ``arrays`` are resampled jointly; ``strata`` (e.g. member labels)
        keeps each group's size fixed in every resample.
        """
        from privbench.stats import bootstrap_ci

        est = bootstrap_ci(statistic, *arrays, resamples=resamples, seed=seed, strata=strata)
        return cls(measure, est.value, est.ci_low, est.ci_high, est.n, higher_is_better, subset, "ok", dict(detail or {}))

    @classmethod
    def unavailable(
        cls, measure: str, reason: str, *, higher_is_better: bool | None = None, subset: str = "all",
        game: str | None = None,
    ) -> "ResultRow":
        """A number that cannot be computed here (missing weights, say): no value, and the reason."""
        return cls(measure, None, None, None, 0, higher_is_better, subset, "unavailable", {"reason": reason},
                   game)

    @classmethod
    def insufficient(
        cls, measure: str, reason: str, *, n: int = 0, higher_is_better: bool | None = None, subset: str = "all",
        detail: dict[str, Any] | None = None, game: str | None = None,
    ) -> "ResultRow":
        """A number the data at hand cannot resolve: no value, the reason and the counts behind it."""
        return cls(measure, None, None, None, n, higher_is_better, subset, "insufficient",
                   {**(detail or {}), "reason": reason}, game)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"result {self.measure!r} has unknown status {self.status!r}; valid: {', '.join(STATUSES)}")
        if self.status == "ok" and (self.value is None or (isinstance(self.value, float) and math.isnan(self.value))):
            raise ValueError(f"result {self.measure!r} has status ok but no value")
