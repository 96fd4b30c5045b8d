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
    attacks = ["autoencoder", "mia"]
    metrics = []          # empty: every installed metric
    [audit.config.mia]
    shadows = 4
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privbench.config import build_config
from privbench.errors import UserError
from privbench.plugins import Registry
from privbench.registry_path import registry_dir

TOP_KEYS = {"name", "description", "datasets", "seeds", "releases", "utility", "audit", "report"}
RELEASE_KEYS = {"method", "ipc", "config", "utility_config", "audit_config"}
UTILITY_KEYS = {"models", "seeds", "config"}
AUDIT_KEYS = {"attacks", "metrics", "config", "metric_config"}
REPORT_KEYS = {"show_private_images"}


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


def _unknown(keys: set[str], allowed: set[str], where: str) -> None:
    extra = sorted(keys - allowed)
    if extra:
        raise UserError(f"{where}: unknown key(s) {', '.join(extra)}; valid keys: {', '.join(sorted(allowed))}")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_suite(path: Path) -> Suite:
    """Read a suite file and check its shape (not yet its plugin names)."""
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"suite {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise UserError(f"cannot read suite {path}: {exc.strerror or exc}") from exc
    where = f"suite {path.name}"
    _unknown(set(raw), TOP_KEYS, where)
    datasets = [str(d) for d in _as_list(raw.get("datasets"))]
    if not datasets:
        raise UserError(f"{where}: 'datasets' must list at least one dataset")
    seeds = [int(s) for s in _as_list(raw.get("seeds", [0]))] or [0]
    releases = []
    for i, entry in enumerate(raw.get("releases", [])):
        if not isinstance(entry, dict):
            raise UserError(f"{where}: each [[releases]] entry must be a table")
        _unknown(set(entry), RELEASE_KEYS, f"{where}, release {i + 1}")
        if "method" not in entry:
            raise UserError(f"{where}, release {i + 1}: 'method' is required")
        config = entry.get("config", {})
        if not isinstance(config, dict):
            raise UserError(f"{where}, release {i + 1}: 'config' must be a table")
        utility_config = entry.get("utility_config", {})
        audit_config = entry.get("audit_config", {})
        if not isinstance(utility_config, dict) or not isinstance(audit_config, dict) or not all(
            isinstance(v, dict) for v in audit_config.values()
        ):
            raise UserError(f"{where}, release {entry['method']}: utility_config must be a table and audit_config a "
                            f"table of tables, one per attack")
        ipcs = _as_list(entry.get("ipc")) or [None]
        for ipc in ipcs:
            if ipc is not None and (not isinstance(ipc, int) or ipc < 1):
                raise UserError(f"{where}, release {entry['method']}: ipc must be a positive integer, got {ipc!r}")
            releases.append(ReleaseSpec(str(entry["method"]), ipc, dict(config), dict(utility_config),
                                        {k: dict(v) for k, v in audit_config.items()}))
    if not releases:
        raise UserError(f"{where}: no [[releases]] given")
    utility = raw.get("utility", {})
    _unknown(set(utility), UTILITY_KEYS, f"{where}, [utility]")
    audit = raw.get("audit", {})
    _unknown(set(audit), AUDIT_KEYS, f"{where}, [audit]")
    report = raw.get("report", {})
    _unknown(set(report), REPORT_KEYS, f"{where}, [report]")
    utility_seeds = int(utility.get("seeds", 3))
    if utility_seeds < 1:
        raise UserError(f"{where}, [utility]: seeds must be at least 1")
    return Suite(
        name=str(raw.get("name", path.stem)),
        description=str(raw.get("description", "")).strip(),
        datasets=datasets,
        seeds=seeds,
        releases=releases,
        utility_models=[str(m) for m in _as_list(utility.get("models", ["convnet"] if utility else []))],
        utility_seeds=utility_seeds,
        utility_config=dict(utility.get("config", {})),
        attacks=[str(a) for a in _as_list(audit.get("attacks"))],
        metrics=[str(m) for m in _as_list(audit.get("metrics"))],
        attack_config={k: dict(v) for k, v in audit.get("config", {}).items()},
        metric_config={k: dict(v) for k, v in audit.get("metric_config", {}).items()},
        show_private_images=bool(report.get("show_private_images", False)),
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
                f"or npz:PATH, medmnist:NAME, folder:PATH"
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
        for name in rel.audit_config:
            if name not in suite.attacks:
                raise UserError(f"{owner}: audit_config names attack {name!r} that [audit] attacks does not run")
            cls = registry.get("attack", name)
            build_config(cls.Config, attack_options(suite, rel, name), owner=f"{owner}, audit_config.{name}")
    extra = sorted(set(suite.attack_config) - set(suite.attacks))
    if extra:
        raise UserError(f"suite {suite.name}: [audit.config] names attack(s) {', '.join(extra)} that [audit] attacks does not run")
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
