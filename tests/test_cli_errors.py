"""Bad input: one line on stderr, exit code 2, no traceback, no partial output."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_one_line_error, write_medmnist_npz


def _distill(cli, data, out, *extra):
    return cli("distill", "--data", data, "--method", "random", "--ipc", "2", "--out", out, "--no-evaluate", "-q", *extra)


def _assert_no_output(out):
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert leftovers == []


def _bad_npz(tmp_path, name, **changes):
    base = dict(np.load(write_medmnist_npz(tmp_path / f"base-{name}.npz")))
    for key, value in changes.items():
        if value is None:
            base.pop(key)
        else:
            base[key] = value
    path = tmp_path / f"{name}.npz"
    np.savez(path, **base)
    return path


def _png(path, value=10):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6), value, np.uint8)).save(path)


def test_missing_path(cli, tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"npz:{tmp_path / 'missing.npz'}", out), "no such file")
    _assert_no_output(out)


def test_corrupt_npz(cli, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00" * 100)
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"npz:{bad}", out), "corrupt or truncated")
    _assert_no_output(out)


def test_truncated_npz(cli, tmp_path):
    good = write_medmnist_npz(tmp_path / "good.npz", n=(200, 40, 40), size=16)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-500])
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"npz:{cut}", out))
    _assert_no_output(out)


def test_npz_that_needs_pickle(cli, tmp_path):
    path = _bad_npz(tmp_path, "pickled", train_labels=np.array([[1]] * 30, dtype=object))
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"npz:{path}", out), "pickle")
    _assert_no_output(out)


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"test_images": None}, "lacks key(s) test_images"),
        ({"train_images": np.zeros((30, 2, 2, 2, 2), np.uint8)}, "shape"),
        ({"val_labels": np.zeros((9, 1), np.uint8)}, "10 images but 9 labels"),
    ],
)
def test_wrong_keys_or_shapes(cli, tmp_path, changes, needle):
    path = _bad_npz(tmp_path, "wrong", **changes)
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"npz:{path}", out), needle)
    _assert_no_output(out)


def test_nan_pixels(cli, tmp_path):
    images = np.random.default_rng(0).random((30, 8, 8)).astype(np.float32)
    images[3, 2, 2] = np.nan
    path = _bad_npz(tmp_path, "nan", train_images=images)
    assert_one_line_error(_distill(cli, f"npz:{path}", tmp_path / "out"), "nan")


def test_folder_with_one_class_only(cli, tmp_path):
    for i in range(4):
        _png(tmp_path / "data" / "only" / f"{i}.png")
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"folder:{tmp_path / 'data'}", out), "at least two classes")
    _assert_no_output(out)


def test_unreadable_image_file(cli, tmp_path):
    for cls in ("a", "b"):
        for i in range(4):
            _png(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "b" / "x.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, f"folder:{tmp_path / 'data'}", out), "cannot read image", "x.png")
    _assert_no_output(out)


def test_unknown_dataset_plugin_and_option(cli, tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, "imagenet", out), "unknown dataset 'imagenet'")
    assert_one_line_error(
        cli("distill", "--data", "digits", "--method", "magic", "--ipc", "1", "--out", out), "unknown distiller"
    )
    assert_one_line_error(_distill(cli, "digits", out, "--set", "lr=3"), "unknown option lr")
    assert_one_line_error(
        cli("audit", "--data", "digits", "--release", "original", "--attack", "nope", "--out", out), "unknown attack"
    )
    _assert_no_output(out)


def test_ipc_out_of_range(cli, tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(_distill(cli, "digits", out, "--ipc", "0"), "positive")
    assert_one_line_error(
        cli("distill", "--data", "digits", "--method", "random", "--ipc", "5000", "--out", out, "--no-evaluate"),
        "larger than class",
    )
    _assert_no_output(out)


def test_output_directory_that_cannot_be_written(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert_one_line_error(_distill(cli, "digits", blocker / "out"), "cannot write")
    assert_one_line_error(_distill(cli, "digits", blocker), "not a directory")


def test_existing_output_is_kept_unless_forced(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert_one_line_error(_distill(cli, "digits", out), "not empty", "--force")
    assert_one_line_error(_distill(cli, "digits", out, "--force"), "did not write")
    assert (out / "precious.txt").read_text() == "keep me"
    assert _distill(cli, "digits", tmp_path / "own").code == 0
    assert _distill(cli, "digits", tmp_path / "own", "--force").code == 0
    assert (tmp_path / "own" / "release.npz").exists()


def test_usage_errors_are_one_line_too(cli):
    assert_one_line_error(cli("distill", "--method", "random"), "missing option")
    assert_one_line_error(cli("no-such-command"), "no such command")


def test_cuda_without_gpu(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    assert_one_line_error(_distill(cli, "digits", tmp_path / "o", "--device", "cuda"), "no cuda gpu")


def test_sigterm_while_the_plugins_load_is_one_line_and_exit_143(monkeypatch, capsys):
    """The signal can land before any command runs (plugin commands are registered first): still one line."""
    import privbench.cli as cli_mod

    def interrupted() -> None:
        raise cli_mod.Terminated()

    monkeypatch.setattr(cli_mod, "_register_plugin_commands", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        cli_mod.main(["plugins"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 143 and err.strip() == "privbench: error: terminated; finished work is kept, rerun to resume"
