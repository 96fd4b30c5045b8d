"""Differential-privacy accounting for a sampled Gaussian mechanism, by an established library.

A private distiller touches its data only through T releases of a Poisson-
subsampled (rate q) Gaussian mechanism with noise multiplier sigma; its
(epsilon, delta) guarantee is the composition of those T steps. privbench does
not compute that bound itself: opacus's accountants do (RDP by default, PRV on
request), and :func:`guarantee` records which accountant and version gave the
number, so anyone can recompute it from a release's manifest. opacus is a
dependency of privbench; an environment that lacks it gets one line saying so
from each call.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from privbench.errors import UserError

ACCOUNTANTS = ("rdp", "prv")


def _check(sample_rate: float, steps: int, delta: float, accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise UserError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")
    if not 0 < sample_rate <= 1:
        raise UserError(f"the sampling rate q must lie in (0, 1], got {sample_rate}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"the number of steps must be a positive integer, got {steps!r}")
    if not 0 < delta < 1:
        raise UserError(f"delta must lie in (0, 1), got {delta}")


def _opacus():
    try:
        import opacus
    except ImportError as exc:
        raise UserError("differential-privacy accounting needs opacus, which is not installed here: "
                        "pip install 'opacus>=1.6'") from exc
    return opacus


def _accountant(name: str):
    _opacus()
    from opacus.accountants import PRVAccountant, RDPAccountant

    return RDPAccountant() if name == "rdp" else PRVAccountant()


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                accountant: str = "rdp") -> float:
    """The epsilon at ``delta`` of ``steps`` sampled Gaussian steps; infinite without noise."""
    _check(sample_rate, steps, delta, accountant)
    if noise_multiplier < 0 or not math.isfinite(noise_multiplier):
        raise UserError(f"the noise multiplier must be a finite number of at least 0, got {noise_multiplier}")
    if noise_multiplier == 0:
        return math.inf
    acc = _accountant(accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # opacus's note that a wider range of RDP orders might tighten the bound
        return float(acc.get_epsilon(delta=delta))


def noise_for(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "rdp",
              tolerance: float = 0.005) -> float:
    """The noise multiplier that spends ``epsilon`` at ``delta`` in ``steps`` steps (0 for an infinite epsilon).

    opacus searches for the smallest sigma whose epsilon is at most the target,
    to within ``tolerance`` (absolute, in epsilon).
    """
    _check(sample_rate, steps, delta, accountant)
    if math.isinf(epsilon) and epsilon > 0:
        return 0.0
    if not epsilon > 0:
        raise UserError(f"epsilon must be positive (or inf for no privacy), got {epsilon}")
    _opacus()
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(get_noise_multiplier(target_epsilon=float(epsilon), target_delta=float(delta),
                                              sample_rate=float(sample_rate), steps=int(steps),
                                              accountant=accountant, epsilon_tolerance=tolerance))
        except ValueError as exc:  # the target cannot be met at any noise the search tries
            raise UserError(f"no noise level reaches epsilon {epsilon} at delta {delta} with q = {sample_rate} "
                            f"over {steps} steps: {' '.join(str(exc).split())}") from exc


def guarantee(noise_multiplier: float, sample_rate: float, steps: int, delta: float, clip: float,
              accountant: str = "rdp") -> dict[str, Any]:
    """Everything a manifest needs to state and recompute the guarantee."""
    opacus = _opacus()
    epsilon = epsilon_for(noise_multiplier, sample_rate, steps, delta, accountant)
    return {"epsilon": epsilon if math.isfinite(epsilon) else "inf", "delta": delta,
            "noise_multiplier": noise_multiplier, "sample_rate": sample_rate, "steps": steps, "clip_norm": clip,
            "mechanism": "Poisson-subsampled Gaussian, add/remove-one-image neighbours",
            "accountant": accountant, "accountant_library": f"opacus {opacus.__version__}"}


def stated_guarantee(manifest: dict[str, Any]) -> tuple[float | None, float | None]:
    """The (epsilon, delta) a release's manifest states under ``privacy``; None for what it does not state.

    An epsilon must be a positive number or "inf" (a private method run
    without noise); anything else (a flag, a word, NaN, zero) states nothing.
    """
    privacy = manifest.get("privacy")
    if not isinstance(privacy, dict):
        return None, None

    def number(key: str) -> float | None:
        value = privacy.get(key)
        if value is None or isinstance(value, bool):
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if value == value else None

    epsilon, delta = number("epsilon"), number("delta")
    return (epsilon if epsilon is not None and epsilon > 0 else None), delta
