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


def _rows_for(method, ipc, auc, ssim, acc, verbatim=0, confounded_loss=False):
    info = dict(dataset="digits", dataset_fingerprint="f" * 64, release_method=method, release_ipc=ipc,
                release_seed=0, device="cpu")
    utility = RunInfo(job=f"utility {method}", task="utility", evaluator="convnet", **info)
    mia = RunInfo(job=f"mia {method}", task="audit", evaluator="mia", **info)
    aia = RunInfo(job=f"aia {method}", task="audit", evaluator="aia", **info)
    ae = RunInfo(job=f"ae {method}", task="audit", evaluator="autoencoder", **info)
    third = RunInfo(job=f"third {method}", task="audit", evaluator="nn-distance", plugin_package="privbench-coreset",
                    **info)
    recipe = {"target_recipe": {"optimiser_steps": 300}}
    tpr = {"true_positives": int(auc * 30), "members": 600, "fpr_achieved": 0.0093, **recipe}
    records = result_records(utility, [ResultRow("balanced_accuracy", acc, acc - 0.02, acc + 0.02, 3, True),
                                       ResultRow("accuracy", acc, acc - 0.02, acc + 0.02, 3, True)])
    records += result_records(mia, [
        ResultRow("loss.auc", auc + 0.2, auc + 0.15, auc + 0.25, 1200, True, detail={**recipe,
                  "confounded": confounded_loss}, game="release"),
        ResultRow("loss.auc", 0.7 if confounded_loss else 0.5, 0.65 if confounded_loss else 0.45, 0.75 if
                  confounded_loss else 0.55, 600, True, subset="null", game="release"),
        ResultRow("lira_online.tpr_at_fpr_0.01", auc / 20, 0.0, auc / 10, 1200, True, detail=tpr, game="release"),
        ResultRow("lira_online.auc", auc, auc - 0.03, auc + 0.03, 1200, True, detail=recipe, game="release"),
        ResultRow.insufficient("lira_online.tpr_at_fpr_0.001", "1200 non-members cannot resolve an FPR of 0.001",
                               n=1200, higher_is_better=True, game="release"),
        ResultRow("rmia.auc", auc - 0.01, auc - 0.04, auc + 0.02, 8000, True,
                  detail={**recipe, "targets": 8, "mean_over_targets": auc, "min_over_targets": auc - 0.05,
                          "max_over_targets": auc + 0.05, "pooled_targets": 8}, game="method")])
    records += result_records(aia, [ResultRow("with_model.auc", 0.7, 0.65, 0.75, 500, True,
                                              detail={"mixes_utility": True}, game="release"),
                                    ResultRow("baseline.auc", 0.69, 0.64, 0.74, 500, True, game="release"),
                                    ResultRow("risk", 0.01, -0.05, 0.07, 400, True, detail={"mixes_utility": True},
                                              game="release")])
    records += result_records(ae, [ResultRow("reconstruction.ssim", ssim, ssim - 0.01, ssim + 0.01, 500, True),
                                   ResultRow("reconstruction_gap.ssim", 0.002, -0.004, 0.008, 1000, True,
                                             game="release"),
                                   ResultRow("memorisation.verbatim", verbatim / 20, 0 if not verbatim else 0.8,
                                             0.17 if not verbatim else 1.0, 20, True,
                                             detail={"verbatim": verbatim, "released_checked": 20}, game="release"),
                                   ResultRow.unavailable("reconstruction.lpips", "weights missing")])
    records += result_records(third, [ResultRow("auc", 0.61, 0.58, 0.64, 900, True)])
    return records, [run_record(i) for i in (utility, mia, aia, ae, third)]


@pytest.fixture
def results(tmp_path):
    records, runs = [], []
    for method, ipc, auc, ssim, acc, verbatim, confounded in (("original", None, 0.9, 0.97, 0.95, 20, False),
                                                              ("random", 10, 0.51, 0.9, 0.9, 20, False),
                                                              ("dm", 10, 0.55, 0.80, 0.93, 0, True)):
        r, u = _rows_for(method, ipc, auc, ssim, acc, verbatim, confounded)
        records += r
        runs += u
    write_results(tmp_path / "results.parquet", records)
    write_runs(tmp_path / "runs.parquet", runs)
    return tmp_path / "results.parquet"


