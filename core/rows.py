"""The dataset row schema: one set of rules for the registry (checking uploads) and the trainer
(reading them), streamed row by row, each problem naming its line.

Accepted rows:
- `{"text": str}`: plain text (the whole row is trained on);
- `{"prompt": str, "completion": str}`: the loss falls on the completion only;
- eval rows may add `"choices": [str, ...]` and `"answer"` (an index into choices, or one of them),
  with or without a completion (the right choice is the completion then): accuracy is scored by
  each choice's log-likelihood.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import inputs
from core.errors import DataError

ROLES = ("train", "eval", "general")


@dataclass(frozen=True)
class Row:
    """One validated row. `prompt` is "" for plain text rows, where `completion` holds the text."""

    prompt: str
    completion: str
    choices: tuple[str, ...] = ()
    answer: int | None = None
    plain_text: bool = False


def check_role(role: str) -> str:
    if role not in ROLES:
        raise DataError(f"invalid role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def _choices_problem(row: dict[str, Any], role: str | None) -> str | None:
    if role is not None and role != "eval":
        return f"'choices' and 'answer' belong in eval datasets, not {role}"
    choices, answer = row.get("choices"), row.get("answer")
    if not isinstance(choices, list) or len(choices) < 2:
        return "'choices' must be a list of at least two strings"
    if not all(isinstance(c, str) and c for c in choices):
        return "every choice must be a non-empty string"
    if isinstance(answer, bool) or not isinstance(answer, int | str):
        return "'answer' must be the index of the right choice or its text"
    if isinstance(answer, int):
        if not 0 <= answer < len(choices):
            return f"'answer' index {answer} is out of range for {len(choices)} choices"
    elif answer not in choices:
        return f"'answer' {answer!r} is not one of the choices"
    return None


def row_problem(row: Any, role: str | None = None) -> str | None:
    """The problem with one decoded row, or None when it is valid (`role` None: any role)."""
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    has_text, has_prompt = "text" in row, "prompt" in row
    if has_text and has_prompt:
        return "a row has either 'text' or 'prompt', not both"
    if has_text:
        if not isinstance(row["text"], str) or not row["text"].strip():
            return "'text' must be a non-empty string"
        if "choices" in row or "completion" in row:
            return "'choices' and 'completion' go with 'prompt', not with 'text'"
        return None
    if not has_prompt:
        return "a row needs 'text', or 'prompt' with 'completion' (or 'choices' and 'answer' in eval data)"
    if not isinstance(row["prompt"], str):
        return "'prompt' must be a string"
    if "completion" in row and (not isinstance(row["completion"], str) or not row["completion"]):
        return "'completion' must be a non-empty string"
    if "choices" in row or "answer" in row:
        return _choices_problem(row, role)
    if "completion" not in row:
        return "a 'prompt' row needs a 'completion' (or 'choices' and 'answer' in eval data)"
    return None


def parse_row(obj: Any, where: str, role: str | None = None) -> Row:
    """Validate one decoded row and build it; a problem raises DataError prefixed with `where`."""
    problem = row_problem(obj, role)
    if problem is not None:
        raise DataError(f"{where}: {problem}")
    if "text" in obj:
        return Row(prompt="", completion=obj["text"], plain_text=True)
    choices = tuple(obj.get("choices") or ())
    answer = obj.get("answer")
    index = None if answer is None else (choices.index(answer) if isinstance(answer, str) else answer)
    completion = obj.get("completion") or (choices[index] if index is not None else "")
    return Row(prompt=obj["prompt"], completion=completion, choices=choices, answer=index)


def _decode(raw: bytes, where: str) -> Any:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{where}: not valid UTF-8") from None
    if not line.strip():
        return None
    return inputs.loads(line, where, DataError)  # depth, number and NUL limits (`core.inputs`)


def iter_rows(path: Path | str, role: str | None = None) -> Iterator[Row]:
    """The rows of a JSONL file, streamed; blank lines are skipped, the first bad one raises."""
    path = Path(path)
    if role is not None:
        check_role(role)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    seen = False
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path.name} line {number}"
            obj = _decode(raw, where)
            if obj is None:
                continue
            seen = True
            yield parse_row(obj, where, role)
    if not seen:
        raise DataError(f"{path.name}: no rows")


def read_rows(path: Path | str, role: str | None = None) -> list[Row]:
    return list(iter_rows(path, role))


def count_rows(path: Path | str, role: str) -> int:
    """Check every row of a file for `role` without keeping them; the number of rows."""
    return sum(1 for _ in iter_rows(path, role))
