"""Every structured file privbench reads is checked where it is read: bad input is one line, exit 2, no output.

Properties of the same checks on generated documents are in test_hardening_properties.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import ROOT, assert_one_line_error
from privbench.api import Release, ResultRow
from privbench.errors import UserError
from privbench.provenance import PROVENANCE_FILE
from privbench.releases import MANIFEST_FILE, save_release
from privbench.results import RunInfo, result_records, run_record, write_results, write_runs

LATIN1 = "caf\xe9".encode("latin-1")  # valid Latin-1, never valid UTF-8


def _assert_no_output(out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


@pytest.fixture(scope="module")
def digits():
    from privbench.data import load_dataset

    return load_dataset("digits")


@pytest.fixture
def release(tmp_path, digits):
    """A small release of digits written by hand, with its provenance."""
    directory = tmp_path / "rel"
    images, labels = digits.train.images[:20].clone(), digits.train.labels[:20].clone()
    save_release(Release(images, labels, {"method": "random", "ipc": 2, "seed": 0, "config": {}},
                         {"source_fingerprint": digits.fingerprint, "source_indices": list(range(20))}), directory)
    return directory


def _audit(cli, release, out, *extra):
    return cli("audit", "--data", "digits", "--release", release, "--out", out, "-q", "--attack", "autoencoder",
               *extra)


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------- release.json and provenance


@pytest.mark.parametrize("name", [MANIFEST_FILE, PROVENANCE_FILE])
def test_release_files_that_are_not_utf8(cli, tmp_path, release, name):
    (release / name).write_bytes(b'{"method": "' + LATIN1 + b'"}')
    out = tmp_path / "audit"
    assert_one_line_error(_audit(cli, release, out), name, "not UTF-8")
    _assert_no_output(out)


@pytest.mark.parametrize(
    "name, changes, field",
    [
        (MANIFEST_FILE, {"source_fingerprint": 5}, "source_fingerprint"),
        (MANIFEST_FILE, {"config": "fast"}, "config"),
        (MANIFEST_FILE, {"ipc": "2"}, "ipc"),
        (MANIFEST_FILE, {"ipc": True}, "ipc"),
        (MANIFEST_FILE, {"seed": 2**64}, "seed"),
        (MANIFEST_FILE, {"method": ["random"]}, "method"),
        (PROVENANCE_FILE, {"source_fingerprint": 7}, "source_fingerprint"),
        (PROVENANCE_FILE, {"init_indices": [True]}, "init_indices"),
        (PROVENANCE_FILE, {"warnings": "none"}, "warnings"),
    ],
    ids=["fingerprint-int", "config-str", "ipc-str", "ipc-bool", "seed-huge", "method-list", "provenance-fingerprint",
         "provenance-bool-index", "provenance-warnings"],
)
def test_release_fields_of_the_wrong_type(cli, tmp_path, release, name, changes, field):
    _edit_json(release / name, **changes)
    out = tmp_path / "audit"
    assert_one_line_error(_audit(cli, release, out), name, f"field '{field}' must be")
    _assert_no_output(out)


def test_a_release_json_that_is_not_an_object(cli, tmp_path, release):
    (release / MANIFEST_FILE).write_text("[1, 2]")
    out = tmp_path / "audit"
    assert_one_line_error(_audit(cli, release, out), MANIFEST_FILE, "JSON object")
    _assert_no_output(out)


def test_a_method_no_plugin_provides_is_audited_with_a_warning(cli, tmp_path, release):
    _edit_json(release / MANIFEST_FILE, method="not-installed")
    out = tmp_path / "audit"
    result = _audit(cli, release, out, "--metric", "ssim", "--device", "cpu", "--set", "autoencoder.min_steps=5",
                    "--set", "autoencoder.resamples=20", "--set", "autoencoder.max_images=20")
    assert result.code == 0, result.err
    err = " ".join(result.err.split())
    assert "'not-installed', which no installed distiller plugin provides" in err and "limited" in err
    assert (out / "results.parquet").is_file()


# --------------------------------------------------------------------------- suites

SUITE = 'datasets = ["digits"]\nseeds = [0]\n[[releases]]\nmethod = "random"\nipc = [2]\n'


@pytest.mark.parametrize(
    "text, needle",
    [
        ('seeds = "x"\ndatasets = ["digits"]\n[[releases]]\nmethod = "random"\n', "field 'seeds' must be"),
        ('releases = 5\ndatasets = ["digits"]\n', "field 'releases' must be"),
        (SUITE + '[audit]\nattacks = ["mia"]\nconfig = 3\n', "[audit]: field 'config' must be"),
        (SUITE.replace("ipc = [2]", "ipc = [true]"), "field 'ipc' must be"),
        (SUITE.replace("seeds = [0]", "seeds = [-1]"), "field 'seeds' must be"),
        (SUITE.replace('["digits"]', "[1]"), "field 'datasets' must be"),
        (SUITE + '[utility]\nmodels = ["convnet"]\nseeds = true\n', "[utility]: field 'seeds' must be"),
        (SUITE + "[report]\nshow_private_images = 1\n", "field 'show_private_images' must be"),
        (SUITE + "[audit]\nmetric_config = { ssim = 1 }\n", "field 'metric_config' must be"),
        ('description = 3\n' + SUITE, "field 'description' must be"),
    ],
    ids=["seeds-str", "releases-int", "audit-config-int", "ipc-bool", "seed-negative", "datasets-int",
         "utility-seeds-bool", "report-int", "metric-config", "description-int"],
)
def test_suite_fields_of_the_wrong_type(cli, tmp_path, text, needle):
    suite = tmp_path / "bad.toml"
    suite.write_text(text)
    out = tmp_path / "out"
    assert_one_line_error(cli("run", suite, "--out", out), "bad.toml", needle)
    _assert_no_output(out)


def test_a_suite_that_is_not_utf8(cli, tmp_path):
    suite = tmp_path / "latin.toml"
    suite.write_bytes(SUITE.encode() + b'description = "' + LATIN1 + b'"\n')
    out = tmp_path / "out"
    assert_one_line_error(cli("run", suite, "--out", out), "latin.toml", "not UTF-8")
    _assert_no_output(out)


@pytest.mark.parametrize("name", ["/tmp/elsewhere", "../../..", "..", ".hidden", "a/b", "x" * 101, ""])
def test_a_suite_name_must_be_a_plain_folder_name(cli, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "named.toml"
    suite.write_text(f"name = {json.dumps(name)}\n" + SUITE)
    assert_one_line_error(cli("run", suite), "field 'name' must be a plain name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["named.toml"]  # no privbench-out, nothing outside


# --------------------------------------------------------------------------- dataset cards


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A copy of the registry's dataset cards that a test may spoil."""
    root = tmp_path / "registry"
    shutil.copytree(ROOT / "registry" / "datasets", root / "datasets")
    monkeypatch.setenv("PRIVBENCH_REGISTRY", str(root))
    return root


