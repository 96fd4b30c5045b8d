"""``canary``: an empirical lower bound on the release pipeline's epsilon, from canaries inserted at random.

The auditor picks ``canaries`` real images the pipeline never saw (by default
mislabeled: each gets a wrong class, the kind of outlier a mechanism must
protect), inserts each into the private set with probability 1/2, re-runs the
release pipeline, and guesses from the release (and the model a recipient
trains on it) which canaries went in. The one-run analysis of Steinke, Nasr &
Jagielski (2023, :mod:`privbench.auditing`) turns the right guesses into an
epsilon the pipeline cannot have, at the stated confidence: a lower bound to
hold against the theoretical epsilon of a private release (infinite for every
other release). A bound above a release's guarantee is a bug in the mechanism
or its accounting.

Scores (higher: more likely inserted): ``release_distance`` (minus the pixel
distance to the nearest released image of the canary's class),
``loss`` (the target model's logit-scaled confidence in the canary's label),
``lira_offline`` (that confidence against its distribution under the other
runs' models, which never held the canary; needs ``runs`` of at least 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privbench import hookimpl
from privbench.api import Attack, AuditTarget, ResultRow, RunContext

from privbench_builtins.attacks._options import TargetOptions

SCORES = ("release_distance", "loss", "lira_offline")


@dataclass(frozen=True)
class CanaryConfig(TargetOptions):
    """Canary audit settings (docs/attacks.md explains each).

    ``canaries``: canaries per run, each inserted with probability 1/2.
    ``runs``: independent release pipelines, each with its own canaries (the
    bound pools them). ``kind``: ``mislabeled`` (a wrong class, drawn per
    canary) or ``natural`` (its own class). ``scores``: how guesses are ranked.
    ``fractions``: the shares of canaries guessed (half IN from the top, half
    OUT from the bottom); the confidence is split over scores x fractions.
    ``delta``: 0 takes the release's own delta, or 1 / (10 n) for a release
    without a guarantee. ``duplicate_rms``: a candidate canary within this RMS
    pixel distance of a training image is never used. ``target_*``: the
    recipient's training recipe for the model-based scores.
    """

    canaries: int = 100
    runs: int = 1
    kind: Literal["mislabeled", "natural"] = "mislabeled"
    scores: tuple[str, ...] = ("release_distance", "loss")
    fractions: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0)
    confidence: float = 0.95
    delta: float = 0.0
    duplicate_rms: float = 0.01
    nonmember_splits: tuple[str, ...] = ("val", "test")

    def __post_init__(self) -> None:
        from privbench_builtins.attacks._options import check_population_fields, check_target_fields

        unknown = [s for s in self.scores if s not in SCORES]
        if unknown or not self.scores:
            raise ValueError(f"scores must be among {', '.join(SCORES)}; got {', '.join(self.scores) or 'none'}")
        if self.canaries < 10:
            raise ValueError(f"canaries must be at least 10 per run, got {self.canaries}")
        if self.runs < 1:
            raise ValueError(f"runs must be at least 1, got {self.runs}")
        if "lira_offline" in self.scores and self.runs < 3:
            raise ValueError(f"lira_offline compares each canary with the runs that never held it: it needs runs of "
                             f"at least 3, got {self.runs}")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must lie in (0, 1], got {list(self.fractions)}")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must lie in [0.5, 1), got {self.confidence}")
        if not 0 <= self.delta < 1:
            raise ValueError(f"delta must lie in [0, 1) (0: the release's own), got {self.delta}")
        if self.resamples < 0:
            raise ValueError("resamples must not be negative")
        check_population_fields(self)
        check_target_fields(self)


class CanaryAudit(Attack):
    """Canaries inserted with probability 1/2, one release pipeline per run, an epsilon lower bound."""

    name = "canary"
    Config = CanaryConfig

    def run(self, target: AuditTarget, config: CanaryConfig, ctx: RunContext) -> list[ResultRow]:
        from privbench_builtins.attacks import _canary
        from privbench_builtins.attacks._common import require_images

        require_images(target.release)
        experiment = _canary.run_experiment(target, config, ctx)
        return _canary.rows(experiment, config, ctx)


@hookimpl
def register_attacks(register):
    register(CanaryAudit)
