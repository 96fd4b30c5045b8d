"""Suites: declarative experiment grids in ``registry/suites/*.toml``, validated before anything runs.

A suite is datasets x releases (method, ipc, config) x seeds, then for every
release: utility models and attacks (scored with metrics). Everything that can
be checked without computing is checked up front (plugin names, option keys and
types, dataset names), so a typo fails in a second, not after an hour.

Example::

    name = "quickstart"
    datasets = ["digits"]
    seeds = [0]

    [[releases]]
    method = "dm"
    ipc = [1, 10]
    config = { iterations = 200 }

    [utility]
    models = ["convnet"]
    seeds = 3
    config = { epochs = 100 }

    [audit]
    attacks = ["autoencoder", "mia"]   # a release may run a subset: attacks = ["mia"] in its [[releases]]
    metrics = []          # empty: every installed metric
    [audit.config.mia]
    pipelines = 4

docs/suites.md documents every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privbench.config import build_config
from privbench.errors import UserError
from privbench.plugins import Registry
from privbench.registry_path import registry_dir
from privbench.schema import (
    INT64_MAX,
    PLAIN_NAME_EXPECTED,
    Field,
    as_list,
    check_fields,
    int_between,
    is_bool,
    is_nonempty_str,
    is_plain_name,
    is_str,
    is_table,
    list_of,
    one_or_list,
    read_toml,
    show,
    table_of,
)

STRINGS = "a list of strings"
TABLES = "a table of tables, one per plugin"
TOP_FIELDS = (
    Field("name", is_plain_name, PLAIN_NAME_EXPECTED),
    Field("description", is_str, "a string"),
    Field("datasets", one_or_list(is_nonempty_str), "a list of dataset names (strings)"),
    Field("seeds", one_or_list(int_between(0, INT64_MAX)), "a list of integer seeds from 0 to 2**63-1"),
    Field("releases", list_of(is_table), "an array of tables ([[releases]] entries)"),
    Field("utility", is_table, "a table ([utility])"),
    Field("audit", is_table, "a table ([audit])"),
    Field("report", is_table, "a table ([report])"),
)
RELEASE_FIELDS = (
    Field("method", is_nonempty_str, "the name of a distiller (a string)", required=True),
    Field("ipc", one_or_list(int_between(1)), "a positive integer or a list of them"),
    Field("config", is_table, "a table of distiller options"),
    Field("utility_config", is_table, "a table of utility options"),
    Field("audit_config", table_of(is_table), TABLES),
    Field("attacks", one_or_list(is_nonempty_str), STRINGS),
)
UTILITY_FIELDS = (
    Field("models", one_or_list(is_nonempty_str), STRINGS),
    Field("seeds", int_between(1), "a number of training seeds, at least 1"),
    Field("config", is_table, "a table of utility options"),
)
AUDIT_FIELDS = (
    Field("attacks", one_or_list(is_nonempty_str), STRINGS),
    Field("metrics", one_or_list(is_nonempty_str), STRINGS),
    Field("config", table_of(is_table), TABLES),
    Field("metric_config", table_of(is_table), TABLES),
)
REPORT_FIELDS = (
    Field("show_private_images", is_bool, "true or false"),
    Field("reproduces", is_nonempty_str, "the name of a paper in registry/papers/"),
)

SUITE_TABLES = {
    "top level": TOP_FIELDS,
    "[[releases]]": RELEASE_FIELDS,
    "[utility]": UTILITY_FIELDS,
    "[audit]": AUDIT_FIELDS,
    "[report]": REPORT_FIELDS,
}
"""Every key a suite file may hold, table by table: the parser refuses any other, and docs/suites.md documents each.