def test_report_has_the_papers_tables_figures_and_summary(results, tmp_path):
    html_path = write_report(results, tmp_path / "report", runs_path=results.parent / "runs.parquet")
    html = html_path.read_text()
    for needle in ("Table 1: utility", "Table 2: membership", "dm ipc=10", "original", "95.0 [93.0, 97.0]",
                   "AUC, baseline (untrained network)", "weights missing", "nn-distance", "privbench-coreset",
                   "AUC: RMIA", "insufficient", "confounded", "8 targets: mean", "risk (Anonymeter)",
                   "mixes the release&#x27;s utility with leakage", "SSIM gap"):
        assert needle in html, needle
    summary = html[html.index("<h2>Summary</h2>"):html.index("Table 1: utility")]
    # the verdict leads with the copies, then the exposed members, then the AUC ranking
    assert summary.index("Private images in the release") < summary.index("Members exposed") < summary.index(
        "Membership privacy")
    assert "20 of 20 released images verbatim" in summary
    # random's AUC is lowest, but it publishes patients' images: never best
    assert "random ipc=10 is best" not in summary and "not ranked: original, random ipc=10" in summary
    assert "dm ipc=10 (release game) is the only release without private images in it" in summary
    # dm's loss attack is confounded: it is named so, and it is not its strongest attack
    assert "loss confounded" in summary
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 2  # SSIM bar chart and the privacy-utility plot, inlined
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "http://" not in html and "https://" not in html  # opens offline
    assert (tmp_path / "report" / "figures" / "metric_ssim.png").is_file()
    assert (tmp_path / "report" / "figures" / "privacy_utility.png").is_file()


def test_the_strongest_attack_is_never_a_confounded_one(results):
    from privbench.report.tables import best_mia, index
    from privbench.results import read_records

    idx = index(read_records(results))
    variant, cell = best_mia(idx, "digits", "dm ipc=10", "auc", "release")
    assert variant == "lira_online" and cell.value == pytest.approx(0.55)  # loss (0.75) is confounded
    variant, _ = best_mia(idx, "digits", "original", "auc", "release")
    assert variant == "loss"


def test_private_figures_only_when_public_or_asked(results, tmp_path):
    from PIL import Image

    job = results.parent / "jobs" / "abc"
    job.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(job / "reconstructions.png")
    Image.new("RGB", (8, 8)).save(job / "roc.png")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(job / "plugin_patients.png")  # a plugin's figure: private unless said
    Image.new("RGB", (8, 8), (7, 7, 7)).save(job / "plugin_curve.public.png")  # said to show no image of the data
    (job / "job.json").write_text(json.dumps({"kind": "audit", "label": "audit autoencoder"}))
    r, runs = _rows_for("dm", 10, 0.5, 0.8, 0.9)
    write_runs(job / "runs.parquet", [dict(runs[0], dataset="my-hospital")])
    write_results(results, [dict(x, dataset="my-hospital") for x in r])

    hidden = write_report(results, tmp_path / "a", jobs_dir=results.parent / "jobs").read_text()
    # charts + roc + the plugin's public curve; no reconstructions and not the plugin's other figure
    assert "withheld" in hidden and hidden.count("data:image/png") == 2 + 2
    assert "plugin_patients" not in hidden and "plugin_curve.public" in hidden
    shown = write_report(results, tmp_path / "b", jobs_dir=results.parent / "jobs", show_private_images=True)
    assert "private training images; bottom" in shown.read_text() and "plugin_patients" in shown.read_text()
    assert shown.read_text().count("data:image/png") == 2 + 4


