"""``privbench distill`` says up front what its utility evaluation will cost, and how to cut it."""

from __future__ import annotations

import re

from privbench.cli.distill_cmd import command, evaluation_plan
from privbench.utility import UtilityConfig


def _plan_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("utility evaluation:")]


def test_the_plan_reflects_the_settings_given(cli, tmp_path):
    out = tmp_path / "release"
    result = cli("distill", "--data", "digits", "--method", "random", "--ipc", "3", "--out", out,
                 "--eval-seeds", "2", "--eval-set", "epochs=1", "--device", "cpu", "-q")
    assert result.code == 0, result.err
    (line,) = _plan_lines(result.err)
    assert "2 classifier(s) (convnet x 2 seed(s)), 1 epoch(s) each on the release's 30 images" in line
    assert "2 optimiser steps in all" in line  # 30 images are one batch of 256
    assert "--no-evaluate" in line and "--eval-seeds 1" in line
    assert "epochs=" not in line  # one epoch cannot be made shorter
    assert (out / "results.parquet").is_file()


def test_no_plan_without_evaluation(cli, tmp_path):
    result = cli("distill", "--data", "digits", "--method", "random", "--ipc", "1", "--out", tmp_path / "r",
                 "--no-evaluate", "-q")
    assert result.code == 0, result.err
    assert not _plan_lines(result.err)


def test_the_default_plan_names_its_cost_and_real_options():
    line = evaluation_plan(["convnet"], 3, UtilityConfig(), 100, 1000, 360)
    assert "3 classifier(s) (convnet x 3 seed(s)), 1000 epoch(s) each on the release's 100 images" in line
    assert "3000 optimiser steps" in line and "scored on 360 real test images" in line
    assert "--eval-set epochs=100" in line
    options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    for flag in re.findall(r"--[a-z-]+", line):
        assert flag in options, flag


def test_a_release_of_fixed_size_names_the_training_set():
    line = evaluation_plan(["convnet", "resnet18"], 1, UtilityConfig(epochs=10), None, 1079, 359)
    assert "2 classifier(s) (convnet + resnet18 x 1 seed(s))" in line
    assert "the private training set has 1079 images" in line and "--eval-seeds" not in line
