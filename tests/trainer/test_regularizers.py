"""Regularisers beside the methods: the registry, `--set` routing, and the stored form round trip."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.errors import ConfigError
from core.method_config import method_settings, regularizer_name
from trainer.methods import config_from_dict, parse_overrides
from trainer.regularizers import (
    AlewrConfig,
    Regularization,
    get_regularizer,
    register_regularizer,
    regularization,
    regularizer_from_dict,
    regularizer_names,
)
from trainer.regularizers.alewr import AlewrRegularizer
from trainer.settings import parse_settings, settings_from_dict, settings_to_dict


def test_the_registry_refuses_duplicate_and_unknown_names():
    assert regularizer_names() == ["alewr"]
    with pytest.raises(
        ValueError, match="regulariser name 'alewr' is already registered by AlewrRegularizer"
    ):
        register_regularizer(AlewrRegularizer())
    with pytest.raises(ConfigError) as err:
        get_regularizer("ewc")
    assert err.value.message == "unknown regulariser 'ewc'; choose one of alewr"


def test_a_regularization_takes_its_own_config_type():
    with pytest.raises(TypeError, match="takes a AlewrConfig"):
        Regularization(get_regularizer("alewr"), parse_overrides("lora"))
    reg = regularization("alewr", lambda_=0.5)
    assert reg.replace(importance="x.st").config == AlewrConfig(lambda_=0.5, importance="x.st")
    with pytest.raises(ConfigError, match="lambda=-1 is outside"):
        reg.replace(lambda_=-1)


def test_set_routes_prefixed_keys_to_the_chosen_regularizer():
    config, reg = parse_settings("s2ft", ["budget=0.2", "alewr_lambda=0.01", "alewr_balance=0.1"], "alewr")
    assert config == parse_overrides("s2ft", ["budget=0.2"])
    assert reg is not None and reg.config == AlewrConfig(lambda_=0.01, balance=0.1)
    assert parse_settings("lora", ["r=4"]) == (parse_overrides("lora", ["r=4"]), None)


@pytest.mark.parametrize(
    ("method", "items", "regularizer", "expected"),
    [
        ("full", [], "ewc", "unknown regulariser 'ewc'; choose one of alewr"),
        ("full", ["alewr_lambda=abc"], "alewr", "alewr_lambda='abc': expected a number"),
        ("full", ["alewr_lambda=-1"], "alewr", "lambda=-1.0 is outside [0.0, inf]"),
        ("s2ft", ["alewr_lambda=1"], None, "--set alewr_lambda is a setting of regulariser 'alewr'"),
        ("lora", [], "alewr", "method 'lora' does not support regularize='alewr' (use full or s2ft)"),
        ("propulsion", [], "alewr", "method 'propulsion' does not support regularize='alewr'"),
        ("s2ft", ["regularize=alewr"], "alewr", "unknown setting for method 's2ft'"),
    ],
)
def test_bad_settings_name_the_setting(method, items, regularizer, expected):
    with pytest.raises(ConfigError) as err:
        parse_settings(method, items, regularizer)
    assert expected in err.value.message


def test_settings_round_trip_through_the_stored_form():
    config, reg = parse_settings("s2ft", ["budget=0.2", "alewr_lambda=0.01"], "alewr")
    assert reg is not None
    stored = settings_to_dict(config, reg.replace(importance="/per/base/omega.st"))
    assert stored["regularizer"] == {"name": "alewr", "config": {"lambda": 0.01, "balance": 0.0}}
    assert "importance" not in str(stored) and regularizer_name(stored) == "alewr"
    back_config, back_reg = settings_from_dict("s2ft", stored)
    assert back_config == config and back_reg is not None and back_reg.config == reg.config
    lora = parse_overrides("lora", ["r=4", "target_modules=q_proj,v_proj"])
    assert settings_from_dict("lora", settings_to_dict(lora)) == (lora, None)
    assert config_from_dict("lora", lora.to_dict()) == lora  # lists back to tuples


def test_old_flat_alewr_configs_are_still_read():
    old = {
        **parse_overrides("s2ft", ["budget=0.2"]).to_dict(),
        "regularize": "alewr",
        "alewr_lambda": 0.01,
        "alewr_balance": 0.0,
        "importance": "/old/base/omega.st",
    }
    assert regularizer_name(old) == "alewr" and "importance" not in method_settings(old)
    config, reg = settings_from_dict("s2ft", old)
    assert config == parse_overrides("s2ft", ["budget=0.2"])
    assert reg is not None and reg.config == AlewrConfig(lambda_=0.01)  # the old per-base path is dropped
    plain = {
        **parse_overrides("full").to_dict(),
        "regularize": "none",
        "alewr_lambda": 1.0,
        "importance": None,
    }
    assert regularizer_name(plain) is None and settings_from_dict("full", plain) == (
        parse_overrides("full"),
        None,
    )
    assert regularizer_from_dict({}) is None


@pytest.mark.parametrize(
    ("method", "data", "expected"),
    [
        (
            "lora",
            {"rank": 8},
            "unknown setting 'rank' for method 'lora'; allowed: alpha, dropout, r, target_modules",
        ),
        ("lora", {"r": "8"}, "r='8': expected an integer"),
        ("lora", {"r": True}, "r=True: expected an integer"),
        ("s2ft", {"budget": "x"}, "budget='x': expected a number"),
        ("s2ft", {"budget": 0}, "budget=0.0 is outside (0.0, 1.0]"),
        ("full", {"target_modules": "q_proj"}, "target_modules='q_proj': expected a list of names"),
        (
            "full",
            {"regularizer": {"name": "alewr", "config": {"lam": 1}}},
            "unknown setting 'lam' for regulariser",
        ),
        ("full", {"regularizer": {"name": "ewc"}}, "unknown regulariser 'ewc'"),
        ("lora", {"regularizer": {"name": "alewr", "config": {}}}, "does not support regularize='alewr'"),
    ],
)
def test_stored_configs_are_checked_key_by_key(method, data, expected):
    with pytest.raises(ConfigError) as err:
        settings_from_dict(method, data)
    assert expected in err.value.message


def test_every_regularizer_setting_is_documented():
    for name in regularizer_names():
        docs = get_regularizer(name).config_cls.describe()
        assert docs and all(docs.values()), name
    assert list(AlewrConfig.describe()) == ["lambda", "balance", "importance"]


MODULES = [
    "trainer.loop",
    "trainer.config",
    "trainer.settings",
    "trainer.methods",
    "trainer.methods.base",
    "trainer.methods.registry",
    "trainer.methods.full",
    "trainer.methods.s2ft",
    "trainer.regularizers",
    "trainer.regularizers.base",
    "trainer.regularizers.registry",
    "trainer.regularizers.alewr",
    "trainer.regularizers.alewr.penalty",
    "trainer.regularizers.alewr.importance",
]


def test_each_trainer_module_imports_alone_in_a_fresh_interpreter():
    """No import cycle: every module imports first, on its own; the loop loads no regulariser."""
    code = "\n".join(
        [
            "import importlib, sys",
            f"for name in {MODULES!r}:",
            "    for loaded in [m for m in sys.modules if m.startswith('trainer')]:",
            "        del sys.modules[loaded]",
            "    importlib.import_module(name)",
            "    if name == 'trainer.loop':",
            "        assert not any(m.startswith('trainer.regularizers') for m in sys.modules), name",
        ]
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
