"""The one set of limits every parsed input passes: JSON documents, strings and numbers from users.

Files (safetensors headers, patch metadata, PEFT configs, JSONL rows), API bodies, form fields,
path and query parameters and headers all come through here, so one rule holds everywhere:

- JSON nests at most `MAX_DEPTH` levels (a 100k-deep document would exhaust the parser's stack or
  every recursive consumer after it);
- integers have at most `MAX_INT_DIGITS` digits (Python refuses to convert past 4300, and nothing
  here counts past 2**64), floats are finite (no NaN, Infinity, or 1e999 that rounds to it);
- strings hold no NUL and no unpaired surrogate (PostgreSQL cannot store either in text or JSONB).

Every refusal is one line from the `InvalidInput` family (the caller picks which member) that names
the input, never a traceback or a server path.
"""

from __future__ import annotations

import json
import math
from typing import Any

from core.errors import InvalidInput

MAX_DEPTH = 32
MAX_INT_DIGITS = 20  # 2**64 has 20 digits
NUL = "\x00"


class _Refused(ValueError):
    """Raised inside the JSON parser's hooks; turned into the caller's error with its `where`."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer has {len(text.lstrip('-')):,} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:24]}{'…' if len(text) > 24 else ''} is out of range")
    return value


def _parse_constant(text: str) -> float:
    raise _Refused(f"{text} is not a number JSON allows")


def loads(raw: str | bytes, where: str, error: type[InvalidInput] = InvalidInput) -> Any:
    """Parse one JSON document within the limits above; any problem raises `error("where: ...")`."""
    try:
        value = json.loads(
            raw, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
        )
    except _Refused as exc:
        raise error(f"{where}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise error(f"{where}: not valid UTF-8") from None
    except RecursionError:
        raise error(f"{where}: JSON nested more than {MAX_DEPTH} levels deep") from None
    check_value(value, where, error)
    return value


def check_value(value: Any, where: str, error: type[InvalidInput] = InvalidInput) -> None:
    """Check an already-decoded JSON value (depth, NUL-free strings and keys, finite bounded numbers),
    iteratively, so no depth can overflow a stack here."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise error(f"{where}: JSON nested more than {MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    problem = string_problem(key) if isinstance(key, str) else "is not a string"
                    if problem is not None:
                        raise error(f"{where}: a key {problem}")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            problem = string_problem(item)
            if problem is not None:
                raise error(f"{where}: a string {problem}")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise error(f"{where}: numbers must be finite, found {item}")
        elif isinstance(item, int) and not isinstance(item, bool):
            if abs(item) >= 10**MAX_INT_DIGITS:
                raise error(f"{where}: an integer has more than {MAX_INT_DIGITS} digits")
        elif item is not None and not isinstance(item, bool):
            raise error(f"{where}: {type(item).__name__} is not a JSON value")


def string_problem(value: str) -> str | None:
    """Why a string cannot be stored as text (PostgreSQL refuses NUL and unpaired surrogates)."""
    if NUL in value:
        return "holds a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "holds an unpaired surrogate (not valid Unicode)"
    return None


def text(value: str, field: str, error: type[InvalidInput] = InvalidInput) -> str:
    """A user's string (a name, a path, a reference) as given; refused when it cannot be stored."""
    problem = string_problem(value)
    if problem is not None:
        raise error(f"{field} {problem}")
    return value


def number(
    value: Any,
    field: str,
    *,
    lo: float,
    hi: float,
    integer: bool = False,
    lo_open: bool = False,
    error: type[InvalidInput] = InvalidInput,
) -> int | float:
    """A finite number within [lo, hi] (or (lo, hi]); an integer when asked (2.0 counts, 2.5 does not)."""
    kind = "an integer" if integer else "a number"
    bounds = f"{'(' if lo_open else '['}{_shown(lo)}, {_shown(hi)}]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{field}={value!r}: expected {kind} in {bounds}")
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"{field}={value!r}: expected a finite number in {bounds}")
    if value < lo or value > hi or (lo_open and value == lo):
        shown = (
            value
            if isinstance(value, float) or value.bit_length() <= 64
            else f"<{value.bit_length()}-bit integer>"
        )
        raise error(f"{field}={shown}: expected {kind} in {bounds}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise error(f"{field}={value!r}: expected {kind} in {bounds}")
        return int(value)
    return value


def _shown(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() and abs(bound) < 1e18 else f"{bound:g}"


def decimal(digits: str, cap: int) -> int:
    """The value of an ASCII digit string, saturated at `cap` (no int() of a 5000-digit string).

    Callers check `digits.isascii() and digits.isdigit()` first; `cap` should be where the value
    stops mattering (a byte range past the end is past the end however far)."""
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > len(str(cap)):
        return cap
    return min(int(stripped), cap)
