"""Plugin discovery: entry points of the ``privbench`` group, one record per plugin.

The built-in plugins come through the same door as a third party's package.
Loading never raises: a plugin that fails to import, implements a hook wrongly,
registers something that is not a subclass of the right base class, or
duplicates a name becomes a record with ``status="error"`` and a one-line
error (the class checks are in :mod:`privbench.plugin_checks`). Commands that
need such a plugin refuse with that line; other commands run. A module that
loads but registers nothing (a forgotten ``@hookimpl``), and a name in
``PRIVBENCH_LOAD_PLUGINS`` that selects no package, are records with
``status="warning"``: nothing is broken, but what the user expected is not
there. ``strict=True`` (``--strict-plugins`` or ``PRIVBENCH_STRICT_PLUGINS=1``)
turns any failure or warning into an error.

Environment variables:

``PRIVBENCH_LOAD_PLUGINS``
    comma-separated distribution names to load besides the built-ins; set but
    empty means built-ins only; unset means every installed plugin package.
``PRIVBENCH_STRICT_PLUGINS``
    ``1``/``true`` makes any load failure fatal.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from privbench import hookspecs
from privbench.errors import PluginError
from privbench.plugin_checks import check_plugin_class, one_line

GROUP = "privbench"
BUILTIN_DISTRIBUTION = "privbench"
ENV_LOAD = "PRIVBENCH_LOAD_PLUGINS"
ENV_STRICT = "PRIVBENCH_STRICT_PLUGINS"

KIND_BY_HOOK = {
    "register_distillers": "distiller",
    "register_attacks": "attack",
    "register_metrics": "metric",
}


@dataclass
class PluginRecord:
    """What privbench knows about one plugin, whether it loaded or not."""

    kind: str
    name: str
    distribution: str
    version: str
    status: str = "ok"
    error: str | None = None
    entry_point: str = ""
    description: str = ""
    cls: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "package": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "entry_point": self.entry_point,
            "description": self.description,
        }


def _normalise(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class Registry:
    """Every plugin record, and lookups that fail with one clear line."""

    def __init__(self, records: list[PluginRecord], plugin_manager: pluggy.PluginManager):
        self.records = records
        self.pm = plugin_manager

    def failures(self) -> list[PluginRecord]:
        """Plugins that did not load (status ``error``)."""
        return [r for r in self.records if r.status == "error"]

    def warnings(self) -> list[PluginRecord]:
        """Plugin packages that loaded but provide nothing, and names in the load list that match no package."""
        return [r for r in self.records if r.status == "warning"]

    def available(self, kind: str) -> list[PluginRecord]:
        return [r for r in self.records if r.kind == kind and r.ok]

    def names(self, kind: str) -> list[str]:
        return sorted(r.name for r in self.available(kind))

    def record(self, kind: str, name: str) -> PluginRecord:
        for r in self.records:
            if r.kind == kind and r.name == name and r.ok:
                return r
        broken = [r for r in self.records if r.name == name and not r.ok and r.kind in (kind, "unknown")]
        if broken:
            r = broken[0]
            if r.status == "warning":
                raise PluginError(f"no {kind} {name!r}: package {r.distribution} provides none ({r.error})")
            raise PluginError(f"{kind} {name!r} from package {r.distribution} failed to load: {r.error}")
        valid = ", ".join(self.names(kind)) or "none installed"
        raise PluginError(f"unknown {kind} {name!r}; available: {valid}")

    def get(self, kind: str, name: str) -> type:
        return self.record(kind, name).cls

    def require_clean(self) -> None:
        """Strict mode: the first failure, or else the first warning, becomes an error."""
        bad = self.failures() or self.warnings()
        if bad:
            r = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            what = "failed to load" if r.status == "error" else "gave a warning"
            raise PluginError(f"plugin {r.name!r} from package {r.distribution} {what}: {r.error}{more}")


def _allowed_distributions() -> set[str] | None:
    raw = os.environ.get(ENV_LOAD)
    if raw is None:
        return None
    return {_normalise(x.strip()) for x in raw.split(",") if x.strip()}


def _entry_points() -> list[md.EntryPoint]:
    eps = list(md.entry_points(group=GROUP))
    allowed = _allowed_distributions()
    seen: set[tuple[str, str, str]] = set()
    keep = []
    for ep in eps:
        dist = _normalise(ep.dist.name) if ep.dist is not None else ""
        if allowed is not None and dist != BUILTIN_DISTRIBUTION and dist not in allowed:
            continue
        key = (dist, ep.name, ep.value)
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        keep.append(ep)
    # Built-ins first, so a third party cannot take over a built-in's name.
    keep.sort(key=lambda ep: (_normalise(ep.dist.name) != BUILTIN_DISTRIBUTION if ep.dist else True,
                              ep.dist.name if ep.dist else "", ep.name))
    return keep


def _load_list_warnings() -> list[PluginRecord]:
    """A warning for each name in ``PRIVBENCH_LOAD_PLUGINS`` that selects no plugin package (a typo loads nothing)."""
    allowed = _allowed_distributions()
    if not allowed:
        return []
    with_plugins = {_normalise(ep.dist.name) for ep in md.entry_points(group=GROUP) if ep.dist is not None}
    missing = sorted(allowed - with_plugins - {BUILTIN_DISTRIBUTION})
    if not missing:
        return []
    installed = {_normalise(d.metadata["Name"] or "") for d in md.distributions()}
    choices = ", ".join(sorted(with_plugins - {BUILTIN_DISTRIBUTION})) or "none"
    out = []
    for name in missing:
        why = ("is installed but declares no entry point in the 'privbench' group" if name in installed
               else "matches no installed distribution")
        out.append(PluginRecord("unknown", name, name, "", "warning",
                                f"{ENV_LOAD} names {name!r}, which {why}; installed plugin packages: {choices}",
                                f"{ENV_LOAD}={os.environ.get(ENV_LOAD, '')}"))
    return out


def _provides_nothing(module: Any, hooks: list[str]) -> str:
    """Why a module that loaded registered nothing, naming what is missing."""
    if not hooks:
        named = [h for h in (*KIND_BY_HOOK, "register_commands") if callable(getattr(module, h, None))]
        if named:
            return (f"module {module.__name__} defines {', '.join(named)} without @privbench.hookimpl, so privbench "
                    f"never calls it: decorate it with @hookimpl (from privbench import hookimpl)")
        return (f"module {module.__name__} implements no privbench hook (no function decorated with "
                f"@privbench.hookimpl: {', '.join(KIND_BY_HOOK)} or register_commands)")
    return f"{', '.join(hooks)} registered nothing: call register(cls) for each class"


def load_registry(entry_points: Iterable[md.EntryPoint] | None = None) -> Registry:
    """Load every plugin entry point and return the records.

    A plugin that fails, even by ``sys.exit``, is a record; only an interrupt (Ctrl-C, SIGTERM) propagates.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    records: list[PluginRecord] = [] if entry_points is not None else _load_list_warnings()
    by_key: dict[tuple[str, str], PluginRecord] = {}

    for ep in entry_points if entry_points is not None else _entry_points():
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else ""
        where = f"{ep.name} = {ep.value}"

        def fail(message: str, kind: str = "unknown", name: str = ep.name) -> None:
            records.append(PluginRecord(kind, name, dist, version, "error", message, where))

        try:
            module = ep.load()
        except BaseException as exc:  # noqa: BLE001 - a plugin may even call sys.exit
            if not isinstance(exc, (Exception, SystemExit)):
                raise  # Ctrl-C, or SIGTERM (the CLI's Terminated) arriving while the module imports
            fail(f"import failed: {one_line(exc)}")
            continue
        try:
            pm.register(module, name=f"{dist}:{ep.name}")
        except (pluggy.PluginValidationError, ValueError) as exc:
            fail(f"invalid hook implementation: {one_line(exc)}")
            continue
        callers = pm.get_hookcallers(module) or []
        unknown = [hc.name for hc in callers if not hc.has_spec()]
        if unknown:
            pm.unregister(module)
            fail(f"implements unknown hook(s) {', '.join(unknown)}; known: {', '.join(KIND_BY_HOOK)}, register_commands")
            continue

        before = len(records)
        for hook_name, kind in KIND_BY_HOOK.items():
            impls = [i for i in getattr(pm.hook, hook_name).get_hookimpls() if i.plugin is module]
            for impl in impls:
                registered: list[Any] = []
                try:
                    impl.function(**{arg: registered.append for arg in impl.argnames})
                except Exception as exc:  # noqa: BLE001
                    fail(f"{hook_name} raised {one_line(exc)}", kind)
                    continue
                for obj in registered:
                    problem = check_plugin_class(kind, obj)
                    name = getattr(obj, "name", None) or getattr(obj, "__name__", repr(obj))
                    if problem:
                        fail(problem, kind, str(name))
                        continue
                    first = by_key.get((kind, obj.name))
                    if first is not None:
                        fail(
                            f"duplicate {kind} name {obj.name!r}: provided by both "
                            f"{first.distribution} {first.version} and {dist} {version}; "
                            f"the one from {first.distribution} is kept",
                            kind,
                            obj.name,
                        )
                        continue
                    rec = PluginRecord(kind, obj.name, dist, version, "ok", None, where, obj.summary(), obj)
                    by_key[(kind, obj.name)] = rec
                    records.append(rec)
        hooks = [hc.name for hc in callers]
        if len(records) == before and "register_commands" not in hooks:
            records.append(PluginRecord("unknown", ep.name, dist, version, "warning",
                                        _provides_nothing(module, hooks), where))
    return Registry(records, pm)


_cached: Registry | None = None


def get_registry(strict: bool | None = None, refresh: bool = False) -> Registry:
    """The process-wide registry (loaded once); ``strict`` raises on any failure."""
    global _cached
    if _cached is None or refresh:
        _cached = load_registry()
    if strict is None:
        strict = truthy(os.environ.get(ENV_STRICT))
    if strict:
        _cached.require_clean()
    return _cached


def origin(cls: type) -> tuple[str, str]:
    """(package, version) of a loaded plugin class, for messages; ("", "") when the registry does not know it."""
    for r in (_cached.records if _cached is not None else []):
        if r.cls is cls:
            return r.distribution, r.version
    return "", ""
