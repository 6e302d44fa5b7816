"""JSONL rows: validation with line numbers, prompt masking, padding."""

from __future__ import annotations

import pytest

from trainer.data import IGNORE_INDEX, Row, collate, encode_rows, read_jsonl
from trainer.errors import DataError


def test_reads_text_completion_and_choice_rows(write_jsonl):
    path = write_jsonl(
        [
            {"text": "hello world"},
            {"prompt": "Q: 2+2? A:", "completion": " 4"},
            {"prompt": "Sky?", "choices": [" blue", " green"], "answer": " blue"},
            {"prompt": "Grass?", "choices": [" blue", " green"], "answer": 1},
        ]
    )
    rows = read_jsonl(path)
    assert rows[0] == Row(prompt="", completion="hello world", plain_text=True)
    assert rows[2].answer == 0 and rows[2].completion == " blue"
    assert rows[3].answer == 1 and rows[3].choices == (" blue", " green")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: invalid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"prompt": "x"}', "line 2: 'completion' must be"),
        ('{"text": ""}', "line 2: 'text' must be a non-empty string"),
        ('{"prompt": "x", "choices": ["a", "b"], "answer": 5}', "line 2: 'answer' index 5 is out of range"),
        ('{"prompt": "x", "choices": ["a", "b"], "answer": "c"}', "line 2: 'answer' 'c' is not one of"),
        ('{"completion": "x"}', "line 2: needs 'text'"),
    ],
)
def test_bad_rows_are_reported_with_their_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_jsonl(path)


def test_empty_or_missing_files_are_data_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no rows"):
        read_jsonl(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="not found"):
        read_jsonl(tmp_path / "missing.jsonl")


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
