"""Shared hypothesis settings and strategies for the parser property tests.

Every property test runs a bounded number of examples, derandomized (the same examples on every
run), with no per-example deadline (the machine is shared), so the suite stays fast and a failure
reproduces.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

MAX_EXAMPLES = 200


def bounded(examples: int = MAX_EXAMPLES) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# Hostile scalars: NUL, lone surrogates, huge and non-finite numbers, plus ordinary ones.
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**19, max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "", "model.layers.0.self_attn.q_proj"]),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    hostile_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def deep(depth: int, leaf: str = "1") -> str:
    """A JSON text nested `depth` levels deep (alternating arrays and objects)."""
    return (
        '{"a":' * (depth // 2)
        + "[" * (depth - depth // 2)
        + leaf
        + "]" * (depth - depth // 2)
        + "}" * (depth // 2)
    )


def dumps(value: Any) -> str:
    """JSON text for any value `json_values` draws (NaN and Infinity written as Python writes them)."""
    return json.dumps(value, allow_nan=True, ensure_ascii=True)


# Raw JSON-ish text: fragments a parser might trip on, glued together.
json_fragments = st.lists(
    st.sampled_from(
        [
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            '"a"',
            '"\\u0000"',
            '"\\ud800"',
            "NaN",
            "-Infinity",
            "1e999",
            "9" * 30,
            "0",
            "-1.5",
            "true",
            "null",
            '"x',
            "\\",
            " ",
        ]
    ),
    max_size=40,
).map("".join)
