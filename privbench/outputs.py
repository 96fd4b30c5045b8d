"""Output paths that are either complete or absent, and never the user's own files.

Commands write into a hidden staging folder beside the target and rename it
into place at the end, so an error, Ctrl-C or SIGTERM never leaves a
half-written output directory. Three rules keep the user's data safe:

* an output is refused when it is, contains or lies inside one of the
  command's inputs, with or without ``--force``;
* ``--force`` replaces only what privbench wrote: a folder holding the
  :data:`MARKER` file (or, for folders written before the marker existed,
  nothing but names privbench writes), a Parquet file privbench wrote;
* staging folders carry the id of the process that made them, so the next
  run removes those of dead processes (a ``kill -9`` or a power cut) and
  leaves a concurrent run's alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from privbench.errors import UserError

MARKER = ".privbench-output.json"
"""Written into every folder privbench creates: the proof that ``--force`` may replace it."""

OWN_NAMES = frozenset({
    MARKER, "release.npz", "release.json", "provenance.private.json", "preview.png", "results.parquet",
    "runs.parquet", "figures", "report.html", "jobs", "suite.json",
})
"""Every name privbench writes at the top of an output folder."""

_STAGING = re.compile(r"^\..*\.(?:partial|old)-(?:(\d+)-)?[0-9a-f]{8}$")
_NAME_MAX = 255
_SUFFIX_ROOM = 40  # ".partial-<pid>-<hex>" and a margin


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def refuse_overlap(outputs: Iterable[Path], inputs: Iterable[Path | None]) -> None:
    """Refuse an output that is, contains or lies inside an input (resolving links)."""
    ins = [(Path(p), _resolved(p)) for p in inputs if p is not None]
    for out in outputs:
        o = _resolved(out)
        for given, i in ins:
            if o == i or o in i.parents:
                raise UserError(f"output {out} would overwrite the input {given}; choose an output outside the inputs")
            if i in o.parents:
                raise UserError(f"output {out} lies inside the input {given}; choose an output outside the inputs")


def is_own_dir(path: Path) -> bool:
    """Whether privbench wrote this folder (so ``--force`` may replace it).

    Folders from before the marker count when they hold only names privbench
    writes, at least one of its tables or manifests, and only PNGs in ``figures/``.
    """
    if (path / MARKER).is_file():
        return True
    try:
        names = {p.name for p in path.iterdir()}
        if not names or not names <= OWN_NAMES or not names & {"release.json", "results.parquet", "suite.json"}:
            return False
        figures = path / "figures"
        if figures.is_dir() and any(not f.is_file() or f.suffix != ".png" for f in figures.iterdir()):
            return False
    except OSError:
        return False
    return "jobs" not in names or "suite.json" in names


def write_marker(directory: Path, command: str) -> None:
    import privbench

    (Path(directory) / MARKER).write_text(json.dumps({"written_by": "privbench", "command": command,
                                                      "version": privbench.__version__}) + "\n")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def remove_stale_staging(parent: Path, all_ours: bool = False) -> int:
    """Remove the staging folders that dead privbench processes left in ``parent``.

    ``all_ours``: the folder is privbench's own (a suite's ``jobs/``), so
    staging folders of older versions, which carry no process id, go too.
    """
    removed = 0
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return 0
    for entry in entries:
        match = _STAGING.match(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir():
            continue
        pid = match.group(1)
        if pid is not None and _pid_alive(int(pid)):
            continue
        if pid is None and not (all_ours or (entry / MARKER).is_file() or is_own_dir(entry)):
            continue  # an older privbench's folder holds only its own names; anything else is not ours
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


def staging_name(out: Path, kind: str = "partial") -> str:
    """A hidden name beside ``out`` that fits the file system's limit and carries this process's id."""
    stem = out.name
    if len(os.fsencode(stem)) > _NAME_MAX - _SUFFIX_ROOM:
        stem = os.fsdecode(os.fsencode(stem)[: _NAME_MAX - _SUFFIX_ROOM - 10]) + secrets.token_hex(4)
    return f".{stem}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _check_name(out: Path) -> None:
    if not out.name or out.name in (".", ".."):
        raise UserError(f"output path {out} names no folder; give a folder name such as {out / 'out'}")
    if len(os.fsencode(out.name)) > _NAME_MAX:
        raise UserError(f"output name {out.name[:40]}... is {len(os.fsencode(out.name))} bytes long; "
                        f"file systems allow {_NAME_MAX}")


def _probe_parent(out: Path) -> None:
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".privbench-probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write output {out}: {exc.strerror or exc}") from exc


def check_output_dir(out: Path, force: bool = False, inputs: Iterable[Path | None] = ()) -> Path:
    """Fail early (before hours of work) if ``out`` cannot be written or is not privbench's to replace."""
    out = Path(out).expanduser()
    _check_name(out)
    refuse_overlap([out], inputs)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not _failure_log_only(out):
        if not force:
            raise UserError(f"output directory {out} is not empty; pass --force to replace it")
        if not is_own_dir(out):
            raise UserError(f"output directory {out} holds files privbench did not write; --force replaces only "
                            f"privbench's own output: choose another --out")
    _probe_parent(out)
    remove_stale_staging(out.parent)
    return out


