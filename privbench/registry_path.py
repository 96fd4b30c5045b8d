"""Where the registry (dataset cards, suites, plugin catalogue) lives.

In a source checkout it is the top-level ``registry/`` folder; an installed
wheel carries a copy as ``privbench/_registry``. ``PRIVBENCH_REGISTRY``
overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path


def registry_dir() -> Path:
    override = os.environ.get("PRIVBENCH_REGISTRY")
    if override:
        path = Path(override).expanduser()
        if not path.is_dir():
            from privbench.errors import UserError

            raise UserError(f"PRIVBENCH_REGISTRY={override} is not a folder: the registry (dataset cards, suites) "
                            f"is missing; point it at a folder with datasets/ and suites/, or unset it")
        return path
    here = Path(__file__).resolve().parent
    for candidate in (here / "_registry", here.parent / "registry"):
        if candidate.is_dir():
            return candidate
    return here / "_registry"
