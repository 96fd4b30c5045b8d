"""The long results table: schema, atomic writes, reading back with pyarrow and pandas."""

from __future__ import annotations

import os
import stat

import pyarrow.parquet as pq
import pytest

from privbench.api import ResultRow
from privbench.errors import UserError
from privbench.results import (
    RESULTS_SCHEMA,
    RUNS_SCHEMA,
    RunInfo,
    atomic_write,
    read_table,
    result_records,
    run_record,
    write_results,
    write_runs,
)


def _info(**kw):
    base = dict(job="utility/convnet", task="utility", dataset="digits", dataset_fingerprint="ab" * 32,
                release_method="dm", release_ipc=10, release_seed=0, evaluator="convnet",
                plugin_package="privbench", plugin_version="0.1.0", config={"epochs": 5, "lr": 0.01},
                seed=0, device="cpu", elapsed_s=1.5)
    base.update(kw)
    return RunInfo(**base)


def test_round_trip_with_pyarrow_and_pandas(tmp_path):
    info = _info()
    rows = [
        ResultRow.mean_of("accuracy", [0.8, 0.82, 0.85], higher_is_better=True),
        ResultRow.unavailable("reconstruction.lpips", "weights missing", higher_is_better=False),
    ]
    path = tmp_path / "results.parquet"
    write_results(path, result_records(info, rows))
    table = pq.read_table(path)
    assert table.schema.equals(RESULTS_SCHEMA)
    got = table.to_pylist()
    assert got[0]["measure"] == "accuracy" and got[0]["n"] == 3
    assert got[0]["ci_low"] <= got[0]["value"] <= got[0]["ci_high"]
    assert got[0]["release_ipc"] == 10 and got[0]["higher_is_better"] is True
    assert got[1]["status"] == "unavailable" and got[1]["value"] is None and "weights missing" in got[1]["detail"]
    assert got[0]["config_hash"] == info.config_hash and len(info.config_hash) == 16

    import pandas as pd

    frame = pd.read_parquet(path)
    assert list(frame["measure"]) == ["accuracy", "reconstruction.lpips"]

    runs = tmp_path / "runs.parquet"
    write_runs(runs, [run_record(info)])
    run_rows = pq.read_table(runs)
    assert run_rows.schema.equals(RUNS_SCHEMA)
    assert '"epochs":5' in run_rows.to_pylist()[0]["config"]


def test_atomic_write_leaves_no_torn_or_temporary_file(tmp_path):
    path = tmp_path / "results.parquet"
    write_results(path, result_records(_info(), [ResultRow("x", 1.0, n=1)]))
    before = path.read_bytes()

    def explode(tmp):
        tmp.write_bytes(b"half a file")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.parquet"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "report.html", lambda tmp: tmp.write_text("<html></html>"))
        (tmp_path / "plain.html").write_text("<html></html>")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "report.html").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.html").stat().st_mode) == 0o666 & ~umask


def test_ok_rows_need_a_value():
    with pytest.raises(ValueError):
        ResultRow("accuracy", None)


def test_reading_a_missing_or_corrupt_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such results file"):
        read_table(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="not a readable Parquet"):
        read_table(bad)


@pytest.mark.parametrize("stated, expected", [(4.0, 4.0), ("inf", float("inf")), ("abc", None), (True, None),
                                              (-1.0, None), ("nan", None), (None, None)])
def test_the_release_epsilon_column_reads_only_a_meaningful_guarantee(stated, expected):
    import torch

    from privbench.api import Release
    from privbench.engine import release_columns

    manifest = {"method": "dp-dm", "ipc": 1} if stated is None else {"method": "dp-dm", "ipc": 1,
                                                                      "privacy": {"epsilon": stated}}
    release = Release(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), manifest)
    assert release_columns(release)["release_epsilon"] == expected
