"""privbench: distil image datasets and audit what a release gives away.

Importing this package is cheap on purpose: torch and the other heavy
libraries are imported only by the code paths that need them.
"""

__version__ = "0.3.0"

from privbench.hookspecs import hookimpl  # noqa: E402  (the marker plugins decorate their hooks with)

__all__ = ["__version__", "hookimpl"]
