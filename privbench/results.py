"""The one results writer: long ("tidy") Parquet tables, written atomically.

``results.parquet`` holds one row per measured number (value, ci_low, ci_high,
n, higher_is_better, ...). ``runs.parquet`` holds one row per run with its full
configuration as JSON. Both are plain Parquet: pandas, polars and DuckDB read
them. Writes go to a temporary file in the same directory and are renamed into
place, so a crash never leaves a torn file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

import privbench
from privbench.api import ResultRow
from privbench.config import canonical_json, config_hash
from privbench.errors import UserError

RESULTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("job", pa.string()),
        ("task", pa.string()),
        ("dataset", pa.string()),
        ("dataset_fingerprint", pa.string()),
        ("release_method", pa.string()),
        ("release_ipc", pa.int64()),
        ("release_seed", pa.int64()),
        ("release_epsilon", pa.float64()),
        ("evaluator", pa.string()),
        ("game", pa.string()),
        ("measure", pa.string()),
        ("subset", pa.string()),
        ("value", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("n", pa.int64()),
        ("higher_is_better", pa.bool_()),
        ("status", pa.string()),
        ("detail", pa.string()),
        ("elapsed_s", pa.float64()),
        ("device", pa.string()),
        ("config_hash", pa.string()),
        ("plugin_package", pa.string()),
        ("plugin_version", pa.string()),
        ("privbench_version", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("job", pa.string()),
        ("task", pa.string()),
        ("dataset", pa.string()),
        ("dataset_fingerprint", pa.string()),
        ("release_method", pa.string()),
        ("release_ipc", pa.int64()),
        ("release_seed", pa.int64()),
        ("release_epsilon", pa.float64()),
        ("evaluator", pa.string()),
        ("plugin_package", pa.string()),
        ("plugin_version", pa.string()),
        ("config", pa.string()),
        ("config_hash", pa.string()),
        ("seed", pa.int64()),
        ("device", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("warnings", pa.string()),
        ("versions", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("elapsed_s", pa.float64()),
    ]
)


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def environment_versions() -> dict[str, str]:
    """Versions worth recording beside a number."""
    out = {"privbench": privbench.__version__, "python": platform.python_version(), "platform": platform.platform()}
    for mod in ("torch", "numpy"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:  # pragma: no cover
                continue
        out[mod] = getattr(m, "__version__", "")
    return out


@dataclass
class RunInfo:
    """Who measured what, where and how: the columns the host adds to each row."""

    job: str
    task: str
    dataset: str = ""
    dataset_fingerprint: str = ""
    release_method: str = ""
    release_ipc: int | None = None
    release_seed: int | None = None
    release_epsilon: float | None = None  # the release's stated guarantee; None: it states none
    evaluator: str = ""
    plugin_package: str = ""
    plugin_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    device: str = "cpu"
    status: str = "ok"  # ok, or error for a suite job that failed
    error: str = ""  # why it failed
    warnings: list[str] = field(default_factory=list)
    started_at: dt.datetime = field(default_factory=utcnow)
    elapsed_s: float = 0.0
    run_id: str = field(default_factory=new_run_id)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


def result_records(info: RunInfo, rows: Iterable[ResultRow]) -> list[dict[str, Any]]:
    """Full result-table records: each row with the run's columns added."""
    now = utcnow()
    out = []
    for r in rows:
        out.append(
            {
                "run_id": info.run_id,
                "job": info.job,
                "task": info.task,
                "dataset": info.dataset,
                "dataset_fingerprint": info.dataset_fingerprint,
                "release_method": info.release_method,
                "release_ipc": info.release_ipc,
                "release_seed": info.release_seed,
                "release_epsilon": info.release_epsilon,
                "evaluator": info.evaluator,
                "game": r.game,
                "measure": r.measure,
                "subset": r.subset,
                "value": None if r.value is None else float(r.value),
                "ci_low": None if r.ci_low is None else float(r.ci_low),
                "ci_high": None if r.ci_high is None else float(r.ci_high),
                "n": int(r.n),
                "higher_is_better": r.higher_is_better,
                "status": r.status,
                "detail": canonical_json(r.detail) if r.detail else "",
                "elapsed_s": float(info.elapsed_s),
                "device": info.device,
                "config_hash": info.config_hash,
                "plugin_package": info.plugin_package,
                "plugin_version": info.plugin_version,
                "privbench_version": privbench.__version__,
                "created_at": now,
            }
        )
    return out


