"""Plugin discovery: good, broken, invalid and duplicate plugins are records, never crashes."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from helpers import assert_one_line_error, make_distribution, run_subprocess
from privbench.plugins import get_registry, load_registry

GOOD = '''
from dataclasses import dataclass
from privbench import hookimpl
from privbench.api import Attack, Distiller, Release, ResultRow, require_ipc_fits


@dataclass(frozen=True)
class CopyConfig:
    offset: int = 0


class FirstImages(Distiller):
    """The first ipc training images of each class."""

    name = "fake-copy"
    Config = CopyConfig

    def distill(self, private, ipc, config, ctx):
        import torch

        require_ipc_fits(private, ipc + config.offset)
        y = private.train.labels
        idx = torch.cat([torch.nonzero(y == c).flatten()[config.offset:config.offset + ipc]
                         for c in range(private.num_classes)])
        return Release(private.train.images[idx], y[idx], {"method": self.name, "ipc": ipc})


class CountAttack(Attack):
    """Counts the released images."""

    name = "fake-count"

    def run(self, target, config, ctx):
        return [ResultRow("released_images", float(len(target.release)), n=len(target.release))]


@hookimpl
def register_distillers(register):
    register(FirstImages)


@hookimpl
def register_attacks(register):
    register(CountAttack)
'''

BROKEN = '''
raise RuntimeError("boom at import time")
'''

BAD_HOOK = '''
from privbench import hookimpl


@hookimpl
def register_distillers(register, extra):
    pass
'''

DUPLICATE = '''
from privbench import hookimpl
from privbench.api import Distiller


class MyRandom(Distiller):
    """Takes a built-in's name."""

    name = "random"


@hookimpl
def register_distillers(register):
    register(MyRandom)
'''

NOT_A_SUBCLASS = '''
from privbench import hookimpl


class Impostor:
    name = "impostor"


@hookimpl
def register_attacks(register):
    register(Impostor)
