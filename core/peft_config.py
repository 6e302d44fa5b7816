"""A PEFT `adapter_config.json`, read torch-free: the fields patchreg uses, each checked for its type,
and `rank_pattern`/`alpha_pattern` matched as PEFT matches them but without regular expressions.

PEFT matches a pattern key K against a module name with `re.match(rf"(.*\\.)?({K})$", name)` and
takes the first key that matches (`peft.utils.other.get_pattern_key`). Running a user's K through
`re` lets one upload freeze the server (`(a+)+` took 53 s on a 28-character name), so patchreg
accepts the keys PEFT and its users actually write, whose match needs no backtracking:

    [^] [.*] TOKENS [$]     TOKENS: name characters (A-Z a-z 0-9 _ -), "." or "\\."

and matches them in one pass with PEFT's meaning: a key matches the whole name or a dotted suffix
of it (`q_proj` matches `model.layers.0.self_attn.q_proj`), `^` pins it to the whole name, `.*`
allows any prefix, "." is any one character as in the regex and "\\." a literal dot. Any other key
(alternation, classes, repetition) is refused with a one-line ConfigError asking for module names;
a field of the wrong type, or a config that is not JSON, is a MalformedFile.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core import inputs
from core.errors import ConfigError, MalformedFile

CONFIG_FILE = "adapter_config.json"
MAX_KEY_LENGTH = 1000
MAX_RANK = 65536
MAX_ALPHA = 1e9
_NAME_CHAR = re.compile(r"[A-Za-z0-9_-]")  # applied to one character at a time: no backtracking
_ANY = object()  # a token that matches any one character but a newline (the regex ".")


@dataclass(frozen=True)
class PatternKey:
    """One parsed pattern key: its tokens (a character, or `_ANY`), and where it may match."""

    key: str
    tokens: tuple[object, ...]
    whole: bool  # `^`: the key must match the whole name
    any_prefix: bool  # `.*`: anything may come before it

    def matches(self, name: str) -> bool:
        """PEFT's `re.match(rf"(.*\\.)?({key})$", name)`, in one pass over the key's length."""
        size = len(self.tokens)
        if len(name) < size:
            return False
        start = len(name) - size
        if self.whole and not self.any_prefix and start != 0:
            return False
        if not self.any_prefix and start != 0 and name[start - 1] != ".":
            return False
        return all(
            (ch != "\n") if token is _ANY else ch == token
            for token, ch in zip(self.tokens, name[start:], strict=True)
        )


def parse_key(key: str, field: str) -> PatternKey:
    """Parse one pattern key of `field`; ConfigError (one line) for anything outside the grammar."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise MalformedFile(f"{CONFIG_FILE}: {field} keys must be names of 1-{MAX_KEY_LENGTH} characters")
    body = key
    whole = body.startswith("^")
    body = body.removeprefix("^")
    any_prefix = body.startswith(".*")
    body = body.removeprefix(".*")
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    tokens: list[object] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and body[i + 1 : i + 2] == ".":
            tokens.append(".")
            i += 2
            continue
        if ch == ".":
            tokens.append(_ANY)
        elif _NAME_CHAR.fullmatch(ch):
            tokens.append(ch)
        else:
            raise ConfigError(
                f"{CONFIG_FILE}: {field} key {key[:80]!r} is a regular expression patchreg does not run; "
                "use a module name or a dotted suffix of one (optionally with a leading ^ or .* and a "
                "trailing $)"
            )
        i += 1
    if not tokens:
        raise ConfigError(f"{CONFIG_FILE}: {field} key {key[:80]!r} names no module")
    return PatternKey(key, tuple(tokens), whole, any_prefix)


@dataclass(frozen=True)
class Patterns:
    """A parsed rank_pattern or alpha_pattern, in the file's order (PEFT takes the first match)."""

    entries: tuple[tuple[PatternKey, int | float], ...] = ()

    def owner(self, name: str) -> str | None:
        """The key PEFT would pick for `name`, or None."""
        return next((k.key for k, _ in self.entries if k.matches(name)), None)

    def value(self, name: str, default: int | float) -> int | float:
        return next((v for k, v in self.entries if k.matches(name)), default)


def patterns(raw: Any, field: str, *, integer: bool, hi: float) -> Patterns:
    """`rank_pattern` (integer ranks) or `alpha_pattern` (numbers) as a `Patterns`; null is empty."""
    if raw is None:
        return Patterns()
    if not isinstance(raw, dict):
        raise MalformedFile(
            f"{CONFIG_FILE}: {field} must be an object of module name -> value, found {_kind(raw)}"
        )
    entries = []
    for key, value in raw.items():
        parsed = parse_key(key, field)
        entries.append((parsed, _positive(value, f"{field}[{key[:80]!r}]", hi, integer=integer)))
    return Patterns(tuple(entries))


