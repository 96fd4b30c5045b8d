"""The built-in privbench plugins.

Each module here is registered under the ``privbench`` entry-point group in
privbench's own ``pyproject.toml``, exactly as a third party's plugin package
would be. A module imports only ``privbench.api`` at import time (and the
shared ``privbench.nets`` / ``augment`` / ``training`` inside methods), so that
listing plugins stays fast.
"""