@pytest.mark.parametrize(
    "replace, needle",
    [
        (("classes = [", "classes = 5\nold = ["), "field 'classes' must be"),
        (('loader = "digits"', "loader = 7"), "field 'loader' must be"),
        (("channels = 1", "channels = 2"), "field 'channels' must be 1 or 3"),
        (("public = true", 'public = "yes"'), "field 'public' must be"),
        (("image_size = 16", "image_size = true"), "field 'image_size' must be"),
        (('name = "digits"', "name = 3"), "field 'name' must be"),
    ],
    ids=["classes-int", "loader-int", "channels-2", "public-str", "image-size-bool", "name-int"],
)
def test_dataset_card_fields_of_the_wrong_type(cli, tmp_path, registry, replace, needle):
    card = registry / "datasets" / "digits.toml"
    text = card.read_text()
    assert replace[0] in text
    card.write_text(text.replace(replace[0], replace[1], 1))
    out = tmp_path / "out"
    result = cli("distill", "--data", "digits", "--method", "random", "--ipc", "2", "--out", out, "--no-evaluate", "-q")
    assert_one_line_error(result, "digits.toml", needle)
    _assert_no_output(out)


def test_a_dataset_card_that_is_not_utf8(cli, tmp_path, registry):
    (registry / "datasets" / "latin.toml").write_bytes(b'name = "latin"\ntitle = "' + LATIN1 + b'"\n')
    assert_one_line_error(cli("datasets"), "latin.toml", "not UTF-8")


