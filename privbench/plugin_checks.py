"""What a registered class must be before privbench accepts it as a plugin.

Checked once, when the plugin loads, so that a mistake a user would only meet
deep inside a run (a metric ranked the wrong way round, a default of the wrong
type) is a row in ``privbench plugins`` instead. Each check returns why a class
is refused, in one line, or None.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from privbench.config import default_problem

NAME = re.compile(r"[a-z][a-z0-9_\-]*")


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _base_for(kind: str) -> type:
    from privbench.api import KINDS

    return KINDS[kind]


def _sets_direction(cls: type, base: type) -> bool:
    """Whether ``cls`` or a class between it and ``base`` sets ``higher_is_better`` itself."""
    for klass in cls.__mro__:
        if klass is base:
            return False
        if "higher_is_better" in vars(klass):
            return True
    return False


def check_plugin_class(kind: str, obj: Any) -> str | None:
    """Why ``obj`` is not a valid plugin class of this kind, or None."""
    base = _base_for(kind)
    if not isinstance(obj, type) or not issubclass(obj, base):
        return f"registered {obj!r}, which is not a subclass of privbench.api.{base.__name__}"
    name = getattr(obj, "name", "")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return f"{obj.__name__} has no valid name (lower-case letters, digits, '-' or '_'): {name!r}"
    config = getattr(obj, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        return f"{obj.__name__}.Config must be a dataclass"
    if not config.__dataclass_params__.frozen:
        return f"{obj.__name__}.Config must be a frozen dataclass"
    try:
        config()
    except Exception as exc:  # noqa: BLE001 - reported as data
        return f"{obj.__name__}.Config() needs defaults for every field: {one_line(exc)}"
    problem = default_problem(config)
    if problem:
        return f"{obj.__name__}.Config: {problem}"
    if kind == "metric":
        if not _sets_direction(obj, base):
            return (f"{obj.__name__} does not set higher_is_better: set it to True when a higher value means a "
                    f"closer copy (SSIM, PSNR) or False when a lower one does (a distance: LPIPS, EMD)")
        if not isinstance(obj.higher_is_better, bool):
            return f"{obj.__name__}.higher_is_better must be True or False, not {obj.higher_is_better!r}"
    return None
