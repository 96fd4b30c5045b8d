"""Generate ``docs/api.md``: every name a plugin may import, with its signature and first docstring line.

The public set is :data:`PUBLIC`: ``privbench.api.__all__`` whole, and the few
names of the training modules that plugins that train something use. The page
is written from the code with :func:`inspect.signature`, so it cannot drift:
``tests/test_api_docs.py`` fails when the page and the code disagree, and
prints the command that rewrites it::

    python -m privbench.docs_api            # rewrite docs/api.md
    python -m privbench.docs_api --check    # exit 1, with a diff, if it is stale
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

COMMAND = "python -m privbench.docs_api"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"

PUBLIC: dict[str, tuple[str, ...] | None] = {
    "privbench": ("hookimpl", "__version__"),
    "privbench.api": None,  # None: the module's __all__
    "privbench.training": ("TrainConfig", "train_classifier", "predict_logits", "predict_proba", "derive_seed",
                           "ON_DEVICE_LIMIT"),
    "privbench.nets": ("make_model", "ConvNet", "channel_stats", "read_state_dict", "load_strict", "MODELS"),
    "privbench.augment": ("DSA", "AugParams", "parse_strategy", "DEFAULT_STRATEGY"),
    "privbench.utility": ("train_on_release", "train_on_releases", "UtilityConfig", "resolve_weights"),
    "privbench.imagestore": ("ImageStore", "is_streamed", "take_images", "concat_images", "image_chunks"),
    "privbench.testing": ("tiny_dataset", "check_plugin", "distill", "attack"),
}
"""Module -> its public names, in the order the page lists them."""

MODULE_NOTES = {
    "privbench": "The package: the marker that plugin hooks are decorated with.",
    "privbench.api": "The plugin contract: data, the base classes, results, scoring helpers (its `__all__`).",
    "privbench.training": "One training loop, for plugins that train a model.",
    "privbench.nets": "The networks shared by plugins.",
    "privbench.augment": "Differentiable Siamese augmentation (DSA).",
    "privbench.utility": "The utility protocol: a classifier trained on a release.",
    "privbench.imagestore": "Streamed images: a split larger than memory, read from disk batch by batch.",
    "privbench.testing": "Helpers for a plugin's own tests (see [testing a plugin](plugins/testing.md)).",
}

CONSTANT_NOTES = {
    "privbench": {"__version__": "The installed privbench version."},
    "privbench.nets": {"MODELS": "The model names `make_model` accepts."},
    "privbench.augment": {"DEFAULT_STRATEGY": "The DSA strategy of the reference implementation."},
}
"""Descriptions of public constants whose source carries no docstring beneath them."""

HEADER = f"""<!-- Generated from the code by `{COMMAND}`; do not edit by hand.
     Run that command after changing a public name or signature; tests/test_api_docs.py checks it. -->

# Public API reference

These are the names a plugin may import, and the only ones. They are **public and stable**:
privbench follows semantic versioning, so these names and their signatures change only with a
major version (a new optional argument or a new name may come in a minor one). Everything else in
`privbench` (any module or name not on this page, and any name starting with `_`) is internal
and may change in any release. A plugin that trains nothing needs only `privbench.hookimpl` and
`privbench.api`; see [writing a plugin](plugins/writing.md) for how the pieces fit and
[the hook reference](plugins/hooks.md) for the hooks.
"""


class _Text:
    """An annotation shown as written in the source (annotations are strings under postponed evaluation)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _plain(annotation: Any) -> Any:
    return _Text(annotation) if isinstance(annotation, str) else annotation


def signature(obj: Any) -> str:
    """``inspect.signature`` with annotations as written, or ``""`` where there is none."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    params = [p.replace(annotation=_plain(p.annotation)) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=_plain(sig.return_annotation)))


def first_line(obj: Any) -> str:
    """The first line of ``obj``'s own docstring (never one inherited from a base, nor a dataclass's default)."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")):
        return ""
    doc = inspect.cleandoc(doc)
    return doc.splitlines()[0].strip() if doc else ""


