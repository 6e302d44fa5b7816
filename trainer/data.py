"""Rows for the model: tokenize with the base's own tokenizer, mask the prompt, batch with padding.

The row schema itself (what a valid row is, and its messages) is `core.rows`; a choice row trains
and evaluates its loss on the correct choice as the completion.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.errors import DataError
from core.rows import Row, parse_row

IGNORE_INDEX = -100


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
