"""Reading the files privbench reads, and checking their fields where they are read.

A release manifest and its provenance, a suite, a dataset card, a job's
summary: each comes from disk, may have been edited by hand or written by
another tool, and is used long after it is read (an ``ipc`` that is a string
fails deep in Arrow, after the work it was to label). So each is read through
this module and checked field by field against a short declaration: bad input
becomes one :class:`~privbench.errors.UserError` line naming the file, the
field and what was expected, before any work starts.

A declaration is a list of :class:`Field` (name, predicate, what was expected
in words); :func:`check_fields` applies it. The predicates below never let a
bool pass as an integer: JSON and TOML keep them apart, and so does privbench.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from privbench.errors import UserError

Check = Callable[[Any], bool]

INT64_MAX = 2**63 - 1
SHOW_LIMIT = 60


def show(value: Any, limit: int = SHOW_LIMIT) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters: enough to recognise, never a wall of text."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- reading


def read_text(path: Path, what: str) -> str:
    """The file as UTF-8 text (a leading byte-order mark is dropped); unreadable or other encodings fail in one line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UserError(f"no such {what}: {path}") from exc
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (invalid byte {data[exc.start]:#04x} at offset "
                        f"{exc.start}); save it as UTF-8") from exc
    return text.removeprefix("\ufeff")


def read_json(path: Path, what: str) -> Any:
    """The file's JSON value; not UTF-8 or not JSON is one :class:`UserError` line naming the file."""
    text = read_text(path, what)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, an integer too long, nesting too deep
        raise UserError(f"{what} {path} is not valid JSON: {exc}") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (standard JSON has no NaN or Infinity)")


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The file's TOML document; not UTF-8 or not TOML is one :class:`UserError` line naming the file."""
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise UserError(f"{what} {path} is not valid TOML: {exc}") from exc


# --------------------------------------------------------------------------- predicates


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def is_int(value: Any) -> bool:
    """An integer, and not a bool (``True`` is an ``int`` to Python, never to privbench)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def is_table(value: Any) -> bool:
    return isinstance(value, dict)


def int_between(low: int | None = None, high: int | None = None) -> Check:
    """An integer (not a bool) within ``[low, high]``."""
    return lambda v: is_int(v) and (low is None or v >= low) and (high is None or v <= high)


def list_of(check: Check) -> Check:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def one_or_list(check: Check) -> Check:
    """One value, or a list of them (a suite's ``ipc = 10`` or ``ipc = [1, 10]``)."""
    return lambda v: check(v) or list_of(check)(v)


def table_of(check: Check) -> Check:
    return lambda v: isinstance(v, dict) and all(check(x) for x in v.values())


def either(*checks: Check) -> Check:
    return lambda v: any(c(v) for c in checks)


def nullable(check: Check) -> Check:
    """``null`` (JSON) or what ``check`` accepts."""
    return lambda v: v is None or check(v)


def one_of(*choices: Any) -> Check:
    return lambda v: not isinstance(v, bool) and any(type(v) is type(c) and v == c for c in choices)


PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
PLAIN_NAME_EXPECTED = ("a plain name (letters, digits, '_', '-' and '.', not starting with '.', at most 100 "
                       "characters)")


def is_plain_name(value: Any) -> bool:
    """A name safe to use as one folder name: no separator, no ``..``, no hidden folder."""
    return isinstance(value, str) and PLAIN_NAME.fullmatch(value) is not None


# --------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Field:
    """One key of a table: what it must hold, in code (``check``) and in words (``expected``)."""

    name: str
    check: Check
    expected: str
    required: bool = False


def require_table(value: Any, where: str, expected: str = "a table") -> dict[str, Any]:
    """``value`` if it is a table (a JSON object, a TOML table); else one line saying what it is."""
    if not isinstance(value, dict):
        raise UserError(f"{where} must hold {expected}, got {show(value)}")
    return value


def check_fields(data: Any, fields: Iterable[Field], where: str, *, allow_unknown: bool = True,
                 expected: str = "a table") -> dict[str, Any]:
    """Check ``data`` against its declaration; return it. The first problem is one :class:`UserError`.

    ``where`` names the file (and the part of it): ``suite tiny.toml, [utility]``.
    Unknown keys are refused when ``allow_unknown`` is false (a suite's typo must
    not be silently ignored) and kept otherwise (a third party's manifest keys).
    """
    fields = list(fields)
    data = require_table(data, where, expected)
    if not allow_unknown:
        allowed = {f.name for f in fields}
        extra = sorted(str(k) for k in data if k not in allowed)
        if extra:
            raise UserError(f"{where}: unknown key(s) {', '.join(extra)}; valid keys: {', '.join(sorted(allowed))}")
    for f in fields:
        if f.name not in data:
            if f.required:
                raise UserError(f"{where}: field {f.name!r} is required: {f.expected}")
            continue
        value = data[f.name]
        if not f.check(value):
            raise UserError(f"{where}: field {f.name!r} must be {f.expected}, got {show(value)}")
    return data


def as_list(value: Any) -> list[Any]:
    """A checked ``one_or_list`` field as a list (absent: empty)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