def _described(text: str) -> str:
    return f": {text}" if text else ""


def public_names(module_name: str) -> list[str]:
    names = PUBLIC[module_name]
    if names is None:
        names = tuple(importlib.import_module(module_name).__all__)
    return list(names)


def _members(cls: type) -> list[tuple[str, Any]]:
    """The public methods and properties a class defines itself (its base's are listed under the base)."""
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            out.append((name, getattr(cls, name)))
        elif inspect.isfunction(value) or isinstance(value, (property, dataclasses.Field)):
            out.append((name, value))
        elif hasattr(value, "func") and inspect.isfunction(getattr(value, "func")):  # functools.cached_property
            out.append((name, value))
    return out


def _entry(module_name: str, name: str, obj: Any) -> list[str]:
    qual = f"{module_name}.{name}"
    if inspect.isclass(obj):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        bases = [b.__name__ for b in obj.__bases__ if b is not object]
        protocol = getattr(obj, "_is_protocol", False)
        head = f"### `{qual}`" if protocol else f"### `{qual}{signature(obj)}`"
        lines = [head, "", f"{kind}{' (' + ', '.join(bases) + ')' if bases else ''}{_described(first_line(obj))}", ""]
        members = _members(obj)
        for member, value in members:
            if isinstance(value, property) or (not callable(value) and hasattr(value, "func")):
                getter = value.fget if isinstance(value, property) else value.func
                lines.append(f"- `.{member}` (property){_described(first_line(getter))}")
            else:
                lines.append(f"- `.{member}{signature(value)}`{_described(first_line(value))}")
        if members:
            lines.append("")
        return lines
    if callable(obj) and (inspect.isfunction(obj) or inspect.ismethod(obj)):
        return [f"### `{qual}{signature(obj)}`", "", first_line(obj) or "function", ""]
    if callable(obj):  # an instance used as a decorator (pluggy's HookimplMarker)
        return [f"### `{qual}`", "", f"{type(obj).__name__}: decorate a hook implementation, "
                                     "`@hookimpl def register_distillers(register): ...`", ""]
    value = "" if name == "__version__" else f" = {obj!r}"  # the version changes with every release
    return [f"### `{qual}: {type(obj).__name__}{value}`", "", _constant_doc(module_name, name) or "constant", ""]


def _constant_doc(module_name: str, name: str) -> str:
    """The first line of the string literal that follows ``NAME = ...`` in the module's source, or a note."""
    import ast

    if module_name in CONSTANT_NOTES and name in CONSTANT_NOTES[module_name]:
        return CONSTANT_NOTES[module_name][name]
    source = inspect.getsource(importlib.import_module(module_name))
    body = ast.parse(source).body
    for node, after in zip(body, body[1:]):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                return inspect.cleandoc(after.value.value).splitlines()[0]
    return ""


def render() -> str:
    """The whole page, from the code."""
    lines = [HEADER]
    lines.append("Modules: " + ", ".join(f"[`{m}`](#{m.replace('.', '')})" for m in PUBLIC) + ".")
    lines.append("")
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", MODULE_NOTES[module_name], ""]
        for name in public_names(module_name):
            if not hasattr(module, name):
                raise AttributeError(f"{module_name} has no public name {name!r} (listed in privbench.docs_api.PUBLIC)")
            lines += _entry(module_name, name, getattr(module, name))
    return "\n".join(lines).rstrip() + "\n"


def stale(page: Path | None = None) -> str:
    """A diff between the page on disk (default :data:`PAGE`) and the code ("" when they agree)."""
    page = PAGE if page is None else page
    current = page.read_text(encoding="utf-8") if page.is_file() else ""
    fresh = render()
    if current == fresh:
        return ""
    return "".join(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True), f"{page} (on disk)",
                                        f"{page} (from the code)"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        diff = stale()
        if diff:
            print(diff, end="")
            print(f"{PAGE} is out of date; run: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if args:
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
