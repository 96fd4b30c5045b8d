"""Plugin mistakes that would otherwise pass in silence are rows in ``privbench plugins``, at load time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pytest

from helpers import assert_one_line_error, make_distribution
from privbench.api import Distiller, Metric
from privbench.errors import PluginError
from privbench.plugin_checks import check_plugin_class
from privbench.plugins import load_registry

NO_HOOKIMPL = '''
from privbench.api import Distiller


class Quiet(Distiller):
    """Never registered."""

    name = "fake-quiet"


def register_distillers(register):   # the decorator is missing
    register(Quiet)
'''

EMPTY_HOOK = '''
from privbench import hookimpl


@hookimpl
def register_attacks(register):
    pass
'''

NO_HOOKS_AT_ALL = '''
VALUE = 1
'''

NO_DIRECTION = '''
from privbench import hookimpl
from privbench.api import Metric


class Distance(Metric):
    """A distance: lower is a closer copy, but the class does not say so."""

    name = "fake-distance"

    def score(self, reference, candidate):
        return (reference - candidate).abs().flatten(1).mean(1)


@hookimpl
def register_metrics(register):
    register(Distance)
'''

BAD_DEFAULT = '''
from dataclasses import dataclass
from privbench import hookimpl
from privbench.api import Distiller


@dataclass(frozen=True)
class Config:
    n_init: int = "4"


class Typo(Distiller):
    """A default of the wrong type."""

    name = "fake-typo"
    Config = Config


@hookimpl
def register_distillers(register):
    register(Typo)
'''

COMMANDS_ONLY = '''
from privbench import hookimpl


@hookimpl
def register_commands(cli):
    pass
'''

FAKES = {
    "fake-nohookimpl": ("fake_nohookimpl", NO_HOOKIMPL),
    "fake-emptyhook": ("fake_emptyhook", EMPTY_HOOK),
    "fake-nohooks": ("fake_nohooks", NO_HOOKS_AT_ALL),
    "fake-nodirection": ("fake_nodirection", NO_DIRECTION),
    "fake-baddefault": ("fake_baddefault", BAD_DEFAULT),
    "fake-commands": ("fake_commands", COMMANDS_ONLY),
}


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    for dist, (module, source) in FAKES.items():
        make_distribution(site, dist, module, source, {module: module})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", ",".join(FAKES))
    return site


def _records(registry):
    out = {}
    for r in registry.records:
        out.setdefault(r.distribution, []).append(r)
    return out


def test_a_module_that_registers_nothing_is_a_warning_naming_what_is_missing(fake_site):
    packages = _records(load_registry())
    (missing,) = packages["fake-nohookimpl"]
    assert missing.status == "warning"
    assert "register_distillers" in missing.error and "@privbench.hookimpl" in missing.error
    (empty,) = packages["fake-emptyhook"]
    assert empty.status == "warning" and "register_attacks registered nothing" in empty.error
    (nothing,) = packages["fake-nohooks"]
    assert nothing.status == "warning" and "implements no privbench hook" in nothing.error
    assert "fake-commands" not in packages  # a package that only adds commands provides what it should


def test_warnings_are_rows_of_the_listing_and_errors_in_strict_mode(fake_site, cli):
    result = cli("plugins", "--json")
    assert result.code == 0, result.err
    rows = {r["package"]: r for r in json.loads(result.out)}
    assert rows["fake-emptyhook"]["status"] == "warning"
    table = cli("plugins")
    assert table.code == 0 and "warning" in table.out and "plugin warning(s)" in table.out
    assert_one_line_error(cli("--strict-plugins", "plugins"), "failed to load")  # the errors come first


def test_strict_mode_refuses_a_warning_alone(tmp_path, monkeypatch, cli):
    site = tmp_path / "site"
    make_distribution(site, "fake-emptyhook", "fake_emptyhook", EMPTY_HOOK, {"fake_emptyhook": "fake_emptyhook"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "fake-emptyhook")
    assert cli("plugins").code == 0
    assert_one_line_error(cli("--strict-plugins", "plugins"), "gave a warning", "registered nothing")


def test_a_metric_without_its_own_direction_is_refused(fake_site):
    registry = load_registry()
    (record,) = _records(registry)["fake-nodirection"]
    assert record.status == "error" and record.kind == "metric" and record.name == "fake-distance"
    assert "does not set higher_is_better" in record.error
    with pytest.raises(PluginError, match="higher_is_better"):
        registry.get("metric", "fake-distance")


def test_every_builtin_metric_sets_its_direction_and_builtins_load_cleanly():
    registry = load_registry()
    assert not registry.failures() and not registry.warnings()
    metrics = registry.available("metric")
    assert len(metrics) >= 6
    for record in metrics:
        assert "higher_is_better" in vars(record.cls), record.name
    assert {r.name: r.cls.higher_is_better for r in metrics}["lpips"] is False


def test_a_metric_may_inherit_its_direction_from_another_plugin_class():
    class Base(Metric):
        name = "base-distance"
        higher_is_better = False

    class Child(Base):
        name = "child-distance"

    assert check_plugin_class("metric", Child) is None
    Base.higher_is_better = "no"
    assert "must be True or False" in check_plugin_class("metric", Base)


def test_a_default_of_the_wrong_type_is_refused_at_registration(fake_site):
    (record,) = _records(load_registry())["fake-baddefault"]
    assert record.status == "error" and record.name == "fake-typo"
    assert "n_init is annotated int but its default is '4' (str)" in record.error


def _distiller_with(config_cls):
    return type("D", (Distiller,), {"name": "fake-d", "Config": config_cls})


@dataclass(frozen=True)
class _Float:
    lr: float = "x"


@dataclass(frozen=True)
class _Literal:
    mode: Literal["a", "b"] = "c"


@dataclass(frozen=True)
class _Tuple:
    sizes: tuple[int, ...] = (1, "2")


@dataclass(frozen=True)
class _Bool:
    flag: bool = 1


@dataclass(frozen=True)
class _Fine:
    lr: float = 1
    weights: str | None = None
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, str] = (1, "a")
    mode: Literal["a", "b"] = "b"
    names: list[str] | None = None


@pytest.mark.parametrize("config_cls, needle", [
    (_Float, "lr is annotated float but its default is 'x' (str)"),
    (_Literal, "mode is annotated Literal['a', 'b'] but its default is 'c'"),
    (_Tuple, "sizes is annotated tuple[int, ...]"),
    (_Bool, "flag is annotated bool but its default is 1 (int)"),
])
def test_each_kind_of_wrong_default_names_the_field(config_cls, needle):
    problem = check_plugin_class("distiller", _distiller_with(config_cls))
    assert problem is not None and needle in problem, problem


def test_defaults_that_match_their_annotations_pass():
    assert check_plugin_class("distiller", _distiller_with(_Fine)) is None


def test_a_load_list_name_that_matches_no_distribution_is_a_warning(fake_site, monkeypatch, cli):
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "fake-emptyhok,fake-commands")
    registry = load_registry()
    (typo,) = [r for r in registry.warnings() if r.name == "fake-emptyhok"]
    assert "PRIVBENCH_LOAD_PLUGINS names 'fake-emptyhok', which matches no installed distribution" in typo.error
    assert "fake-commands" in typo.error  # the installed plugin packages are listed
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "pluggy")
    (no_plugins,) = load_registry().warnings()
    assert "installed but declares no entry point" in no_plugins.error
    monkeypatch.setenv("PRIVBENCH_LOAD_PLUGINS", "fake_commands")  # '-' and '_' are the same name
    assert not load_registry().warnings()
    rows = json.loads(cli("plugins", "--json").out)
    assert not [r for r in rows if r["status"] == "warning"]


def test_using_a_plugin_whose_module_registered_nothing_says_so(fake_site):
    with pytest.raises(PluginError, match="provides none .*@privbench.hookimpl"):
        load_registry().get("distiller", "fake_nohookimpl")


def test_a_metric_gets_its_checked_config_and_the_run_device():
    from privbench.engine import metric_instances

    (ssim,) = metric_instances(load_registry(), "cpu", ["ssim"], {"ssim": {"batch_size": "7"}}).values()
    assert ssim.config.batch_size == 7 and ssim.device == "cpu"
