"""Keep glibc from handing a CPU run's feature maps back to the kernel after every layer.

glibc's ``malloc`` serves a block above its mmap threshold with a fresh
``mmap`` and gives the heap's top back to the kernel once more than the trim
threshold lies free there. Both thresholds start small and only creep up, so a
ConvNet's 10 MB feature maps, allocated and freed a few dozen times in every
DM iteration, keep coming back as new pages that the kernel must fault in and
zero. On a 2-core Xeon that made the first convolution of DM's real pass (one
input channel, 128 outputs) as slow as the second, which does 32 times its
arithmetic; fixing both thresholds made DM's real pass 1.55x faster. This is
the reason PyTorch's CPU tuning guide recommends jemalloc or tcmalloc; the two
``mallopt`` calls here get most of their effect with the C library at hand.

:func:`tune_host_allocator` is called by the command line at start-up (and by
the benchmarks): it changes the allocator of the whole process, which a
library imported by someone else's program should not do behind their back.
It does nothing off glibc, when the environment already sets ``MALLOC_``
options, when another allocator is preloaded, or when
``PRIVBENCH_ALLOCATOR=default``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ENV = "PRIVBENCH_ALLOCATOR"

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""The largest mmap threshold glibc accepts on 64-bit Linux: blocks up to 32 MiB come from the heap."""
TRIM_THRESHOLD = 1 << 30
"""Free heap memory kept for reuse before any is returned to the kernel."""

_tuned: bool | None = None


def _untouched_reason() -> str | None:
    if os.environ.get(ENV, "").strip().lower() == "default":
        return f"{ENV}=default"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return "MALLOC_ options set in the environment"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return "another allocator is preloaded"
    return None


def tune_host_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once); True when they are set."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if _untouched_reason() is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _tuned = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):
            _tuned = False
    return _tuned
