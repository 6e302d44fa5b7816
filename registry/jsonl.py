"""Row-by-row validation of JSONL datasets, streamed: a bad row is an error naming its line.

Accepted rows:
- `{"text": str}`: plain text (the whole row is trained on);
- `{"prompt": str, "completion": str}`: the loss falls on the completion only;
- eval rows may add `"choices": [str, ...]` and `"answer"` (an index into choices, or one of them),
  with or without a completion: accuracy is scored by each choice's log-likelihood.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from registry.errors import InvalidInput

ROLES = ("train", "eval", "general")


def _row_error(path: Path, line: int, message: str) -> InvalidInput:
    return InvalidInput(f"{path.name} line {line}: {message}", line=line)


def _check_row(row: Any, role: str) -> str | None:
    """The problem with one parsed row, or None when it is valid."""
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
        return "a row needs 'text', or 'prompt' with 'completion' (or 'choices' and 'answer')"
    if not isinstance(row["prompt"], str):
        return "'prompt' must be a string"
    if "completion" in row and (not isinstance(row["completion"], str) or not row["completion"]):
        return "'completion' must be a non-empty string"
    if "choices" in row or "answer" in row:
        return _check_choices(row, role)
    if "completion" not in row:
        return "a 'prompt' row needs a 'completion' (or 'choices' and 'answer' in eval data)"
    return None


def _check_choices(row: dict[str, Any], role: str) -> str | None:
    if role != "eval":
        return f"'choices' and 'answer' belong in eval datasets, not {role}"
    choices, answer = row.get("choices"), row.get("answer")
    if not isinstance(choices, list) or len(choices) < 2:
        return "'choices' must be a list of at least two strings"
    if not all(isinstance(c, str) and c for c in choices):
        return "every choice must be a non-empty string"
    if isinstance(answer, bool) or answer is None:
        return "'answer' must be the index of the right choice or its text"
    if isinstance(answer, int):
        if not 0 <= answer < len(choices):
            return f"'answer' index {answer} is out of range for {len(choices)} choices"
    elif not isinstance(answer, str) or answer not in choices:
        return f"'answer' {answer!r} is not one of the choices"
    return None


def validate_jsonl(path: Path, role: str) -> int:
    """Count the rows of a JSONL file, raising on the first bad one. Blank lines are ignored."""
    if role not in ROLES:
        raise InvalidInput(f"invalid role {role!r}: expected one of {', '.join(ROLES)}")
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    rows = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _row_error(path, number, "not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _row_error(path, number, f"not valid JSON ({exc.msg})") from None
            problem = _check_row(row, role)
            if problem:
                raise _row_error(path, number, problem)
            rows += 1
    if rows == 0:
        raise InvalidInput(f"{path.name}: no rows")
    return rows
