"""The stored form of a training configuration, read by the registry and the trainer alike.

`method_config` (in a patch file's metadata, in the registry's patch rows, in a train job's payload)
is one JSON object: the method's own settings (its config's `to_dict()`), plus, only when a
regulariser trained with the method, one key

    "regularizer": {"name": "alewr", "config": {"lambda": 1.0, "balance": 0.0}}

holding the regulariser's settings. Per-run inputs are never stored there: ALEWR's importance file
is per base version, and the job or the command that trains supplies it.

Patches trained before regularisers had their own config hold ALEWR's settings flat among the
method's (`regularize` "none"/"alewr", `alewr_lambda`, `alewr_balance`, `importance`). Every reader
here accepts both forms; writers write only the one above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REGULARIZER_KEY = "regularizer"
LEGACY_KEYS = ("regularize", "alewr_lambda", "alewr_balance", "importance")
_LEGACY_ALEWR = {"alewr_lambda": "lambda", "alewr_balance": "balance"}


def regularizer_name(method_config: Mapping[str, Any] | None) -> str | None:
    """The regulariser a stored config trained with, or None."""
    found = regularizer_settings(method_config)
    return found[0] if found else None


def method_label(method: str, method_config: Mapping[str, Any] | None) -> str:
    """The method, plus its regulariser when it trained with one: `s2ft+alewr` (either stored form).

    Release porting tells patches apart by it, and the matrix, the jobs list and the demo show it."""
    regularizer = regularizer_name(method_config)
    return method + (f"+{regularizer}" if regularizer else "")


def regularizer_settings(method_config: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """(name, settings) of the stored config's regulariser, from either form, or None."""
    config = method_config or {}
    entry = config.get(REGULARIZER_KEY)
    if isinstance(entry, Mapping) and entry.get("name"):
        return str(entry["name"]), dict(entry.get("config") or {})
    if config.get("regularize") == "alewr":
        return "alewr", {new: config[old] for old, new in _LEGACY_ALEWR.items() if old in config}
    return None


def method_settings(method_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's own settings of a stored config (no regulariser key, new or old)."""
    return {k: v for k, v in (method_config or {}).items() if k != REGULARIZER_KEY and k not in LEGACY_KEYS}


def stored_config(
    method_settings: Mapping[str, Any],
    regularizer: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored form of a method's settings and, optionally, a regulariser's."""
    out = dict(method_settings)
    if regularizer is not None:
        out[REGULARIZER_KEY] = {"name": regularizer, "config": dict(settings or {})}
    return out
