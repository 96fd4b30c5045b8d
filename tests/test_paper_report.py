"""A paper's published figures beside the measured ones: every number present, matched or "not run"."""

from __future__ import annotations

import json
import re

import pytest

from helpers import assert_one_line_error
from privbench.errors import UserError
from privbench.report.paper import load_paper, paper_section


def _row(dataset, release, evaluator, measure, value, low, high, game=None, n=40):
    return {"dataset": dataset, "release_method": release, "release_ipc": None if release == "original" else 10,
            "release_seed": 0, "evaluator": evaluator, "measure": measure, "subset": "all", "value": value,
            "ci_low": low, "ci_high": high, "n": n, "status": "ok", "game": game, "detail": "{}"}


def test_the_registry_holds_every_published_number():
    paper = load_paper("razi2025")
    assert len(paper.figures) == 4 * 3 + 4 * 6 + 6 * 4 * 3  # Table 1, Table 2, six metrics of Figs. 15-20
    assert {f["measure"] for f in paper.figures} == set(paper.measures)
    cell = [f for f in paper.figures if f["measure"] == "ssim" and f["dataset"] == "COVID-19"
            and f["release"] == "original"]
    assert [f["value"] for f in cell] == [0.9015]


def test_each_published_number_is_beside_its_measured_value_or_marked_not_run():
    paper = load_paper("razi2025")
    records = [
        _row("covid19-binary", "original", "resnet50", "accuracy", 0.93, 0.90, 0.95),  # 92.86 within
        _row("covid19-binary", "dm", "mia", "loss.auc", 0.60, 0.58, 0.62, game="method"),  # 0.5010 outside
        _row("covid19-binary", "dm", "mia", "loss.auc", 0.55, 0.50, 0.60, game="release"),  # within
        _row("covid19-binary", "dm", "mia", "lira_offline.auc", 0.9, 0.8, 0.95, game="method"),  # not a paper figure
    ]
    html = paper_section(records, [], paper)
    body = html.split("<tbody>")[-1] if "<tbody>" in html else html
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    data_rows = [r for r in rows if "<td" in r]
    assert len(data_rows) == len(paper.figures) + 1  # the DM MIA figure is matched by two rows (two games)
    assert sum("not run" in r for r in data_rows) == len(paper.figures) - 2
    for fig in paper.figures:
        assert f"{fig['value']:.4g}" in html
    accuracy = next(r for r in data_rows if "accuracy" in r and "COVID-19" in r and ">original<" in r)
    assert "93 [90, 95]" in accuracy and "within the CI" in accuracy
    method = next(r for r in data_rows if "method game" in r)
    assert "outside the CI" in method
    release = next(r for r in data_rows if "release game" in r)
    assert "within the CI" in release


def test_an_unknown_paper_is_one_line(cli, tmp_path):
    with pytest.raises(UserError, match="unknown paper"):
        load_paper("nope")
    out = tmp_path / "a"
    assert cli("audit", "--data", "digits", "--release", "original", "--attack", "aia", "--set", "aia.target_steps=2",
               "--out", out, "-q").code == 0
    assert_one_line_error(cli("report", out / "results.parquet", "--paper", "nope"), "unknown paper")
    assert not (out / "report.html").exists()


def test_a_suite_that_declares_the_paper_gets_the_section_from_its_table(cli, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\ndatasets = ["digits"]\n[[releases]]\nmethod = "original"\n'
                     '[utility]\nmodels = ["convnet"]\nseeds = 2\nconfig = { epochs = 1, width = 8 }\n'
                     '[report]\nreproduces = "razi2025"\n')
    out = tmp_path / "run"
    result = cli("run", suite, "--out", out, "-q")
    assert result.code == 0, result.err
    html = (out / "report.html").read_text()
    assert "Published figures beside measured ones" in html and html.count("class='na'>not run<") == 108
    # From the Parquet alone: a report written elsewhere finds the declaration in the table.
    assert cli("report", out / "results.parquet", "--out", tmp_path / "again").code == 0
    assert "Published figures beside measured ones" in (tmp_path / "again" / "report.html").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(suite.read_text().replace("razi2025", "nope"))
    assert_one_line_error(cli("run", bad, "--out", tmp_path / "bad-run"), "unknown paper")
    assert not (tmp_path / "bad-run").exists()


def test_the_utility_runs_say_which_weights_the_resnet_started_from(tmp_path, monkeypatch):
    from privbench.report.paper import _utility_weights

    runs = [{"task": "utility", "evaluator": "resnet50", "config": json.dumps({"model": "resnet50",
                                                                                "weights_loaded": None})},
            {"task": "utility", "evaluator": "resnet18", "config": json.dumps({"weights_loaded": "/w/r18.pth"})},
            {"task": "audit", "evaluator": "mia", "config": json.dumps(
                {"settings": {"target_recipe": {"model": "resnet50", "weights_loaded": "/w/r50.pth"}}})}]
    text = _utility_weights(runs)
    assert "resnet50 (utility): trained from scratch" in text
    assert "resnet18 (utility): ImageNet weights from /w/r18.pth" in text
    assert "resnet50 (mia target): ImageNet weights from /w/r50.pth" in text


def test_a_resnet_target_starts_from_the_hub_file_and_its_recipe_says_so(tmp_path, monkeypatch):
    import torch
    import torchvision

    from privbench_builtins.attacks._common import TargetSpec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = TargetSpec(model="resnet18", weights="imagenet")
    assert spec.recipe(20)["weights_loaded"] is None  # absent: trained from scratch, and said
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), checkpoints / "resnet18-f37072fd.pth")
    assert spec.recipe(20)["weights_loaded"] == str(checkpoints / "resnet18-f37072fd.pth")
    assert spec.utility_config(20).weights == "imagenet"
    assert TargetSpec(model="convnet", weights="imagenet").recipe(20)["weights_loaded"] is None
