"""Rows for the model: prompt masking, padding (the row schema itself: tests/core/test_rows.py)."""

from __future__ import annotations

from trainer.data import IGNORE_INDEX, Row, collate, encode_rows


def test_loss_is_on_the_completion_only_and_padding_is_ignored(tiny_tokenizer):
    rows = [Row(prompt="Question: what is it?", completion=" An answer."), Row("", "text", plain_text=True)]
    examples = encode_rows(tiny_tokenizer, rows, max_length=64)
    prompt_len = len(tiny_tokenizer("Question: what is it?")["input_ids"])
    first = examples[0]
    assert first.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert first.labels[prompt_len:] == first.input_ids[prompt_len:]
    assert first.input_ids[-1] == tiny_tokenizer.eos_token_id
    assert examples[1].labels[0] == IGNORE_INDEX and examples[1].labels[1:] == examples[1].input_ids[1:]
    batch = collate(examples, pad_id=tiny_tokenizer.pad_token_id)
    short = len(examples[1].input_ids)
    assert batch["attention_mask"][1, short:].sum() == 0
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][1, short:] == tiny_tokenizer.pad_token_id).all()


def test_truncation_keeps_the_completion(tiny_tokenizer):
    rows = [Row(prompt="a long prompt " * 20, completion=" end")]
    (ex,) = encode_rows(tiny_tokenizer, rows, max_length=8)
    assert len(ex.input_ids) == 8 and ex.labels[-1] == tiny_tokenizer.eos_token_id
    assert sum(label != IGNORE_INDEX for label in ex.labels) >= 2
