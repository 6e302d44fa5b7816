"""core.inputs: the one set of limits for parsed input. Anything a user sends either parses within
the limits or is refused with one InvalidInput line; no other exception ever escapes."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import inputs
from core.errors import DataError, InvalidInput, MalformedFile
from tests.properties import bounded, deep, dumps, json_fragments, json_values


def _within_limits(value: Any, depth: int = 1) -> bool:
    if isinstance(value, dict | list):
        children = list(value.values()) if isinstance(value, dict) else value
        keys_ok = all(inputs.string_problem(k) is None for k in value) if isinstance(value, dict) else True
        return depth <= inputs.MAX_DEPTH and keys_ok and all(_within_limits(c, depth + 1) for c in children)
    if isinstance(value, str):
        return inputs.string_problem(value) is None
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) < 10**inputs.MAX_INT_DIGITS
    return True


@bounded()
@given(json_values)
def test_any_json_value_parses_exactly_when_within_limits(value: Any) -> None:
    text = dumps(value)
    if _within_limits(value):
        assert inputs.loads(text, "doc") == value or value != value
    else:
        with pytest.raises(InvalidInput, match=r"^doc: "):
            inputs.loads(text, "doc")


@bounded()
@given(st.binary(max_size=200) | json_fragments.map(str.encode))
def test_arbitrary_bytes_parse_or_raise_one_line(raw: bytes) -> None:
    try:
        inputs.loads(raw, "doc", DataError)
    except DataError as exc:
        assert exc.message.startswith("doc: ") and "\n" not in exc.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (deep(100_000), "nested more than 32 levels deep"),
        (deep(33), "nested more than 32 levels deep"),
        ("[" + "9" * 5000 + "]", "an integer has 5,000 digits"),
        ("-" + "9" * 21, "an integer has 21 digits"),
        ("[NaN]", "NaN is not a number JSON allows"),
        ("-Infinity", "-Infinity is not a number JSON allows"),
        ("1e999", "the number 1e999 is out of range"),
        ('{"a\\u0000": 1}', "a key holds a NUL character"),
        ('["\\ud800"]', "unpaired surrogate"),
        ("{", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid"),
    ],
)
def test_refusals_name_the_input(text: str | bytes, message: str) -> None:
    with pytest.raises(MalformedFile, match=r"^f\.json: .*" + message):
        inputs.loads(text, "f.json", MalformedFile)


def test_what_is_within_limits_parses() -> None:
    assert inputs.loads(deep(32), "doc") is not None
    assert inputs.loads("[" + "9" * 20 + ", 1e300, -2.5]", "doc") == [10**20 - 1, 1e300, -2.5]


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (float("nan"), {}, "x=nan: expected a finite number"),
        (float("inf"), {}, "x=inf: expected a finite number"),
        (1e300, {"integer": True}, "x=1e+300: expected an integer in [1, 100]"),
        (10**4000, {}, "x=<13288-bit integer>"),
        (2.5, {"integer": True}, "expected an integer"),
        (True, {}, "expected a number"),
        ("3", {}, "expected a number"),
        (0, {}, "x=0: expected a number in [1, 100]"),
    ],
)
def test_numbers_are_finite_and_bounded(value: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        inputs.number(value, "x", lo=1, hi=100, **kwargs)


def test_numbers_within_bounds() -> None:
    assert inputs.number(2.0, "x", lo=1, hi=100, integer=True) == 2
    assert inputs.number(0.5, "x", lo=0, hi=1, lo_open=True) == 0.5
    with pytest.raises(InvalidInput, match=r"\(0, 1\]"):
        inputs.number(0, "x", lo=0, hi=1, lo_open=True)


@bounded()
@given(st.text(alphabet="0123456789", min_size=1, max_size=6000), st.integers(min_value=0, max_value=10**12))
def test_decimal_saturates_without_converting_huge_strings(digits: str, cap: int) -> None:
    expected = min(int(digits), cap) if len(digits.lstrip("0")) < 4000 else cap
    assert inputs.decimal(digits, cap) == expected


def test_text_refuses_nul_and_surrogates() -> None:
    assert inputs.text("medical", "name") == "medical"
    with pytest.raises(InvalidInput, match=r"^name holds a NUL character$"):
        inputs.text("a\x00b", "name")
    with pytest.raises(InvalidInput, match="unpaired surrogate"):
        inputs.text("a\udc80", "name")