'''

FAKES = {
    "fake-good": ("fake_good", GOOD),
    "fake-broken": ("fake_broken", BROKEN),
    "fake-badhook": ("fake_badhook", BAD_HOOK),
    "fake-dup": ("fake_dup", DUPLICATE),
    "fake-impostor": ("fake_impostor", NOT_A_SUBCLASS),
}


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """Five fake plugin distributions on sys.path, all allowed to load."""
    site = tmp_path / "site"
    for dist, (module, source) in FAKES.items():
        make_distribution(site, dist, module, source, {module: module})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", ",".join(FAKES))
    return site


def _by_package(registry):
    out = {}
    for r in registry.records:
        out.setdefault(r.distribution, []).append(r)
    return out


def test_builtins_are_found_through_entry_points():
    registry = load_registry()
    names = {(r.kind, r.name) for r in registry.records if r.ok}
    assert ("distiller", "random") in names and ("distiller", "original") in names
    assert all(r.distribution == "privbench" for r in registry.records)


def test_each_kind_of_failure_is_a_record(fake_site):
    registry = load_registry()
    packages = _by_package(registry)

    good = {(r.kind, r.name): r for r in packages["fake-good"]}
    assert good[("distiller", "fake-copy")].ok and good[("distiller", "fake-copy")].version == "1.0"
    assert good[("attack", "fake-count")].ok

    (broken,) = packages["fake-broken"]
    assert broken.status == "error" and "boom at import time" in broken.error and "\n" not in broken.error

    (badhook,) = packages["fake-badhook"]
    assert badhook.status == "error" and "extra" in badhook.error

    (dup,) = packages["fake-dup"]
    assert dup.status == "error"
    assert "privbench" in dup.error and "fake-dup" in dup.error and "'random'" in dup.error
    # the built-in keeps its name
    assert registry.record("distiller", "random").distribution == "privbench"

    (impostor,) = packages["fake-impostor"]
    assert impostor.status == "error" and "not a subclass" in impostor.error


def test_broken_plugins_do_not_break_unrelated_commands(fake_site, cli):
    result = cli("plugins", "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    statuses = {(r["package"], r["name"]): r["status"] for r in rows}
    assert statuses[("fake-good", "fake-copy")] == "ok"
    assert statuses[("fake-broken", "fake_broken")] == "error"
    assert {"kind", "name", "package", "version", "status", "error"} <= set(rows[0])


def test_plugins_table_shows_broken_rows_with_their_error(fake_site, cli):
    result = cli("plugins")
    assert result.code == 0
    assert "boom at import time" in result.out
    assert "failed to load" in result.out


def test_kind_filter(fake_site, cli):
    rows = json.loads(cli("plugins", "--json", "--kind", "attack").out)
    assert rows and all(r["kind"] == "attack" for r in rows)


def test_strict_plugins_flag_and_environment_variable(fake_site, cli, monkeypatch):
    assert_one_line_error(cli("--strict-plugins", "plugins"), "failed to load")
    monkeypatch.setenv("PRIVBENCH_STRICT_PLUGINS", "1")
    assert_one_line_error(cli("plugins"), "failed to load")


def test_using_a_broken_plugin_by_name_names_the_package(fake_site, cli, tmp_path):
    result = cli("distill", "--data", "digits", "--method", "fake_broken", "--ipc", "1", "--out", tmp_path / "o")
    assert_one_line_error(result, "fake-broken", "boom at import time")
    assert not (tmp_path / "o").exists()


def test_third_party_distiller_and_attack_run_end_to_end(fake_site, cli, tmp_path):
    out = tmp_path / "release"
    result = cli("distill", "--data", "digits", "--method", "fake-copy", "--ipc", "2", "--set", "offset=1",
                 "--out", out, "--no-evaluate", "-q")
    assert result.code == 0, result.err
    manifest = json.loads((out / "release.json").read_text())
    assert manifest["method"] == "fake-copy" and manifest["plugin_package"] == "fake-good"
    assert manifest["config"] == {"offset": 1} and manifest["images"] == 20

    audit = tmp_path / "audit"
    result = cli("audit", "--data", "digits", "--release", out, "--attack", "fake-count", "--out", audit, "-q")
    assert result.code == 0, result.err
    import pyarrow.parquet as pq

    rows = pq.read_table(audit / "results.parquet").to_pylist()
    assert [(r["evaluator"], r["measure"], r["value"]) for r in rows] == [("fake-count", "released_images", 20.0)]
    assert rows[0]["plugin_package"] == "fake-good" and rows[0]["release_method"] == "fake-copy"


def test_load_plugins_variable_restricts_distributions(fake_site, monkeypatch):
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "")
    assert {r.distribution for r in load_registry().records} == {"privbench"}
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "fake_good")  # '-' and '_' are the same name
    assert {r.distribution for r in load_registry().records} == {"privbench", "fake-good"}
    monkeypatch.delenv("PRIVBENCH_LOAD_PLUGINS")
    assert set(FAKES) <= {r.distribution for r in load_registry().records}


def test_unknown_plugin_lists_the_valid_ones(cli, tmp_path):
    result = cli("distill", "--data", "digits", "--method", "nope", "--ipc", "1", "--out", tmp_path / "o")
    assert_one_line_error(result, "unknown distiller 'nope'", "random")


def test_registry_is_cached_and_strict_mode_raises(fake_site):
    from privbench.errors import PluginError

    first = get_registry()
    assert get_registry() is first
    with pytest.raises(PluginError):
        get_registry(strict=True)


def test_listing_plugins_does_not_import_torch(fake_site):
    code = (
        "import sys; from privbench.cli import main\n"
        "try:\n    main(['plugins', '--json'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    import os
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(fake_site))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_subprocess_strict_exit_code(fake_site):
    result = run_subprocess("--strict-plugins", "plugins", env={"PYTHONPATH": str(fake_site)})
    assert_one_line_error(result, "failed to load")


def test_load_plugins_names_may_have_spaces_around_them(monkeypatch):
    from privbench.plugins import ENV_LOAD, _allowed_distributions

    monkeypatch.setenv(ENV_LOAD, " privbench-coreset , Other_Pkg,, ")
    assert _allowed_distributions() == {"privbench-coreset", "other-pkg"}


def test_testing_helpers_take_a_config_field_named_like_their_own_arguments():
    """``config={"seed": ...}`` reaches the plugin's Config; the helper's own ``seed`` seeds the run."""
    from dataclasses import dataclass

    from privbench.api import Distiller, Release
    from privbench.testing import distill, tiny_dataset

    @dataclass(frozen=True)
    class SeedConfig:
        seed: int = 0

    class Seeded(Distiller):
        name = "seeded"
        Config = SeedConfig

        def distill(self, private, ipc, config, ctx):
            pick = [int((private.train.labels == c).nonzero()[config.seed % 2]) for c in range(private.num_classes)]
            return Release(private.train.images[pick], private.train.labels[pick],
                           {"method": self.name, "ipc": ipc, "run_seed": ctx.seed})

    data = tiny_dataset()
    a = distill(Seeded, data, 1, seed=7, config={"seed": 1})
    b = distill(Seeded, data, 1, seed=7)
    assert a.manifest["config"] == {"seed": 1} and b.manifest["config"] == {"seed": 0}
    assert not torch.equal(a.images, b.images)


def test_an_interrupt_while_a_plugin_imports_is_not_taken_for_its_failure(tmp_path, monkeypatch):
    """SIGTERM (the CLI raises a BaseException) during a module's import must stop the command, not be recorded."""
    site = tmp_path / "site"
    make_distribution(site, "fake-exiting", "fake_exiting", "import sys\nsys.exit(4)\n", {"fake_exiting": "fake_exiting"})
    make_distribution(site, "fake-interrupted", "fake_interrupted",
                      "from privbench.cli import Terminated\nraise Terminated()\n",
                      {"fake_interrupted": "fake_interrupted"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "fake-exiting")
    exiting = [r for r in load_registry().records if r.distribution == "fake-exiting"]
    assert exiting and exiting[0].status == "error" and "import failed" in exiting[0].error
    from privbench.cli import Terminated

    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "fake-interrupted")
    with pytest.raises(Terminated):
        load_registry()
