"""core.peft_config: PEFT's rank_pattern/alpha_pattern meaning without running a user's regex, and
every config field typed: any adapter_config.json is read or refused with one InvalidInput line."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError, InvalidInput, MalformedFile
from core.peft_config import lora_settings, parse_key, pattern_owner, read_config
from tests.properties import bounded, dumps, json_values

Q = "model.layers.0.self_attn.q_proj"
LORA = {"peft_type": "LORA", "r": 8, "lora_alpha": 16}


def peft_matches(key: str, name: str) -> bool:
    """PEFT's own rule (`peft.utils.other.get_pattern_key`)."""
    return re.match(rf"(.*\.)?({key})$", name) is not None


body = st.lists(st.sampled_from(["a", "b", "0", "_", "-", ".", "\\."]), min_size=1, max_size=6).map("".join)
keys = st.tuples(
    st.sampled_from(["", "^"]), st.sampled_from(["", ".*"]), body, st.sampled_from(["", "$"])
).map("".join)
names = st.text(alphabet="ab0_-.", max_size=10)


@bounded(400)
@given(keys, names)
def test_the_safe_matcher_means_what_peft_means(key: str, name: str) -> None:
    assert parse_key(key, "rank_pattern").matches(name) == peft_matches(key, name)


@pytest.mark.parametrize(
    ("key", "name", "expected"),
    [
        ("q_proj", Q, True),
        ("self_attn.q_proj", Q, True),
        ("attn.q_proj", Q, False),  # a suffix only at a dot, as in PEFT
        (Q, Q, True),
        ("^" + Q, Q, True),
        ("^self_attn.q_proj", Q, False),
        (".*_proj", Q, True),
        ("model\\.layers\\.0\\.self_attn\\.q_proj$", Q, True),
        ("layers.1.self_attn.q_proj", Q, False),
    ],
)
def test_keys_people_write(key: str, name: str, expected: bool) -> None:
    assert parse_key(key, "rank_pattern").matches(name) is expected is peft_matches(key, name)


@pytest.mark.parametrize(
    "key", ["(a+)+", "(", "[0-9]+", "q|k", "q_proj*", "layers.[01].q", "a{2}", "\\d", "a\\"]
)
def test_other_regexes_are_refused_in_one_line(key: str) -> None:
    with pytest.raises(ConfigError, match=r"is a regular expression patchreg does not run") as caught:
        parse_key(key, "rank_pattern")
    assert "\n" not in caught.value.message


def test_a_catastrophic_key_answers_at_once() -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError):
        lora_settings({**LORA, "rank_pattern": {"(a+)+": 4}})
    assert pattern_owner(["a" * 28], "a" * 27 + "!") is None
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"rank_pattern": ["q_proj"]},
            "rank_pattern must be an object of module name -> value, found a list",
        ),
        ({"rank_pattern": {"q_proj": "4"}}, "rank_pattern['q_proj']='4': expected an integer"),
        ({"rank_pattern": {"q_proj": 4.5}}, "expected an integer"),
        ({"rank_pattern": {"q_proj": 0}}, "expected an integer in (0, 65,536]"),
        ({"alpha_pattern": {"q_proj": float("nan")}}, "NaN is not a number JSON allows"),
        (
            {"alpha_pattern": {"q_proj": 1e300}},
            "alpha_pattern['q_proj']=1e+300: expected a number in (0, 1,000,000,000]",
        ),
        ({"alpha_pattern": {"q_proj": [1]}}, "expected a number"),
        ({"r": 4.5}, "r=4.5: expected an integer"),
        ({"r": True}, "r=True"),
        ({"lora_alpha": 0}, "lora_alpha=0"),
        ({"lora_dropout": 2}, "lora_dropout=2"),
        ({"use_rslora": "yes"}, "use_rslora must be true or false, found a string"),
        ({"target_modules": [1]}, "target_modules must be a list of module names"),
        ({"target_parameters": "experts"}, "target_parameters must be a list of parameter names"),
        ({"bias": 3}, "bias must be one of"),
        ({"layers_to_transform": [-1]}, "layers_to_transform must be"),
    ],
)
def test_fields_are_typed(config: dict[str, Any], message: str) -> None:
    raw = json.dumps({**LORA, **config}, allow_nan=True).encode()
    with pytest.raises(MalformedFile, match=re.escape(message)):
        read_config(raw)


def test_a_valid_config_reads_with_its_patterns_in_order() -> None:
    config = read_config(
        json.dumps({**LORA, "rank_pattern": {"q_proj": 4, Q: 2}, "use_rslora": False}).encode()
    )
    settings = lora_settings(config)
    assert settings.scale(Q) == (4, 4.0)  # the first key that matches wins, as in PEFT
    assert settings.scale("model.layers.0.self_attn.v_proj") == (8, 2.0)


@bounded()
@given(
    st.dictionaries(
        st.sampled_from([*LORA, "rank_pattern", "alpha_pattern", "bias", "x"]), json_values, max_size=6
    )
)
def test_any_config_is_read_or_refused(fields: dict[str, Any]) -> None:
    try:
        config = read_config(dumps({**LORA, **fields}).encode())
    except InvalidInput as exc:
        assert exc.message.startswith("adapter_config.json") and "\n" not in exc.message
    else:
        assert isinstance(config, dict)


@bounded()
@given(st.binary(max_size=200) | json_values.map(dumps).map(str.encode))
def test_any_bytes_are_read_or_refused(raw: bytes) -> None:
    try:
        read_config(raw)
    except InvalidInput as exc:
        assert exc.message.startswith("adapter_config.json") and "\n" not in exc.message
