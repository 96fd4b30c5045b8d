"""Where the registry (dataset cards, suites, plugin catalogue) and the example plugin packages live.

In a source checkout the registry is the top-level ``registry/`` folder; an
installed wheel carries a copy as ``privbench/_registry``. ``PRIVBENCH_REGISTRY``
overrides both. The example plugin packages are ``plugins/<package>/`` in a
checkout and ``privbench/_examples/<package>/`` in a wheel, so that ``pip
install`` can be pointed at them from either.
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


def example_package_dir(package: str) -> Path | None:
    """The folder of an example plugin package shipped with privbench (installable with pip), or None."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_examples" / package, here.parent / "plugins" / package):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return None
