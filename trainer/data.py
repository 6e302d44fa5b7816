"""JSONL datasets: read and validate rows, tokenize with the base's own tokenizer, batch with padding.

Rows are `{"text": ...}` (loss on every token) or `{"prompt": ..., "completion": ...}` (loss on the
completion only). Eval rows may add `"choices": [...]` and `"answer"` (an index or one of the
choices); such a row trains/evaluates its loss on the correct choice as the completion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.errors import DataError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Row:
    """One validated row. `prompt` is "" for plain text rows, where `completion` holds the text."""

    prompt: str
    completion: str
    choices: tuple[str, ...] = ()
    answer: int | None = None
    plain_text: bool = False


def _where(source: str, line: int) -> str:
    return f"{source} line {line}"


def parse_row(obj: Any, where: str) -> Row:
    """Validate one decoded JSON row; every problem names where the row came from."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "text" in obj:
        text = obj["text"]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: 'text' must be a non-empty string")
        return Row(prompt="", completion=text, plain_text=True)
    prompt = obj.get("prompt")
    if not isinstance(prompt, str):
        raise DataError(f"{where}: needs 'text', or 'prompt' (a string) with 'completion' or 'choices'")
    choices: tuple[str, ...] = ()
    answer: int | None = None
    if "choices" in obj:
        raw = obj["choices"]
        if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(c, str) and c for c in raw):
            raise DataError(f"{where}: 'choices' must be a list of at least 2 non-empty strings")
        choices = tuple(raw)
        ans = obj.get("answer")
        if isinstance(ans, bool) or not isinstance(ans, int | str):
            raise DataError(f"{where}: 'answer' must be an index into 'choices' or one of the choices")
        if isinstance(ans, str):
            if ans not in choices:
                raise DataError(f"{where}: 'answer' {ans!r} is not one of the choices")
            answer = choices.index(ans)
        elif not 0 <= ans < len(choices):
            raise DataError(f"{where}: 'answer' index {ans} is out of range 0..{len(choices) - 1}")
        else:
            answer = ans
    completion = obj.get("completion")
    if completion is None and answer is not None:
        completion = choices[answer]
    if not isinstance(completion, str) or not completion:
        raise DataError(f"{where}: 'completion' must be a non-empty string")
    return Row(prompt=prompt, completion=completion, choices=choices, answer=answer)


def read_jsonl(path: Path | str) -> list[Row]:
    """Read and validate a JSONL file; blank lines are skipped, the first bad line is reported."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    rows: list[Row] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{_where(path.name, number)}: invalid JSON ({exc.msg})") from None
            rows.append(parse_row(obj, _where(path.name, number)))
    if not rows:
        raise DataError(f"{path.name}: no rows")
    return rows


def as_rows(rows: Iterable[Row | dict[str, Any]], source: str = "rows") -> list[Row]:
    """Accept already-parsed rows or raw dicts (as the worker passes them)."""
    out = [r if isinstance(r, Row) else parse_row(r, f"{source} item {i}") for i, r in enumerate(rows, 1)]
    if not out:
        raise DataError(f"{source}: no rows")
    return out


@dataclass(frozen=True)
class Example:
    """A tokenized row: `labels` is -100 where no loss is taken (the prompt)."""

    input_ids: list[int]
    labels: list[int]


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_pair(tokenizer, prompt: str, completion: str, max_length: int, eos: bool) -> Example:
    """Prompt (with the tokenizer's own BOS handling) + completion; loss on the completion only.

    Truncation keeps the end of the prompt so the completion survives whenever it fits at all."""
    prompt_ids = _ids(tokenizer, prompt, special=True)
    completion_ids = _ids(tokenizer, completion, special=False)
    if eos and tokenizer.eos_token_id is not None:
        completion_ids.append(tokenizer.eos_token_id)
    completion_ids = completion_ids[:max_length]
    room = max_length - len(completion_ids)
    prompt_ids = prompt_ids[-room:] if room > 0 else []
    return Example(
        input_ids=prompt_ids + completion_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    )


def encode_rows(tokenizer, rows: Sequence[Row], max_length: int = 256, eos: bool = True) -> list[Example]:
    """Tokenize rows for language-model loss. Plain text rows have an empty prompt, so every token but
    BOS carries the loss; rows with nothing left to score after truncation are dropped."""
    examples = []
    for row in rows:
        ex = encode_pair(tokenizer, row.prompt, row.completion, max_length, eos)
        if not any(label != IGNORE_INDEX for label in ex.labels):
            continue
        examples.append(ex)
    if not examples:
        raise DataError("no row has any token to take a loss on (max_length too small?)")
    return examples


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding gets attention 0 and label -100."""
    width = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids[i, :n] = torch.tensor(ex.input_ids)
        labels[i, :n] = torch.tensor(ex.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def iter_batches(
    examples: Sequence[Example], batch_size: int, pad_id: int, generator: torch.Generator | None
) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of batches, shuffled by `generator` (None keeps the file order, as eval does)."""
    order = (
        torch.randperm(len(examples), generator=generator).tolist()
        if generator is not None
        else list(range(len(examples)))
    )
    for start in range(0, len(order), batch_size):
        yield collate([examples[i] for i in order[start : start + batch_size]], pad_id)


def pad_token_id(tokenizer) -> int:
    """The pad id, falling back to EOS for tokenizers (like Llama's) that have none."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
