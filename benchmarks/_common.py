"""Helpers shared by the benchmark scripts: machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Measured by the scripts in `benchmarks/`; each section names the machine, the date and the
settings it was measured with. Rerun a script to refresh its section.
"""


def machine() -> str:
    """A short description of the hardware a figure was measured on."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (CUDA), {os.cpu_count()}-core CPU host"
    except ImportError:  # pragma: no cover
        pass
    return f"{os.cpu_count()}-core CPU ({platform.machine()}{_cpu_model()}), no GPU"


def _cpu_model() -> str:
    """``, Intel(R) Xeon(R) Processor with AMX``: the model and the bf16 units, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    units = [name for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16")) if flag in flags]
    return (f", {model}" if model else "") + (f" with {' and '.join(units)}" if units else "")


def today() -> str:
    return dt.date.today().isoformat()


def update_section(name: str, markdown: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section between ``<!-- BEGIN name -->`` and ``<!-- END name -->``."""
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- BEGIN {name} -->\n{markdown.strip()}\n<!-- END {name} -->"
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
