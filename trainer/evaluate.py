"""Evaluation: token-weighted loss and perplexity, and multiple-choice accuracy.

Accuracy scores each choice by the summed log-likelihood of its tokens given the prompt (no length
normalisation, ties go to the first choice). Each prompt + choice is one sequence, batched with
sequences of similar length; the right choice is read from the row's loss sequence, which contains
it. With prompts shorter than their choices (as in the demo's data) whole sequences are faster on
CPU than running each prompt once and sharing its KV cache at batch 1 (measured: 3.8 s against
2.4 s for 16 rows on a 62M model). A patch can be applied for the evaluation and is reverted
afterwards, so the same loaded base serves "base alone" and "base + patch".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import DataError
from core.rows import Row
from trainer.data import (
    IGNORE_INDEX,
    Example,
    as_rows,
    encode_pair,
    iter_batches,
    pad_token_id,
)


@dataclass
class EvalResult:
    loss: float
    perplexity: float
    tokens: int  # tokens the loss was taken on
    rows: int
    accuracy: float | None = None  # None when no row has choices
    choice_rows: int = 0
    # per row, the log-probabilities of every token it scored (its completion, then its choices'),
    # kept only when asked for (the no-op check compares them between arms); never serialised
    logprobs: list[torch.Tensor] | None = field(default=None, repr=False, compare=False)
    # per row, the paired evidence the gate compares between arms (`core.evidence`): the mean
    # log-likelihood per token of its completion (None: no token scored), and for a row with
    # choices whether the right one won (None: no choices)
    row_scores: list[float | None] = field(default_factory=list, repr=False)
    row_correct: list[int | None] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "perplexity": self.perplexity,
            "tokens": self.tokens,
            "rows": self.rows,
            "accuracy": self.accuracy,
            "choice_rows": self.choice_rows,
        }

    def per_row(self) -> dict[str, list[Any]]:
        """`row_scores` and `row_correct` as stored beside an evaluation (scores to 6 decimals)."""
        return {
            "scores": [None if s is None else round(s, 6) for s in self.row_scores],
            "correct": list(self.row_correct),
        }


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def _token_logprobs(
    model: nn.Module, examples: Sequence[Example], pad_id: int, batch_size: int
) -> list[torch.Tensor]:
    """Per example, the log-probabilities of its labelled tokens (fp32, in the given order).

    Examples run in batches of similar length (sorted), so little of each batch is padding."""
    device = _device_of(model)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    out: list[torch.Tensor] = [torch.empty(0)] * len(examples)
    ranked = [examples[i] for i in order]
    position = 0
    for batch in iter_batches(ranked, batch_size, pad_id, generator=None):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        logprobs = F.log_softmax(logits[:, :-1].float(), dim=-1)
        picked = logprobs.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        for row_lp, row_labels in zip(picked, labels, strict=True):
            out[order[position]] = row_lp[row_labels != IGNORE_INDEX].cpu()
            position += 1
    return out


def _is_prefix(part: Example, whole: Example) -> bool:
    n = len(part.input_ids)
    return whole.input_ids[:n] == part.input_ids and whole.labels[:n] == part.labels


def _sequences(
    tokenizer: Any, rows: Sequence[Row], max_length: int
) -> tuple[list[Example], dict[int, int], list[list[tuple[int, int]]]]:
    """What must run: each row's loss sequence (prompt + completion + EOS), and each choice
    (prompt + choice) that is not a prefix of it. A row's right choice usually is one (its
    completion defaults to that choice), and a causal model gives a prefix's tokens the same
    log-probabilities inside the longer sequence, so it is scored from the loss run: two-choice
    rows cost two sequences instead of three.

    Returns (sequences, {row: its loss sequence}, per row [(sequence, labelled tokens to take)]).
    """
    runs: list[Example] = []
    loss_runs: dict[int, int] = {}
    for i, row in enumerate(rows):
        example = encode_pair(tokenizer, row.prompt, row.completion, max_length, eos=True)
        if any(label != IGNORE_INDEX for label in example.labels):
            loss_runs[i] = len(runs)
            runs.append(example)
    if not runs:
        raise DataError("no row has any token to take a loss on (max_length too small?)")
    choice_sources: list[list[tuple[int, int]]] = []
    for i, row in enumerate(rows):
        sources = []
        for choice in row.choices or ():
            example = encode_pair(tokenizer, row.prompt, choice, max_length, eos=False)
            labelled = sum(label != IGNORE_INDEX for label in example.labels)
            whole = runs[loss_runs[i]] if i in loss_runs else None
            n = len(example.input_ids)
            if (
                whole is not None
                and whole.input_ids[:n] == example.input_ids
                and whole.labels[:n] == example.labels
            ):
                sources.append((loss_runs[i], labelled))
            else:
                sources.append((len(runs), labelled))
                runs.append(example)
        choice_sources.append(sources)
    return runs, loss_runs, choice_sources


def evaluate(
    model: nn.Module,
    tokenizer: Any,
    rows: Sequence[Row | dict[str, Any]],
    *,
    batch_size: int = 8,
    max_length: int = 256,
    keep_logprobs: bool = False,
) -> EvalResult:
    """Loss/perplexity over every row's completion (text rows: every token), plus choice accuracy;
    with `keep_logprobs`, every scored token's log-probability too, per row."""
    parsed = as_rows(rows)
    runs, loss_runs, choice_sources = _sequences(tokenizer, parsed, max_length)
    was_training = model.training
    model.eval()
    try:
        logprobs = _token_logprobs(model, runs, pad_token_id(tokenizer), batch_size)
    finally:
        model.train(was_training)
    per_row = {i: logprobs[k] for i, k in loss_runs.items()}
    n_tokens = sum(len(lp) for lp in per_row.values())
    loss = -float(sum(lp.double().sum() for lp in per_row.values())) / max(1, n_tokens)
    scored: list[list[torch.Tensor]] = [[per_row[i]] if i in per_row else [] for i in range(len(parsed))]
    row_scores = [float(per_row[i].double().mean()) if i in per_row else None for i in range(len(parsed))]
    row_correct: list[int | None] = [None] * len(parsed)
    choice_rows = [r for r in parsed if r.choices]
    accuracy = None
    if choice_rows:
        for i, r in enumerate(parsed):
            choice_lps = [logprobs[k][:n] for k, n in choice_sources[i]]
            scored[i].extend(choice_lps)
            if r.choices:
                scores = [float(lp.double().sum()) for lp in choice_lps]
                row_correct[i] = int(max(range(len(scores)), key=scores.__getitem__) == r.answer)
        accuracy = sum(c for c in row_correct if c is not None) / len(choice_rows)
    return EvalResult(
        loss=loss,
        perplexity=math.exp(min(loss, 700.0)),
        tokens=n_tokens,
        rows=len(parsed),
        accuracy=accuracy,
        choice_rows=len(choice_rows),
        logprobs=[torch.cat(parts) for parts in scored] if keep_logprobs else None,
        row_scores=row_scores,
        row_correct=row_correct,
    )


def evaluate_directory(
    model_dir: Path | str,
    data_path: Path | str,
    patch_path: Path | str | None = None,
    *,
    batch_size: int = 8,
    max_length: int = 256,
    device: str = "auto",
) -> EvalResult:
    """Load a saved base (and optionally a patch file) and evaluate it on a JSONL file."""
    from core.rows import read_rows
    from trainer.hf import load_causal_lm, load_tokenizer
    from trainer.loop import TrainArgs
    from trainer.patch.apply import apply_patch
    from trainer.patch.io import load_patch

    rows = read_rows(data_path)
    patch = load_patch(patch_path) if patch_path is not None else None
    target = TrainArgs(device=device).resolved_device()
    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, dtype="auto").to(target)
    if patch is None:
        return evaluate(model, tokenizer, rows, batch_size=batch_size, max_length=max_length)
    with apply_patch(model, patch):
        return evaluate(model, tokenizer, rows, batch_size=batch_size, max_length=max_length)