def pattern_owner(keys: Iterable[str], name: str) -> str | None:
    """The first of `keys` that PEFT would pick for `name` (keys outside the grammar raise)."""
    return Patterns(tuple((parse_key(k, "pattern"), 0) for k in keys)).owner(name)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _strings(value: Any, *, single: bool) -> bool:
    return (single and isinstance(value, str)) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


def _ints(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items)


# Every field patchreg reads, and the descriptive ones it copies: field -> (check, what it must be).
# Settings patchreg refuses when set (DoRA, biases, ...) are judged by the importer, by truthiness.
FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "peft_type": (lambda v: isinstance(v, str), "a string"),
    "task_type": (lambda v: isinstance(v, str), "a string"),
    "base_model_name_or_path": (lambda v: isinstance(v, str), "a string"),
    "revision": (lambda v: isinstance(v, str), "a string"),
    "peft_version": (lambda v: isinstance(v, str), "a string"),
    "bias": (lambda v: v in ("none", "all", "lora_only"), 'one of "none", "all", "lora_only"'),
    "use_rslora": (lambda v: isinstance(v, bool), "true or false"),
    "use_dora": (lambda v: isinstance(v, bool), "true or false"),
    "fan_in_fan_out": (lambda v: isinstance(v, bool), "true or false"),
    "inference_mode": (lambda v: isinstance(v, bool), "true or false"),
    "init_lora_weights": (lambda v: isinstance(v, bool | str), "true, false or a method name"),
    "target_modules": (lambda v: _strings(v, single=True), "a list of module names or one string"),
    "exclude_modules": (lambda v: _strings(v, single=True), "a list of module names or one string"),
    "feedforward_modules": (lambda v: _strings(v, single=True), "a list of module names or one string"),
    "target_parameters": (lambda v: _strings(v, single=False), "a list of parameter names"),
    "layers_to_transform": (_ints, "a layer index or a list of them"),
    "layers_pattern": (lambda v: _strings(v, single=True), "a list of names or one string"),
}


def check_config(config: Any) -> dict[str, Any]:
    """The decoded config as an object whose known fields have their PEFT types (null = unset);
    LoRA's r, lora_alpha, lora_dropout and the two patterns are checked here too."""
    if not isinstance(config, dict):
        raise MalformedFile(f"{CONFIG_FILE}: must be a JSON object, found {_kind(config)}")
    for field, (ok, what) in FIELD_TYPES.items():
        value = config.get(field)
        if value is not None and not ok(value):
            raise MalformedFile(f"{CONFIG_FILE}: {field} must be {what}, found {_kind(value)}")
    if str(config.get("peft_type", "")).upper() == "LORA":
        lora_settings(config)
    return config


@dataclass(frozen=True)
class LoraSettings:
    r: int
    lora_alpha: float
    use_rslora: bool
    rank_pattern: Patterns
    alpha_pattern: Patterns

    def scale(self, name: str) -> tuple[int, float]:
        """(rank, alpha/r or alpha/√r with rsLoRA) PEFT gives module or parameter `name`."""
        r = int(self.rank_pattern.value(name, self.r))
        alpha = float(self.alpha_pattern.value(name, self.lora_alpha))
        return r, (alpha / r**0.5 if self.use_rslora else alpha / r)


def _positive(value: Any, field: str, hi: float, *, integer: bool) -> int | float:
    return inputs.number(
        value, f"{CONFIG_FILE}: {field}", lo=0, hi=hi, lo_open=True, integer=integer, error=MalformedFile
    )


def lora_settings(config: Mapping[str, Any]) -> LoraSettings:
    """A LoRA config's numbers: integer ranks in [1, 65536], alphas finite and positive, patterns
    parsed (`r` 0 or 4.5, `lora_alpha` NaN, a list for a pattern: MalformedFile)."""
    if config.get("lora_dropout") is not None:
        inputs.number(config["lora_dropout"], f"{CONFIG_FILE}: lora_dropout", lo=0, hi=1, error=MalformedFile)
    return LoraSettings(
        r=int(_positive(config.get("r"), "r", MAX_RANK, integer=True)),
        lora_alpha=float(_positive(config.get("lora_alpha"), "lora_alpha", MAX_ALPHA, integer=False)),
        use_rslora=bool(config.get("use_rslora")),
        rank_pattern=patterns(config.get("rank_pattern"), "rank_pattern", integer=True, hi=MAX_RANK),
        alpha_pattern=patterns(config.get("alpha_pattern"), "alpha_pattern", integer=False, hi=MAX_ALPHA),
    )


def read_config(raw: bytes) -> dict[str, Any]:
    """Parse and check the bytes of an adapter_config.json (`core.inputs` limits, then types)."""
    return check_config(inputs.loads(raw, CONFIG_FILE, MalformedFile))