The option tables inside them (a release's ``config``, ``[utility] config``,
``[audit.config.NAME]``, ``[audit.metric_config.NAME]``) take the fields of a
``Config`` dataclass (a plugin's, or :class:`privbench.utility.UtilityConfig`),
checked by :func:`validate_suite`.
"""


@dataclass(frozen=True)
class ReleaseSpec:
    """One release of the grid; ``utility_config`` / ``audit_config`` override the suite's
    evaluation options for this release only (the whole training set needs fewer epochs than
    ten images per class, an expensive pipeline fewer shadow runs)."""

    method: str
    ipc: int | None
    config: dict[str, Any]
    utility_config: dict[str, Any] = field(default_factory=dict)
    audit_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    attacks: tuple[str, ...] | None = None  # a subset of [audit] attacks for this release; None: all of them


@dataclass
class Suite:
    name: str
    description: str
    datasets: list[str]
    seeds: list[int]
    releases: list[ReleaseSpec]
    utility_models: list[str]
    utility_seeds: int
    utility_config: dict[str, Any]
    attacks: list[str]
    metrics: list[str]
    attack_config: dict[str, dict[str, Any]]
    metric_config: dict[str, dict[str, Any]]
    show_private_images: bool = False
    reproduces: str | None = None
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def available_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted((registry_dir() / "suites").glob("*.toml"))}


def suite_path(name_or_path: str) -> Path:
    """A suite name from the registry, or a path to a TOML file."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UserError(f"no such suite file: {path}")
        return path
    suites = available_suites()
    if name_or_path not in suites:
        raise UserError(f"unknown suite {name_or_path!r}; available: {', '.join(suites) or 'none'} (or a path to a .toml file)")
    return suites[name_or_path]


def parse_suite(path: Path) -> Suite:
    """Read a suite file and check its shape and every field's type (not yet its plugin names)."""
    raw = read_toml(path, "suite")
    where = f"suite {path.name}"
    check_fields(raw, SUITE_TABLES["top level"], where, allow_unknown=False)
    if "name" not in raw and not is_plain_name(path.stem):
        raise UserError(f"{where}: the file name gives the suite name {show(path.stem)}, which is not "
                        f"{PLAIN_NAME_EXPECTED}; set name = \"...\" in the file")
    datasets = as_list(raw.get("datasets"))
    if not datasets:
        raise UserError(f"{where}: 'datasets' must list at least one dataset")
    seeds = as_list(raw.get("seeds", [0])) or [0]
    releases = []
    for i, entry in enumerate(raw.get("releases", [])):
        check_fields(entry, SUITE_TABLES["[[releases]]"], f"{where}, release {i + 1}", allow_unknown=False)
        audit_config = entry.get("audit_config", {})
        attacks = tuple(dict.fromkeys(as_list(entry["attacks"]))) if "attacks" in entry else None
        for ipc in as_list(entry.get("ipc")) or [None]:
            releases.append(ReleaseSpec(entry["method"], ipc, dict(entry.get("config", {})),
                                        dict(entry.get("utility_config", {})),
                                        {k: dict(v) for k, v in audit_config.items()}, attacks))
    if not releases:
        raise UserError(f"{where}: no [[releases]] given")
    utility, audit, report = (check_fields(raw.get(key, {}), SUITE_TABLES[f"[{key}]"], f"{where}, [{key}]",
                                           allow_unknown=False) for key in ("utility", "audit", "report"))
    return Suite(
        name=raw.get("name", path.stem),
        description=raw.get("description", "").strip(),
        datasets=datasets,
        seeds=seeds,
        releases=releases,
        utility_models=as_list(utility.get("models", ["convnet"] if utility else [])),
        utility_seeds=utility.get("seeds", 3),
        utility_config=dict(utility.get("config", {})),
        attacks=as_list(audit.get("attacks")),
        metrics=as_list(audit.get("metrics")),
        attack_config={k: dict(v) for k, v in audit.get("config", {}).items()},
        metric_config={k: dict(v) for k, v in audit.get("metric_config", {}).items()},
        show_private_images=report.get("show_private_images", False),
        reproduces=report.get("reproduces"),
        source=path,
        raw=raw,
    )


def validate_suite(suite: Suite, registry: Registry) -> None:
    """Check every name and option against the installed plugins; UserError lists valid choices."""
    from privbench.data import SCHEMES, parse_spec
    from privbench.data.cards import load_cards

    cards = load_cards()
    for spec in suite.datasets:
        scheme, target, _ = parse_spec(spec)
        if scheme not in SCHEMES and scheme not in cards:
            raise UserError(
                f"suite {suite.name}: unknown dataset {spec!r}; known cards: {', '.join(sorted(cards))}; "
                f"or npz:PATH, medmnist:NAME, folder:PATH, dicom:PATH"
            )
        if scheme in cards:
            available, where = cards[scheme].availability()
            if not available:
                raise UserError(
                    f"suite {suite.name}: dataset {scheme!r} is not on this machine: put it at {where} "
                    f"('privbench datasets --layout' shows the layout), or run the suite with --data SPEC"
                )
        elif scheme in ("npz", "folder") and not Path(target).expanduser().exists():
            raise UserError(f"suite {suite.name}: no such {'file' if scheme == 'npz' else 'folder'}: {target}")
    for rel in suite.releases:
        cls = registry.get("distiller", rel.method)
        build_config(cls.Config, rel.config, owner=f"suite {suite.name}, distiller {rel.method}")
        if cls.uses_ipc and rel.ipc is None:
            raise UserError(f"suite {suite.name}: distiller {rel.method!r} needs an ipc")
    if suite.utility_models:
        from privbench.utility import UtilityConfig, check_models

        check_models(suite.utility_models)
        build_config(UtilityConfig, suite.utility_config, owner=f"suite {suite.name}, [utility]")
    for name in suite.attacks:
        cls = registry.get("attack", name)
        build_config(cls.Config, suite.attack_config.get(name), owner=f"suite {suite.name}, attack {name}")
    for rel in suite.releases:
        owner = f"suite {suite.name}, release {rel.method}"
        if rel.utility_config:
            from privbench.utility import UtilityConfig

            build_config(UtilityConfig, utility_options(suite, rel), owner=f"{owner}, utility_config")
        if rel.attacks is not None:
            extra = [a for a in rel.attacks if a not in suite.attacks]
            if extra:
                raise UserError(f"{owner}: attacks names {', '.join(map(repr, extra))}, which [audit] attacks does "
                                f"not run; a release runs a subset of [audit] attacks ({', '.join(suite.attacks)})")
        runs = suite.attacks if rel.attacks is None else rel.attacks
        for name in rel.audit_config:
            if name not in runs:
                raise UserError(f"{owner}: audit_config names attack {name!r} that this release does not run")
            cls = registry.get("attack", name)
            build_config(cls.Config, attack_options(suite, rel, name), owner=f"{owner}, audit_config.{name}")
    extra = sorted(set(suite.attack_config) - set(suite.attacks))
    if extra:
        raise UserError(f"suite {suite.name}: [audit.config] names attack(s) {', '.join(extra)} that [audit] attacks does not run")
    if suite.reproduces:
        from privbench.report.paper import load_paper

        load_paper(suite.reproduces)
    for name in suite.metrics:
        registry.get("metric", name)
    for name, options in suite.metric_config.items():
        cls = registry.get("metric", name)
        build_config(cls.Config, options, owner=f"suite {suite.name}, metric {name}")


def utility_options(suite: Suite, release: ReleaseSpec) -> dict[str, Any]:
    """The suite's utility options with this release's overrides on top."""
    return {**suite.utility_config, **release.utility_config}


SUITE_GAME = "method"
"""Suites ask "how private is this method on this data?" unless they say otherwise (``game = "release"``)."""


def attack_options(suite: Suite, release: ReleaseSpec, attack: str, config_cls: type | None = None) -> dict[str, Any]:
    """The suite's options for one attack with this release's overrides on top.

    An attack whose ``Config`` has a ``game`` field plays the ``method`` game
    in a suite unless the suite sets it.
    """
    import dataclasses

    options = {**suite.attack_config.get(attack, {}), **release.audit_config.get(attack, {})}
    if config_cls is not None and "game" not in options and dataclasses.is_dataclass(config_cls) and \
            "game" in {f.name for f in dataclasses.fields(config_cls)}:
        options["game"] = SUITE_GAME
    return options
