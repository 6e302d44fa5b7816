"""Evaluation: token-weighted loss and perplexity, and multiple-choice accuracy.

Accuracy scores each choice by the summed log-likelihood of its tokens given the prompt (no length
normalisation, ties go to the first choice). Every prompt + choice runs as one sequence, batched
with sequences of similar length: with prompts shorter than their choices (as in the demo's data)
that is faster on CPU than running each prompt once and sharing its KV cache at batch 1 (measured:
3.8 s against 2.4 s for 16 rows on a 62M model). A patch can be applied for the evaluation and is
reverted afterwards, so the same loaded base serves "base alone" and "base + patch".
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

from core.rows import Row
from trainer.data import (
    IGNORE_INDEX,
    Example,
    as_rows,
    encode_pair,
    encode_rows,
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "perplexity": self.perplexity,
            "tokens": self.tokens,
            "rows": self.rows,
            "accuracy": self.accuracy,
            "choice_rows": self.choice_rows,
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
    pad_id = pad_token_id(tokenizer)
    was_training = model.training
    model.eval()
    try:
        per_row = _token_logprobs(model, encode_rows(tokenizer, parsed, max_length), pad_id, batch_size)
        n_tokens = sum(len(lp) for lp in per_row)
        loss = -float(sum(lp.double().sum() for lp in per_row)) / max(1, n_tokens)
        choice_rows = [r for r in parsed if r.choices]
        accuracy = None
        scored = [[lp] for lp in per_row]
        if choice_rows:
            candidates = [
                encode_pair(tokenizer, r.prompt, c, max_length, eos=False)
                for r in choice_rows
                for c in r.choices
            ]
            choice_lps = _token_logprobs(model, candidates, pad_id, batch_size)
            scores = [float(lp.double().sum()) for lp in choice_lps]
            correct, start = 0, 0
            for i, r in enumerate(parsed):
                if not r.choices:
                    continue
                row_scores = scores[start : start + len(r.choices)]
                scored[i].extend(choice_lps[start : start + len(r.choices)])
                start += len(r.choices)
                correct += int(max(range(len(row_scores)), key=row_scores.__getitem__) == r.answer)
            accuracy = correct / len(choice_rows)
    finally:
        model.train(was_training)
    return EvalResult(
        loss=loss,
        perplexity=math.exp(min(loss, 700.0)),
        tokens=n_tokens,
        rows=len(parsed),
        accuracy=accuracy,
        choice_rows=len(choice_rows),
        logprobs=[torch.cat(parts) for parts in scored] if keep_logprobs else None,
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
