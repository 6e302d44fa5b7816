"""Method configs and `--set` overrides: every problem names the field and what is allowed."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from trainer.methods import get_method, method_names, parse_overrides, register_method
from trainer.methods.lora import LoraMethod


def test_the_four_methods_are_registered():
    assert method_names() == ["full", "lora", "propulsion", "s2ft"]
    with pytest.raises(ConfigError, match="unknown method 'dora'; choose one of full, lora"):
        get_method("dora")


def test_registering_a_name_twice_is_rejected():
    with pytest.raises(ValueError, match="'lora' is already registered by LoraMethod"):
        register_method(LoraMethod())


def test_overrides_are_typed():
    config = parse_overrides("lora", ["r=8", "alpha=16", "target_modules=q_proj, v_proj"])
    assert (config.r, config.alpha, config.target_modules) == (8, 16.0, ("q_proj", "v_proj"))
    s2 = parse_overrides("s2ft", ["o_ratio=0.1", "v_ratio=none"])
    assert s2.o_ratio == 0.1 and s2.v_ratio is None


def test_unknown_key_lists_the_allowed_keys():
    with pytest.raises(ConfigError) as err:
        parse_overrides("lora", ["rank=8"])
    assert "rank" in err.value.message and "allowed: alpha, dropout, r, target_modules" in err.value.message


@pytest.mark.parametrize(
    ("method", "item", "expected"),
    [
        ("lora", "r=eight", "r='eight': expected an integer"),
        ("lora", "r=0", "r=0 must be an integer ≥ 1"),
        ("lora", "dropout=1.5", "dropout=1.5 is outside [0.0, 0.999]"),
        ("propulsion", "degree=0", "degree=0 must be an integer in [1, 200]"),
        ("s2ft", "backprop=magic", "backprop='magic' is not one of sliced, autograd"),
        ("s2ft", "budget=0", "budget=0.0 is outside (0.0, 1.0]"),
        ("lora", "r", "expected key=value"),
    ],
)
def test_bad_values_name_the_field(method, item, expected):
    with pytest.raises(ConfigError) as err:
        parse_overrides(method, [item])
    assert expected in err.value.message


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as err:
        parse_overrides("lora", ["r=0", "dropout=2"])
    assert "r=0" in err.value.message and "dropout=2" in err.value.message


def test_a_target_that_matches_nothing_is_an_error():
    from trainer.tiny import build_model

    with pytest.raises(ConfigError, match="qproj"):
        get_method("full").prepare(build_model(), parse_overrides("full", ["target_modules=qproj"]))


def test_every_field_is_documented():
    for name in method_names():
        docs = get_method(name).config_cls.describe()
        assert docs and all(docs.values()), name
