"""Plugin configuration: ``--set key=value`` parsed and checked against a frozen ``Config``.

One place turns strings (command line) or TOML values (suites) into a plugin's
``Config``, rejects unknown keys with the valid ones listed, and hashes a
configuration so that a result can be cached by it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, Iterable

from privbench.errors import UserError
from privbench.schema import show

_INT64 = 2**63 - 1
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_set_options(items: Iterable[str]) -> dict[str, str]:
    """``["lr=0.1", "mia.shadows=4"]`` -> ``{"lr": "0.1", "mia.shadows": "4"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        out[key] = value.strip()
    return out


def split_scoped(options: dict[str, Any], scopes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Split ``{"mia.shadows": 4}`` into ``{"mia": {"shadows": 4}}``; unscoped keys are refused."""
    scopes = list(scopes)
    out: dict[str, dict[str, Any]] = {s: {} for s in scopes}
    for key, value in options.items():
        scope, dot, rest = key.partition(".")
        if not dot or scope not in out:
            raise UserError(
                f"--set {key}: prefix the key with the plugin it is for ({', '.join(s + '.KEY' for s in scopes)})"
            )
        out[scope][rest] = value
    return out


def _coerce(value: Any, annotation: Any, key: str, owner: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null", ""}):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, owner)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{owner}: bad value for {key}: {value!r}")
    if origin is typing.Literal:
        for choice in args:
            if value == choice or str(value) == str(choice):
                return choice
        raise UserError(f"{owner}: {key} must be one of {', '.join(map(str, args))}; got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    items = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{owner}: {key} is not a valid list: {value!r}") from exc
            else:
                items = [x.strip() for x in text.split(",") if x.strip()]
        else:
            items = list(value)
        inner = args[0] if args else Any
        coerced = [_coerce(x, inner, key, owner) for x in items]
        return tuple(coerced) if origin is tuple else coerced
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise UserError(f"{owner}: {key} must be true or false; got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise UserError(f"{owner}: {key} must be an integer; got {value!r}")
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                try:
                    as_float = float(value)
                except (TypeError, ValueError, OverflowError):
                    as_float = None
                if as_float is None or not as_float.is_integer():
                    raise UserError(f"{owner}: {key} must be an integer; got {value!r}") from None
                number = int(as_float)
        if abs(number) > _INT64:
            raise UserError(f"{owner}: {key} must fit in 64 bits; got {str(number)[:30]}")
        return number
    if annotation is float:
        if isinstance(value, bool):
            raise UserError(f"{owner}: {key} must be a number; got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{owner}: {key} must be a number; got {value!r}") from exc
    if annotation is str:
        return str(value)
    return value


def build_config(config_cls: type, overrides: dict[str, Any] | None, owner: str) -> Any:
    """A ``config_cls`` instance with ``overrides`` applied, type-checked.

    Unknown keys are refused with the valid ones listed.
    """
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "none (this plugin takes no options)"
        raise UserError(f"{owner}: unknown option {', '.join(unknown)}; valid options: {valid}")
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # noqa: BLE001 - unresolvable hints: take values as given
        hints = {}
    values = {k: _coerce(v, hints.get(k, Any), k, owner) for k, v in overrides.items()}
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{owner}: {exc}") from exc


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    if config is None:
        return {}
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float spelled as a string ("inf", "-inf", "nan").

    Standard JSON has no Infinity, and privbench refuses it when it reads a
    file; ``build_config`` reads "inf" back as the float, so an option such as
    ``epsilon = inf`` survives a round trip through a manifest.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if obj != obj else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    return json.dumps(json_safe(obj), sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any) -> str:
    """A short stable hash of anything JSON-serialisable (dataclasses included)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = config_to_dict(obj)
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def describe_options(config_cls: type) -> list[dict[str, Any]]:
    """Name, type and default of each option, for help texts and docs."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # noqa: BLE001
        hints = {}
    out = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        ann = hints.get(f.name, f.type)
        out.append({"name": f.name, "type": getattr(ann, "__name__", str(ann)), "default": default})
    return out


def _matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` already is of type ``annotation`` (no coercion: a default is never parsed)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(type(value) is type(choice) and value == choice for choice in args)
    if origin in (tuple, list, set, frozenset):
        if not isinstance(value, origin):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and (not args or all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin) if isinstance(origin, type) else True
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def default_problem(config_cls: type) -> str | None:
    """Why the defaults of ``config_cls`` do not match their annotations, or None.

    A default is what every user gets without ``--set``; one of the wrong type
    (``n_init: int = "4"``, a Literal value outside the Literal) would only fail
    deep inside a run, or never, so plugins are checked when they register.
    """
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception as exc:  # noqa: BLE001 - reported as data
        return f"{config_cls.__name__}'s annotations cannot be resolved ({type(exc).__name__}: {' '.join(str(exc).split())})"
    instance = config_cls()
    for f in dataclasses.fields(config_cls):
        if not f.init or f.name not in hints:
            continue
        value = getattr(instance, f.name)
        if not _matches(value, hints[f.name]):
            return (f"{config_cls.__name__}.{f.name} is annotated {_type_name(hints[f.name])} but its default is "
                    f"{show(value)} ({type(value).__name__})")
    return None
