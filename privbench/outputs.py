"""Output directories that are either complete or absent.

Commands write into a hidden staging folder beside the target and rename it
into place at the end, so an error or a kill never leaves a half-written
output directory, and an existing one is replaced only when asked to.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from privbench.errors import UserError


def check_output_dir(out: Path, force: bool = False) -> Path:
    """Fail early (before hours of work) if ``out`` cannot be written or would be overwritten."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"output directory {out} is not empty; pass --force to replace it")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".privbench-probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write output directory {out}: {exc.strerror or exc}") from exc
    return out


@contextmanager
def staged_output_dir(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield a staging folder; on success it becomes ``out``, on failure it vanishes."""
    out = check_output_dir(out, force)
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