def test_report_command_and_bad_input(cli, results, tmp_path):
    result = cli("report", results, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert (tmp_path / "out" / "report.html").exists()
    assert_one_line_error(cli("report", tmp_path / "missing.parquet"), "no such results file")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    assert_one_line_error(cli("report", bad), "not a readable parquet")


def test_rows_with_different_target_steps_carry_a_warning(tmp_path):
    records = []
    for method, steps in (("original", 38), ("dm", 300)):
        r, _ = _rows_for(method, None if method == "original" else 10, 0.6, 0.9, 0.9)
        for row in r:
            if row["evaluator"] == "mia" and row["detail"]:
                detail = json.loads(row["detail"])
                if "target_recipe" in detail:
                    detail["target_recipe"]["optimiser_steps"] = steps
                    row["detail"] = json.dumps(detail)
        records += r
    write_results(tmp_path / "results.parquet", records)
    html = write_report(tmp_path / "results.parquet", tmp_path / "report").read_text()
    assert "different numbers of optimiser steps (38, 300)" in html


def _dp_rows(epsilon, accuracy, bound, violation=False):
    info = dict(dataset="digits", dataset_fingerprint="f" * 64, release_method="dp-dm", release_ipc=10,
                release_seed=0, release_epsilon=epsilon, device="cpu")
    utility = RunInfo(job=f"utility dp-dm {epsilon}", task="utility", evaluator="convnet", **info)
    canary = RunInfo(job=f"canary dp-dm {epsilon}", task="audit", evaluator="canary", **info)
    detail = {"score": "loss", "guesses": 100, "right": 57, "delta": 1e-5, "violation": violation,
              "theoretical_epsilon": "inf" if epsilon == float("inf") else epsilon}
    records = result_records(utility, [ResultRow("balanced_accuracy", accuracy, accuracy - 0.03, accuracy + 0.03, 3,
                                                 True)])
    records += result_records(canary, [ResultRow("canary.epsilon_lower", bound, bound, float("inf"), 100, True,
                                                 detail=detail),
                                       ResultRow("canary.loss.guess_accuracy", 0.57, 0.47, 0.67, 100, True)])
    return records


def test_releases_that_differ_only_in_epsilon_stay_apart_with_their_guarantee_and_bound(results, tmp_path):
    from privbench.results import read_records

    records = read_records(results)
    for epsilon, accuracy, bound in ((1.0, 0.6, 0.0), (10.0, 0.7, 0.3), (float("inf"), 0.8, 1.2)):
        records += _dp_rows(epsilon, accuracy, bound)
    write_results(results, records)
    html = write_report(results, tmp_path / "report").read_text()
    for label in ("dp-dm ipc=10 ε=1", "dp-dm ipc=10 ε=10", "dp-dm ipc=10 ε=∞"):
        assert label in html, label
    table1 = html[html.index("Table 1: utility"):html.index("Table 2: membership")]
    assert "ε guaranteed" in table1 and "∞ (none)" in table1  # dm and the rest guarantee nothing
    guarantees = html[html.index("Guarantees and canary audits"):]
    assert "within the guarantee" in guarantees and "57 of 100" in guarantees
    assert "no guarantee to check" in guarantees  # epsilon = inf
    assert "EXCEEDS" not in guarantees
    assert (tmp_path / "report" / "figures" / "utility_epsilon.png").is_file()
    summary = html[html.index("<h2>Summary</h2>"):html.index("Table 1: utility")]
    assert "dp-dm ipc=10 ε=10: proves ε = 10, canaries show ε ≥ 0.30 (within it)" in summary


def test_a_bound_above_the_guarantee_is_called_a_bug(results, tmp_path):
    write_results(results, _dp_rows(0.5, 0.6, 0.9, violation=True))
    html = write_report(results, tmp_path / "report").read_text()
    assert "EXCEEDS the guarantee" in html and "ABOVE the guarantee" in html


def test_a_results_table_from_before_the_epsilon_column_still_reads(results, tmp_path):
    import pyarrow.parquet as pq

    from privbench.results import read_results

    table = pq.read_table(results)
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop(["release_epsilon"]), old)
    rows = read_results(old)
    assert rows and all(r["release_epsilon"] is None for r in rows)
    assert "Table 1: utility" in write_report(old, tmp_path / "old-report").read_text()


def test_a_plugins_confounded_row_is_marked_in_all_results(tmp_path):
    info = dict(dataset="digits", dataset_fingerprint="f" * 64, release_method="dm", release_ipc=10, release_seed=0,
                device="cpu")
    third = RunInfo(job="third dm", task="audit", evaluator="nn-distance", plugin_package="privbench-coreset", **info)
    rows = [ResultRow("auc", 0.61, 0.58, 0.64, 900, True, detail={"confounded": True}),
            ResultRow("gap", 0.02, 0.01, 0.03, 900, True)]
    write_results(tmp_path / "results.parquet", result_records(third, rows))
    write_runs(tmp_path / "runs.parquet", [run_record(third)])
    html = write_report(tmp_path / "results.parquet", tmp_path / "r").read_text()
    section = html[html.index("<h2>All results</h2>"):html.index("<h2>Runs and settings</h2>")]
    assert "nn-distance" in section and section.count("confounded") == 1
