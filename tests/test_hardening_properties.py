"""Properties of the checks on release.json and suite files: any input is a usable value or one UserError line.

The parsers are called directly (not the CLI) on generated documents, most of
them close to a real one so that every field's check is reached.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

from privbench.api import Release
from privbench.errors import UserError
from privbench.provenance import PROVENANCE_FILE

import hypothesis  # noqa: E402
st = hypothesis.strategies

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)  # no lone surrogates: TOML has none
_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | _text
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=8)


def _maybe(valid):
    """Mostly a valid value, sometimes anything: documents close to real ones reach every check."""
    return st.integers(0, 9).flatmap(lambda i: valid if i else _json)


_manifests = st.fixed_dictionaries(
    {"method": _maybe(st.sampled_from(["random", "dm", "not-installed"]))},
    optional={"ipc": _maybe(st.none() | st.integers(1, 100)), "config": _maybe(st.dictionaries(_text, _json)),
              "seed": _maybe(st.integers(0, 2**63 - 1)), "images": _json, "image_shape": _json,
              "class_names": _json, "versions": _json, "wall_time_s": _json,
              "source_fingerprint": _maybe(st.just("f" * 64)), "source_indices": _maybe(st.lists(st.integers(0))),
              "extra": _json},
)
_provenances = _maybe(st.fixed_dictionaries(
    {}, optional={"notice": _maybe(_text), "init_indices": _maybe(st.lists(st.integers(0, 99))),
                  "source_fingerprint": _maybe(st.just("f" * 64)), "training_images": _json, "warnings": _json},
))


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(manifest=_manifests, provenance=_provenances)
def test_release_fields_are_accepted_or_refused_in_one_line(manifest, provenance):
    """Whatever release.json holds: a UserError, or values that the audit and the Arrow tables can use."""
    import pyarrow as pa

    from privbench.engine import release_columns
    from privbench.provenance import check_provenance
    from privbench.releases import check_manifest
    from privbench.results import RESULTS_SCHEMA

    try:
        check_provenance(provenance, PROVENANCE_FILE)
    except UserError as exc:
        assert "\n" not in str(exc)
    try:
        shareable, private = check_manifest(manifest, "release.json")
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    release = Release(torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.int64), shareable, private)
    assert isinstance(release.method, str) and (release.ipc is None or release.ipc >= 1)
    dict(shareable.get("config") or {})
    schema = pa.schema([RESULTS_SCHEMA.field(n) for n in ("release_method", "release_ipc", "release_seed")])
    pa.Table.from_pylist([release_columns(release)], schema=schema)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes and backslashes escaped, control characters as \\uXXXX."""
    return '"' + "".join("\\" + c if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c
                         for c in text) + '"'


_toml_values = st.recursive(
    st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=2),
    max_leaves=6,
)


def _near(valid):
    """As :func:`_maybe`, for TOML."""
    return st.integers(0, 9).flatmap(lambda i: valid if i else _toml_values)


_names = st.lists(st.sampled_from(["digits", "random", "mia", "ssim", "convnet"]), max_size=2)
_options = st.dictionaries(st.sampled_from(["epochs", "width"]), _toml_values, max_size=2)
_release_tables = st.fixed_dictionaries(
    {"method": _near(st.sampled_from(["random", "dm"]))},
    optional={"ipc": _near(st.integers(1, 50) | st.lists(st.integers(1, 50), max_size=2)), "config": _near(_options),
              "utility_config": _near(_options),
              "audit_config": _near(st.dictionaries(st.sampled_from(["mia"]), _options, max_size=1))},
)
_suites = st.fixed_dictionaries(
    {"datasets": _near(st.just(["digits"]) | st.just("digits")),
     "releases": _near(st.lists(_release_tables, min_size=1, max_size=2))},
    optional={"name": _near(st.sampled_from(["tiny", "a.b-c_1"])), "description": _near(_text),
              "seeds": _near(st.lists(st.integers(0, 2**63 - 1), max_size=3) | st.integers(0, 9)),
              "utility": _near(st.fixed_dictionaries({}, optional={"models": _near(_names),
                                                                   "seeds": _near(st.integers(1, 5)),
                                                                   "config": _near(_options)})),
              "audit": _near(st.fixed_dictionaries({}, optional={
                  "attacks": _near(_names), "metrics": _near(_names),
                  "config": _near(st.dictionaries(st.sampled_from(["mia"]), _options, max_size=1)),
                  "metric_config": _near(st.dictionaries(st.sampled_from(["ssim"]), _options, max_size=1))})),
              "report": _near(st.fixed_dictionaries({}, optional={"show_private_images": _near(st.booleans())}))},
)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(document=_suites)
def test_suite_documents_are_accepted_or_refused_in_one_line(document):
    """Whatever a suite file holds: a UserError, or a Suite whose every field has the type the runner expects."""
    from privbench.schema import is_plain_name
    from privbench.suites import parse_suite

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prop.toml"
        path.write_text("".join(f"{_toml_string(k)} = {_toml(v)}\n" for k, v in document.items()), encoding="utf-8")
        try:
            suite = parse_suite(path)
        except UserError as exc:
            assert "\n" not in str(exc)
            return
    assert is_plain_name(suite.name) and isinstance(suite.description, str)
    assert suite.datasets and all(isinstance(d, str) for d in suite.datasets)
    assert all(type(s) is int and 0 <= s < 2**63 for s in suite.seeds)
    assert all(isinstance(r.method, str) and (r.ipc is None or (type(r.ipc) is int and r.ipc >= 1))
               and isinstance(r.config, dict) for r in suite.releases)
    assert type(suite.utility_seeds) is int and suite.utility_seeds >= 1
    assert all(isinstance(a, str) for a in suite.attacks + suite.metrics + suite.utility_models)
    assert isinstance(suite.show_private_images, bool)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(data=st.binary(max_size=40))
def test_any_bytes_read_as_json_or_toml_are_a_value_or_one_line(data):
    from privbench.schema import read_json, read_toml

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "file"
        path.write_bytes(data)
        for read in (read_json, read_toml):
            try:
                read(path, "file")
            except UserError as exc:
                assert "\n" not in str(exc)