# --------------------------------------------------------------------------- results tables and job records


@pytest.fixture
def results(tmp_path):
    info = RunInfo(job="audit autoencoder", task="audit", evaluator="autoencoder", dataset="digits",
                   release_method="random", release_ipc=2, release_seed=0, run_id="abc")  # the job folder below
    path = tmp_path / "suite" / "results.parquet"
    write_results(path, result_records(info, [ResultRow("reconstruction.ssim", 0.5, 0.4, 0.6, 20, True)]))
    write_runs(path.parent / "runs.parquet", [run_record(info)])
    return path


def _job(results: Path, record: bytes) -> Path:
    job = results.parent / "jobs" / "abc"
    job.mkdir(parents=True)
    (job / "job.json").write_bytes(record)
    return job


@pytest.mark.parametrize(
    "record, needle",
    [
        (b"{not json", "not valid JSON"),
        (b'{"kind": "' + LATIN1 + b'"}', "not UTF-8"),
        (b"[]", "JSON object"),
        (b'{"kind": 5, "label": "x"}', "field 'kind' must be distill or utility or audit"),
        (b'{"kind": "../../escape", "label": "x"}', "field 'kind' must be"),
        (b'{"kind": "audit", "label": ["x"]}', "field 'label' must be"),
    ],
    ids=["not-json", "not-utf8", "not-object", "kind-int", "kind-path", "label-list"],
)
def test_a_damaged_job_record_is_one_line(cli, tmp_path, results, record, needle):
    _job(results, record)
    out = tmp_path / "report"
    assert_one_line_error(cli("report", results, "--out", out), "job.json", needle)
    _assert_no_output(out)


def test_a_job_folder_the_tables_do_not_name_is_not_read(cli, tmp_path, results):
    """A folder left from another configuration is not this report's: its record is never opened."""
    stale = results.parent / "jobs" / "stale"
    stale.mkdir(parents=True)
    (stale / "job.json").write_bytes(b"{not json")
    result = cli("report", results, "--out", tmp_path / "report")
    assert result.code == 0, result.err


def test_the_suite_runner_refuses_a_damaged_job_record(tmp_path):
    from privbench.jobs import JobStore

    store = JobStore(tmp_path / "jobs")
    assert not store.done("abc")
    (tmp_path / "jobs" / "abc").mkdir(parents=True)
    (tmp_path / "jobs" / "abc" / "job.json").write_text('{"kind": "distill", "images": "many"}')
    with pytest.raises(UserError, match=r"job\.json: field 'images' must be .*\(delete"):
        store.done("abc")


def test_a_results_table_with_the_wrong_columns(cli, tmp_path, results):
    import pyarrow.parquet as pq

    table = pq.read_table(results)
    pq.write_table(table.drop_columns(["measure", "value"]), results)
    out = tmp_path / "report"
    assert_one_line_error(cli("report", results, "--out", out), "results.parquet", "missing column(s) measure, value")
    _assert_no_output(out)
    pq.write_table(table.set_column(table.schema.get_field_index("value"), "value", table.column("measure")),
                   results)
    assert_one_line_error(cli("report", results, "--out", out), "column 'value' must hold numbers")
    _assert_no_output(out)


def test_a_runs_table_with_the_wrong_columns(cli, tmp_path, results):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"job": ["x"], "elapsed_s": ["slow"]}), results.parent / "runs.parquet")
    out = tmp_path / "report"
    assert_one_line_error(cli("report", results, "--out", out), "runs.parquet", "missing column(s) run_id")
    _assert_no_output(out)


def test_a_good_results_table_still_makes_a_report(cli, tmp_path, results):
    _job(results, json.dumps({"kind": "audit", "label": "audit autoencoder", "rows": 1}).encode())
    out = tmp_path / "report"
    result = cli("report", results, "--out", out)
    assert result.code == 0, result.err
    assert (out / "report.html").is_file()
