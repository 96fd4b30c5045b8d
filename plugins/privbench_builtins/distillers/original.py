"""``original``: the whole private training set, released as it is.

The other end of every table: the most useful release and the least private.
"""

from __future__ import annotations

from dataclasses import dataclass

from privbench import hookimpl
from privbench.api import Dataset, Distiller, Release, RunContext


@dataclass(frozen=True)
class OriginalConfig:
    """No options."""


class Original(Distiller):
    """The whole private training set as the release (no distillation)."""

    name = "original"
    Config = OriginalConfig
    uses_ipc = False

    def distill(self, private: Dataset, ipc: int | None, config: OriginalConfig, ctx: RunContext) -> Release:
        return Release(private.train.images.clone(), private.train.labels.clone(), {"method": self.name, "ipc": None})


@hookimpl
def register_distillers(register):
    register(Original)