def _failure_log_only(out: Path) -> bool:
    """A folder a failed run left holding only its error log: the next run replaces it without ``--force``."""
    from privbench.failures import holds_only_failure_log

    return holds_only_failure_log(out)


@contextmanager
def staged_output_dir(out: Path, force: bool = False, inputs: Iterable[Path | None] = (),
                      command: str = "") -> Iterator[Path]:
    """Yield a staging folder; on success it becomes ``out``, on any failure or signal it vanishes."""
    inputs = list(inputs)
    out = check_output_dir(out, force, inputs)
    staging = out.parent / staging_name(out)
    staging.mkdir()
    try:
        write_marker(staging, command)
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        check_output_dir(out, force, inputs)  # nothing of the user's appeared there meanwhile
        _move_into_place(staging, out)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise UserError(f"cannot write output {out}: {exc.strerror or exc}") from exc
        raise


def _move_into_place(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / staging_name(out, "old")
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def check_output_file(out: Path, force: bool = False, inputs: Iterable[Path | None] = ()) -> Path:
    """A single output file (``metrics --out``): never an input, replaced only when privbench wrote it."""
    out = Path(out).expanduser()
    _check_name(out)
    refuse_overlap([out], inputs)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {out / 'metrics.parquet'}")
    if out.is_symlink() or out.exists():
        if not force:
            raise UserError(f"--out {out} exists; pass --force to replace it")
        if out.is_symlink() or not is_own_parquet(out):
            raise UserError(f"--out {out} is not a results table privbench wrote; --force replaces only privbench's "
                            f"own output: choose another --out")
    _probe_parent(out)
    return out


def is_own_parquet(path: Path) -> bool:
    """A Parquet file with privbench's results columns."""
    try:
        import pyarrow.parquet as pq

        from privbench.results import RESULTS_SCHEMA

        names = set(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
    return set(RESULTS_SCHEMA.names) <= names


@contextmanager
def staged_into(directory: Path, entries: Iterable[str], command: str = "") -> Iterator[Path]:
    """Stage some entries (``report.html``, ``figures``) of a folder that holds other files too.

    The caller has checked that each existing entry is privbench's (see
    :func:`check_own_entries`); on success each staged entry replaces its old
    copy, on failure nothing in ``directory`` changes (a folder made for this
    call is removed again).
    """
    directory = Path(directory)
    created = not directory.exists()
    _probe_parent(directory / "x")
    remove_stale_staging(directory)
    staging = directory / staging_name(directory / "report")
    staging.mkdir()
    try:
        yield staging
        for name in entries:
            if (staging / name).exists():
                _move_into_place(staging / name, directory / name)
        if "figures" in entries and (directory / "figures").is_dir():
            write_marker(directory / "figures", command)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        if isinstance(exc, OSError):
            raise UserError(f"cannot write into {directory}: {exc.strerror or exc}") from exc
        raise
    shutil.rmtree(staging, ignore_errors=True)


_FIGURE = re.compile(r"^(?:[a-z]+-\d{3}-[\w.-]+|metric_\w+|privacy_utility)\.png$")


def check_own_entries(directory: Path, report: str = "report.html", figures: str = "figures") -> None:
    """Refuse to replace a report or figures folder privbench did not write."""
    html, figs = Path(directory) / report, Path(directory) / figures
    if html.is_symlink() or html.is_dir() or (html.exists() and not _is_own_report(html)):
        raise UserError(f"{html} exists and privbench did not write it; choose another --out")
    if figs.is_symlink() or (figs.exists() and not figs.is_dir()):
        raise UserError(f"{figs} exists and is not privbench's figures folder; choose another --out")
    if figs.is_dir() and not (figs / MARKER).is_file():
        strangers = [f.name for f in figs.iterdir() if not (f.is_file() and _FIGURE.match(f.name))]
        if strangers:
            raise UserError(f"{figs} holds files privbench did not write ({', '.join(sorted(strangers)[:3])}); "
                            f"choose another --out")


def _is_own_report(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return head.startswith(b"<!DOCTYPE html>") and b"privbench" in head


def check_suite_dir(out: Path, inputs: Iterable[Path | None] = ()) -> Path:
    """A suite's folder: new, empty, or a run of a suite that privbench wrote (which it resumes)."""
    out = Path(out).expanduser()
    _check_name(out)
    refuse_overlap([out], inputs)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not _is_suite_run(out):
        raise UserError(f"{out} is not empty and holds no suite run privbench wrote; choose another --out")
    _probe_parent(out)
    return out


def _is_suite_run(path: Path) -> bool:
    jobs = path / "jobs"
    if jobs.is_symlink() or (jobs.exists() and not jobs.is_dir()):
        return False
    if jobs.is_dir() and any(not (_JOB_KEY.match(j.name) or _STAGING.match(j.name)) for j in jobs.iterdir()):
        return False  # a folder named jobs/ with someone else's files: --fresh would delete them
    if (path / MARKER).is_file():
        return True
    return jobs.is_dir() and {p.name for p in path.iterdir()} <= OWN_NAMES  # a run from before the marker


_JOB_KEY = re.compile(r"^[0-9a-f]{16}$")
