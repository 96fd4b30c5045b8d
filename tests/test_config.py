"""--set key=value parsing and checking against a plugin's frozen Config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from privbench.config import build_config, config_hash, parse_set_options, split_scoped
from privbench.errors import UserError


@dataclass(frozen=True)
class Demo:
    iterations: int = 10
    lr: float = 1.0
    init: Literal["real", "noise"] = "real"
    dsa: bool = True
    strategy: str = "color_crop"
    sizes: tuple[int, ...] = (1, 2)
    weights: str | None = None


def test_strings_are_coerced_to_field_types():
    cfg = build_config(Demo, parse_set_options(["iterations=20", "lr=0.5", "init=noise", "dsa=false",
                                                "sizes=3,4", "weights=none"]), "distiller demo")
    assert cfg == Demo(iterations=20, lr=0.5, init="noise", dsa=False, sizes=(3, 4), weights=None)
    assert build_config(Demo, {"iterations": 5.0}, "x").iterations == 5  # TOML numbers


@pytest.mark.parametrize(
    "items, message",
    [
        (["speed=3"], "unknown option speed; valid options: dsa, init, iterations, lr, sizes, strategy, weights"),
        (["iterations=2.5"], "iterations must be an integer"),
        (["lr=fast"], "lr must be a number"),
        (["init=zeros"], "init must be one of real, noise"),
        (["dsa=maybe"], "dsa must be true or false"),
    ],
)
def test_bad_options_are_refused_with_the_valid_ones(items, message):
    with pytest.raises(UserError) as info:
        build_config(Demo, parse_set_options(items), "distiller demo")
    assert message in str(info.value)


def test_set_syntax_and_scopes():
    with pytest.raises(UserError, match="key=value"):
        parse_set_options(["novalue"])
    scoped = split_scoped({"mia.shadows": "4", "aia.mask": "0.5"}, ["mia", "aia"])
    assert scoped == {"mia": {"shadows": "4"}, "aia": {"mask": "0.5"}}
    with pytest.raises(UserError, match="prefix the key"):
        split_scoped({"shadows": "4"}, ["mia"])


def test_config_hash_is_stable_and_sensitive():
    assert config_hash(Demo()) == config_hash(Demo())
    assert config_hash(Demo()) != config_hash(Demo(lr=0.5))
    assert config_hash({"b": 1, "a": 2}) == config_hash({"a": 2, "b": 1})


def test_comma_separated_items_lose_the_spaces_around_them():
    @dataclass(frozen=True)
    class C:
        names: tuple[str, ...] = ()
        sizes: tuple[int, ...] = ()

    config = build_config(C, {"names": "a, b ,c", "sizes": " 4, 8,"}, owner="t")
    assert config.names == ("a", "b", "c") and config.sizes == (4, 8)
