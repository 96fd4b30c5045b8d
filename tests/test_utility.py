"""Utility scores of a release, through the API and through ``privbench distill``."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from privbench.api import RunContext
from privbench.config import build_config
from privbench.data import load_dataset
from privbench.errors import UserError
from privbench.utility import UtilityConfig, check_models, evaluate_release, train_on_release


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def release(digits):
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry

    return run_distiller(get_registry(), "random", digits, 5, None, RunContext(seed=0))


def test_evaluate_release_rows_carry_n_and_ci(digits, release):
    config = UtilityConfig(epochs=20, width=16)
    runs = evaluate_release(release, digits, models=["convnet"], seeds=2, config=config, ctx=RunContext(seed=4))
    assert len(runs) == 1
    info, rows = runs[0]
    assert info.job == "utility/convnet" and info.task == "utility" and info.evaluator == "convnet"
    assert info.release_method == "random" and info.release_ipc == 5 and info.dataset == "digits"
    assert info.config["options"]["epochs"] == 20 and info.seed == 4 and info.elapsed_s > 0
    assert [r.measure for r in rows] == ["accuracy", "balanced_accuracy", "roc_auc"]
    for r in rows:
        assert r.n == 2 and r.status == "ok" and r.higher_is_better
        assert r.ci_low <= r.value <= r.ci_high
        assert r.detail["seeds"] == [4, 5] and len(r.detail["per_seed"]) == 2
        assert r.detail["test_images"] == len(digits.test)
    assert rows[0].value > 0.3 and rows[2].value > 0.8  # chance: 0.1 and 0.5, after 20 steps on 50 images


def test_train_on_release_is_reproducible(digits, release):
    import torch

    config = UtilityConfig(epochs=1, width=8)
    a = train_on_release(release, digits, "convnet", 7, config, RunContext())
    b = train_on_release(release, digits, "convnet", 7, config, RunContext())
    assert not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_models_and_options_are_checked():
    check_models(["convnet", "ResNet18"])
    with pytest.raises(UserError, match="valid models"):
        check_models(["convnet", "vit"])
    with pytest.raises(UserError):
        check_models([])
    config = build_config(UtilityConfig, {"epochs": "5", "dsa": "false", "norm": "batchnorm"}, owner="utility")
    assert config.epochs == 5 and config.dsa is False and config.norm == "batchnorm"
    with pytest.raises(UserError, match="epochs"):
        build_config(UtilityConfig, {"epochs": "0"}, owner="utility")
    with pytest.raises(UserError, match="unknown augmentation"):
        build_config(UtilityConfig, {"dsa_strategy": "color_warp"}, owner="utility")


def test_distill_command_writes_utility_results(tmp_path):
    from privbench.cli import main

    out = tmp_path / "release"
    argv = ["distill", "--data", "digits", "--method", "random", "--ipc", "5", "--out", str(out),
            "--eval-seeds", "2", "--eval-set", "epochs=5", "--device", "cpu", "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    records = pq.read_table(out / "results.parquet").to_pylist()
    assert {r["measure"] for r in records} == {"accuracy", "balanced_accuracy", "roc_auc"}
    for r in records:
        assert r["task"] == "utility" and r["evaluator"] == "convnet" and r["n"] == 2
        assert r["ci_low"] is not None and r["ci_low"] <= r["value"] <= r["ci_high"]
        assert json.loads(r["detail"])["test_images"] > 0
    runs = pq.read_table(out / "runs.parquet").to_pylist()
    assert len(runs) == 1 and json.loads(runs[0]["config"])["options"]["epochs"] == 5


def test_a_resnet_with_one_seed_reports_no_interval(digits, release):
    runs = evaluate_release(release, digits, models=["resnet18"], seeds=1, config=UtilityConfig(epochs=1),
                            ctx=RunContext())
    info, rows = runs[0]
    assert info.evaluator == "resnet18"
    assert all(r.n == 1 and r.ci_low is None and r.ci_high is None for r in rows)


def test_nested_progress_bars_over_several_seeds(digits, release):
    import io

    from rich.console import Console

    from privbench.progress import RichProgress

    console = Console(file=io.StringIO(), force_terminal=False)
    ctx = RunContext(progress=RichProgress(console=console))
    runs = evaluate_release(release, digits, models=["convnet"], seeds=3, config=UtilityConfig(epochs=1, width=8), ctx=ctx)
    assert all(0 <= r.ci_low <= r.value <= r.ci_high <= 1 for r in runs[0][1])
    assert "utility convnet" in console.file.getvalue()