def run_record(info: RunInfo) -> dict[str, Any]:
    return {
        "run_id": info.run_id,
        "job": info.job,
        "task": info.task,
        "dataset": info.dataset,
        "dataset_fingerprint": info.dataset_fingerprint,
        "release_method": info.release_method,
        "release_ipc": info.release_ipc,
        "release_seed": info.release_seed,
        "release_epsilon": info.release_epsilon,
        "evaluator": info.evaluator,
        "plugin_package": info.plugin_package,
        "plugin_version": info.plugin_version,
        "config": canonical_json(info.config),
        "config_hash": info.config_hash,
        "seed": info.seed,
        "device": info.device,
        "status": info.status,
        "error": info.error or None,
        "warnings": json.dumps(info.warnings),
        "versions": canonical_json(environment_versions()),
        "started_at": info.started_at,
        "elapsed_s": float(info.elapsed_s),
    }


def _new_file_mode() -> int:
    """The permissions ``open()`` would give a new file under the current umask (``mkstemp`` gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The result gets the permissions of a plainly written file, so a report or
    table can be shared as any other file in its folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_table(records: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(records, schema=schema)


def write_table(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_results(path: Path, records: list[dict[str, Any]]) -> None:
    write_table(path, to_table(records, RESULTS_SCHEMA))


def write_runs(path: Path, records: list[dict[str, Any]]) -> None:
    write_table(path, to_table(records, RUNS_SCHEMA))


RESULTS_NOT_NULL = ("dataset", "task", "evaluator", "measure")
OPTIONAL_COLUMNS = ("release_epsilon", "error")
"""Columns added after the first tables were written: a table without one reads it as empty (null)."""
RUNS_NOT_NULL = ("job", "dataset")
"""Columns every row must fill: the report groups and labels rows by them."""

def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):  # a categorical column written by pandas
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


# What a column of each schema type may be stored as (pandas writes an integer column with
# gaps as floats; the cast below refuses 2.5), and the words for it.
_FAMILIES = (
    (pa.types.is_string, _is_text, "strings"),
    (pa.types.is_boolean, pa.types.is_boolean, "booleans"),
    (pa.types.is_integer, _is_number, "integers"),
    (pa.types.is_floating, _is_number, "numbers"),
    (pa.types.is_timestamp, pa.types.is_timestamp, "timestamps"),
)


def _conform(table: pa.Table, schema: pa.Schema, not_null: tuple[str, ...], path: Path, what: str) -> pa.Table:
    """``table`` with the schema's column types, or one :class:`UserError` naming what is missing or wrong."""
    for name in OPTIONAL_COLUMNS:
        if name in schema.names and name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise UserError(f"{path} is not a privbench {what}: missing column(s) {', '.join(missing)}")
    doubled = sorted({name for name in table.column_names if table.column_names.count(name) > 1})
    if doubled:
        raise UserError(f"{path}: column(s) {', '.join(doubled)} appear more than once")
    for f in schema:
        column = table.column(f.name)
        if not pa.types.is_null(column.type):
            for is_wanted, accepts, words in _FAMILIES:
                if is_wanted(f.type) and not accepts(column.type):
                    raise UserError(f"{path}: column {f.name!r} must hold {words} ({f.type}), got {column.type}")
        try:
            column = column.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise UserError(f"{path}: column {f.name!r} cannot be read as {f.type}: "
                            f"{' '.join(str(exc).split())}") from exc
        if f.name in not_null and column.null_count:
            raise UserError(f"{path}: column {f.name!r} is empty (null) in {column.null_count} row(s)")
        table = table.set_column(table.schema.get_field_index(f.name), f.name, column)
    return table


def read_table(path: Path, schema: pa.Schema | None = None, not_null: tuple[str, ...] = (),
               what: str = "table") -> pa.Table:
    """Read a privbench Parquet file; a missing or corrupt file is a :class:`UserError`.

    With ``schema``, its columns must all be there with compatible types (an
    integer column where numbers are expected is fine) and are returned with the
    schema's types; ``not_null`` columns must be filled in every row.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such results file: {path}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{path} is not a readable Parquet file: {' '.join(str(exc).split())}") from exc
    return table if schema is None else _conform(table, schema, not_null, path, what)


def read_records(path: Path, schema: pa.Schema | None = None, not_null: tuple[str, ...] = (),
                 what: str = "table") -> list[dict[str, Any]]:
    return read_table(path, schema, not_null, what).to_pylist()


def read_results(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``results.parquet``, checked against :data:`RESULTS_SCHEMA`."""
    return read_records(path, RESULTS_SCHEMA, RESULTS_NOT_NULL, "results table")


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``runs.parquet``, checked against :data:`RUNS_SCHEMA`."""
    return read_records(path, RUNS_SCHEMA, RUNS_NOT_NULL, "runs table")
