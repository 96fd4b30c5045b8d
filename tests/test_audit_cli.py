"""``privbench audit`` end to end with the built-in attacks, and the bad input it must refuse."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from helpers import assert_one_line_error, write_medmnist_npz
from privbench.api import Release
from privbench.releases import MANIFEST_FILE, save_release

CHEAP = [
    "--set", "mia.shadows=4", "--set", "mia.max_members=60", "--set", "mia.max_nonmembers=60",
    "--set", "mia.resamples=50",
    "--set", "autoencoder.min_steps=20", "--set", "autoencoder.max_images=40", "--set", "autoencoder.resamples=50",
    "--set", "aia.max_members=60", "--set", "aia.max_nonmembers=60", "--set", "aia.resamples=20",
    "--set", "canary.canaries=40", "--set", "canary.resamples=20",
]
TARGET = {"target_epochs": "5", "target_width": "16", "target_depth": "2"}


def _target_options(*attacks):
    return [x for a in attacks for k, v in TARGET.items() for x in ("--set", f"{a}.{k}={v}")]


def _assert_no_output(out):
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


@pytest.fixture(scope="module")
def digits_release(tmp_path_factory):
    from privbench.data import load_dataset
    from privbench.api import RunContext
    from privbench.engine import run_distiller
    from privbench.plugins import get_registry

    data = load_dataset("digits")
    release = run_distiller(get_registry(), "random", data, 2, None, RunContext(seed=0))
    out = tmp_path_factory.mktemp("releases") / "random2"
    save_release(release, out)
    return out


def test_audit_runs_every_builtin_attack_end_to_end(cli, tmp_path, digits_release):
    out = tmp_path / "audit"
    result = cli("audit", "--data", "digits", "--release", digits_release, "--out", out, "-q", "--device", "cpu",
                 "--metric", "ssim", "--metric", "lpips", *CHEAP, *_target_options("mia", "aia", "canary"))
    assert result.code == 0, result.err
    records = pq.read_table(out / "results.parquet").to_pylist()
    assert {r["evaluator"] for r in records} == {"autoencoder", "mia", "aia", "canary"}
    by_key = {(r["evaluator"], r["measure"], r["subset"]): r for r in records}
    for key in [("autoencoder", "reconstruction.ssim", "all"), ("autoencoder", "memorisation.pixel.ssim", "all"),
                ("autoencoder", "memorisation.feature.ssim", "all"), ("autoencoder", "memorisation.near_copies", "all"),
                ("autoencoder", "reconstruction_gap.ssim", "all"), ("autoencoder", "reconstruction_mia.auc", "null"),
                ("aia", "with_model.auc", "all"), ("aia", "baseline.auc", "all"), ("aia", "risk", "all"),
                ("canary", "canary.release_distance.auc", "all"), ("canary", "canary.loss.guess_accuracy", "all")]:
        assert by_key[key]["status"] == "ok" and by_key[key]["ci_low"] is not None, key
    for variant in ("loss", "lira_offline", "lira_online", "rmia", "release_distance"):
        for subset in ("all", "null", "class=7", "nonmembers=val", "init_members"):
            assert by_key[("mia", f"{variant}.auc", subset)]["status"] == "ok", (variant, subset)
            for stat in ("tpr_at_fpr_0.01", "tpr_at_fpr_0.001"):  # 60 non-members resolve neither rate
                assert by_key[("mia", f"{variant}.{stat}", subset)]["status"] == "insufficient"
        assert by_key[("mia", f"{variant}.balanced_accuracy", "all")]["status"] == "ok"
    assert {r["game"] for r in records if r["evaluator"] == "mia"} == {"release"}  # privbench audit's default
    runs = {r["evaluator"]: json.loads(r["config"]) for r in pq.read_table(out / "runs.parquet").to_pylist()}
    settings = runs["mia"]["settings"]["mia"]
    assert settings["game"] == "release" and settings["shadows"]["sets"] == 4
    assert settings["target_recipe"]["optimiser_steps"] == 5 and runs["mia"]["release_provenance"] == "present"
    copies = by_key[("autoencoder", "memorisation.near_copies", "all")]
    assert copies["value"] == 1.0 and json.loads(copies["detail"])["near_copies"] == 20  # random = real copies
    lpips = by_key[("autoencoder", "reconstruction.lpips", "all")]
    assert lpips["status"] == "unavailable" and lpips["value"] is None
    assert {r["release_method"] for r in records} == {"random"} and {r["release_ipc"] for r in records} == {2}
    bound = by_key[("canary", "canary.epsilon_lower", "all")]
    assert bound["n"] == 40 and json.loads(bound["detail"])["theoretical_epsilon"] == "inf"
    assert len(pq.read_table(out / "runs.parquet")) == 4  # one run per attack
    for figure in ("roc.png", "reconstructions.png", "memorisation.png"):  # digits are public
        assert (out / figure).stat().st_size > 500, figure
    assert "mia" in result.out and "class=" not in result.out  # per-class rows stay in the table

    from privbench.report.tables import privacy_table

    row = privacy_table(records)[0]
    assert row["mia_loss_auc"].value is not None and row["aia_auc"].value is not None
    assert row["mia_tpr_1"].status == "insufficient" and row["aia_baseline_auc"].value is not None
    assert row["game"] == "release" and row["mia_steps"] == "5"


def test_private_images_stay_out_of_figures_unless_allowed(cli, tmp_path):
    data = f"npz:{write_medmnist_npz(tmp_path / 'private.npz', n=(30, 10, 10), size=8)}"
    fast = ["--attack", "autoencoder", "--metric", "ssim", "-q", "--set", "autoencoder.min_steps=5",
            "--set", "autoencoder.resamples=20"]
    hidden = tmp_path / "hidden"
    result = cli("audit", "--data", data, "--release", "original", "--out", hidden, *fast)
    assert result.code == 0, result.err
    assert {p.name for p in hidden.iterdir()} == {"results.parquet", "runs.parquet", ".privbench-output.json"}
    assert "--show-private-images" in result.err
    shown = tmp_path / "shown"
    result = cli("audit", "--data", data, "--release", "original", "--out", shown, "--show-private-images", *fast)
    assert result.code == 0, result.err
    assert {"reconstructions.png", "memorisation.png"} <= {p.name for p in shown.iterdir()}


def _release_dir(tmp_path, name, images, labels=None, **manifest):
    labels = labels if labels is not None else torch.arange(images.shape[0]) % 10
    directory = tmp_path / name
    save_release(Release(images, labels, {"method": "random", "ipc": 1, **manifest}), directory)
    return directory


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: _release_dir(p, "grey8", torch.rand(10, 1, 8, 8)), "(1, 8, 8)"),
        (lambda p: _release_dir(p, "rgb", torch.rand(10, 3, 16, 16)), "(3, 16, 16)"),
        (lambda p: _release_dir(p, "other", torch.rand(10, 1, 16, 16), source_fingerprint="0" * 64),
         "built from another dataset"),
        (lambda p: _release_dir(p, "labels", torch.rand(10, 1, 16, 16), torch.arange(10) + 5), "classes"),
    ],
    ids=["image-size", "channels", "fingerprint", "labels"],
)
def test_a_release_that_does_not_fit_the_data_is_refused(cli, tmp_path, make, needle):
    release = make(tmp_path)
    out = tmp_path / "audit"
    assert_one_line_error(cli("audit", "--data", "digits", "--release", release, "--out", out, "-q"), needle)
    _assert_no_output(out)


def test_a_release_directory_without_its_manifest_is_refused(cli, tmp_path, digits_release):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(digits_release, bare)
    (bare / MANIFEST_FILE).unlink()
    out = tmp_path / "audit"
    assert_one_line_error(cli("audit", "--data", "digits", "--release", bare, "--out", out, "-q"),
                          "no release.json manifest")
    _assert_no_output(out)
    assert_one_line_error(cli("audit", "--data", "digits", "--release", tmp_path / "nowhere", "--out", out, "-q"),
                          "no such release directory")
    _assert_no_output(out)


def test_an_empty_release_or_bad_attack_option_is_refused(cli, tmp_path):
    from privbench.data import load_dataset

    empty = _release_dir(tmp_path, "empty", torch.empty(0, 1, 16, 16), torch.empty(0, dtype=torch.long),
                         source_fingerprint=load_dataset("digits").fingerprint)
    out = tmp_path / "audit"
    assert_one_line_error(cli("audit", "--data", "digits", "--release", empty, "--out", out, "-q",
                              "--attack", "mia", "--set", "mia.variants=release_distance"), "no images")
    _assert_no_output(out)
    assert_one_line_error(cli("audit", "--data", "digits", "--release", "original", "--out", out, "-q",
                              "--set", "mia.shadows=1"), "shadows")
    _assert_no_output(out)


def test_lira_reports_a_pipeline_it_cannot_rerun_instead_of_failing(cli, tmp_path):
    """A release whose distiller is not installed: LiRA rows are unavailable, the other attacks still run."""
    from privbench.data import load_dataset

    data = load_dataset("digits")
    release = _release_dir(tmp_path, "foreign", data.train.images[:20].clone(), data.train.labels[:20].clone(),
                           source_fingerprint=data.fingerprint)
    manifest = json.loads((release / MANIFEST_FILE).read_text())
    manifest["method"] = "not-installed"
    (release / MANIFEST_FILE).write_text(json.dumps(manifest))
    out = tmp_path / "audit"
    result = cli("audit", "--data", "digits", "--release", release, "--out", out, "-q", "--attack", "mia",
                 "--set", "mia.variants=loss,lira_offline", *CHEAP[:8], *_target_options("mia"))
    assert result.code == 0, result.err
    rows = {(r["measure"], r["subset"]): r for r in pq.read_table(out / "results.parquet").to_pylist()}
    assert rows[("loss.auc", "all")]["status"] == "ok"
    lira = rows[("lira_offline.auc", "all")]
    assert lira["status"] == "unavailable" and "not-installed" in json.loads(lira["detail"])["reason"]


def test_a_release_without_a_source_fingerprint_is_audited_with_a_warning(cli, tmp_path):
    from privbench.data import load_dataset

    data = load_dataset("digits")
    release = _release_dir(tmp_path, "unsigned", data.train.images[:20].clone(), data.train.labels[:20].clone())
    out = tmp_path / "audit"
    result = cli("audit", "--data", "digits", "--release", release, "--out", out, "-q", "--attack", "mia",
                 "--set", "mia.variants=release_distance", "--set", "mia.resamples=20")
    assert result.code == 0, result.err
    assert "no source dataset fingerprint" in " ".join(result.err.split())
