"""The report: paper-shaped tables, figures, a summary, and private images only when allowed."""

from __future__ import annotations

import base64
import json
import re

import pytest

from helpers import assert_one_line_error
from privbench.api import ResultRow
from privbench.report import write_report
from privbench.results import RunInfo, result_records, run_record, write_results, write_runs


def _rows_for(method, ipc, auc, ssim, acc):
    info = dict(dataset="digits", dataset_fingerprint="f" * 64, release_method=method, release_ipc=ipc,
                release_seed=0, device="cpu")
    utility = RunInfo(job=f"utility {method}", task="utility", evaluator="convnet", **info)
    mia = RunInfo(job=f"mia {method}", task="audit", evaluator="mia", **info)
    aia = RunInfo(job=f"aia {method}", task="audit", evaluator="aia", **info)
    ae = RunInfo(job=f"ae {method}", task="audit", evaluator="autoencoder", **info)
    third = RunInfo(job=f"third {method}", task="audit", evaluator="nn-distance", plugin_package="privbench-coreset",
                    **info)
    records = result_records(utility, [ResultRow("balanced_accuracy", acc, acc - 0.02, acc + 0.02, 3, True),
                                       ResultRow("accuracy", acc, acc - 0.02, acc + 0.02, 3, True)])
    records += result_records(mia, [ResultRow("loss.auc", auc, auc - 0.03, auc + 0.03, 600, True),
                                    ResultRow("lira_online.tpr_at_fpr_0.01", auc / 20, 0.0, auc / 10, 600, True),
                                    ResultRow("lira_online.auc", auc, auc - 0.03, auc + 0.03, 600, True)])
    records += result_records(aia, [ResultRow("with_model.auc", 0.7, 0.65, 0.75, 500, True),
                                    ResultRow("control.auc", 0.69, 0.64, 0.74, 500, True)])
    records += result_records(ae, [ResultRow("reconstruction.ssim", ssim, ssim - 0.01, ssim + 0.01, 500, True),
                                   ResultRow.unavailable("reconstruction.lpips", "weights missing")])
    records += result_records(third, [ResultRow("auc", 0.61, 0.58, 0.64, 900, True)])
    return records, [run_record(i) for i in (utility, mia, aia, ae, third)]


@pytest.fixture
def results(tmp_path):
    records, runs = [], []
    for method, ipc, auc, ssim, acc in (("original", None, 0.9, 0.97, 0.95), ("dm", 10, 0.55, 0.80, 0.93)):
        r, u = _rows_for(method, ipc, auc, ssim, acc)
        records += r
        runs += u
    write_results(tmp_path / "results.parquet", records)
    write_runs(tmp_path / "runs.parquet", runs)
    return tmp_path / "results.parquet"


def test_report_has_the_papers_tables_figures_and_summary(results, tmp_path):
    html_path = write_report(results, tmp_path / "report", runs_path=results.parent / "runs.parquet")
    html = html_path.read_text()
    for needle in ("Table 1: utility", "Table 2: membership", "dm ipc=10", "original", "95.0 [93.0, 97.0]",
                   "AUC, control (no model)", "weights missing", "nn-distance", "privbench-coreset"):
        assert needle in html, needle
    assert "dm ipc=10 is best" in html  # summary: lowest membership AUC
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 2  # SSIM bar chart and the privacy-utility plot, inlined
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "http://" not in html and "https://" not in html  # opens offline
    assert (tmp_path / "report" / "figures" / "metric_ssim.png").is_file()
    assert (tmp_path / "report" / "figures" / "privacy_utility.png").is_file()


def test_private_figures_only_when_public_or_asked(results, tmp_path):
    from PIL import Image

    job = results.parent / "jobs" / "abc"
    job.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(job / "reconstructions.png")
    Image.new("RGB", (8, 8)).save(job / "roc.png")
    (job / "job.json").write_text(json.dumps({"kind": "audit", "label": "audit autoencoder"}))
    r, runs = _rows_for("dm", 10, 0.5, 0.8, 0.9)
    write_runs(job / "runs.parquet", [dict(runs[0], dataset="my-hospital")])
    write_results(results, [dict(x, dataset="my-hospital") for x in r])

    hidden = write_report(results, tmp_path / "a", jobs_dir=results.parent / "jobs").read_text()
    assert "withheld" in hidden and hidden.count("data:image/png") == 2 + 1  # charts + roc, no reconstructions
    shown = write_report(results, tmp_path / "b", jobs_dir=results.parent / "jobs", show_private_images=True)
    assert "private training images; bottom" in shown.read_text()


def test_report_command_and_bad_input(cli, results, tmp_path):
    result = cli("report", results, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert (tmp_path / "out" / "report.html").exists()
    assert_one_line_error(cli("report", tmp_path / "missing.parquet"), "no such results file")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    assert_one_line_error(cli("report", bad), "not a readable parquet")
