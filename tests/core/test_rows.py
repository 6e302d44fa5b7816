"""The dataset row schema: one set of rules, line numbers in every message, roles where they matter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import DataError, InvalidInput
from core.rows import Row, count_rows, parse_row, read_rows
from tests.properties import bounded, dumps, json_values


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_text_completion_and_choice_rows(tmp_path: Path) -> None:
    rows = [
        {"text": "hello world"},
        {"prompt": "Q: 2+2? A:", "completion": " 4"},
        {"prompt": "Sky?", "choices": [" blue", " green"], "answer": " blue"},
        {"prompt": "Grass?", "choices": [" blue", " green"], "answer": 1},
    ]
    parsed = read_rows(_write(tmp_path / "d.jsonl", [json.dumps(r) for r in rows]))
    assert parsed[0] == Row(prompt="", completion="hello world", plain_text=True)
    assert parsed[1] == Row(prompt="Q: 2+2? A:", completion=" 4")
    assert parsed[2].answer == 0 and parsed[2].completion == " blue"
    assert parsed[3].answer == 1 and parsed[3].choices == (" blue", " green")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "bad.jsonl line 2: not valid JSON"),
        ("[1, 2]", "line 2: a row must be a JSON object"),
        ('{"prompt": "x"}', "line 2: a 'prompt' row needs a 'completion'"),
        ('{"text": ""}', "line 2: 'text' must be a non-empty string"),
        ('{"prompt": "x", "choices": ["a", "b"], "answer": 5}', "line 2: 'answer' index 5 is out of range"),
        ('{"prompt": "x", "choices": ["a", "b"], "answer": "c"}', "line 2: 'answer' 'c' is not one of"),
        ('{"completion": "x"}', "line 2: a row needs 'text'"),
        ('{"text": "a", "prompt": "b"}', "line 2: a row has either 'text' or 'prompt', not both"),
        ("[" * 100_000 + "]" * 100_000, "line 2: JSON nested more than 32 levels deep"),
        ('{"text": "a", "n": ' + "9" * 5000 + "}", "line 2: an integer has 5,000 digits"),
        ('{"text": "a", "n": NaN}', "line 2: NaN is not a number JSON allows"),
        ('{"text": "a", "n": 1e999}', "line 2: the number 1e999 is out of range"),
        ('{"text": "a\\u0000b"}', "line 2: a string holds a NUL character"),
    ],
)
def test_bad_rows_are_reported_with_their_line(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path / "bad.jsonl", ['{"text": "fine"}', line])
    with pytest.raises(DataError, match=message):
        read_rows(path)
    with pytest.raises(InvalidInput, match=message):  # the registry's check is the same function
        count_rows(path, "eval")


def test_choices_belong_to_eval_data_only_when_a_role_is_given(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", ['{"prompt": "Sky?", "choices": ["a", "b"], "answer": 0}'])
    assert count_rows(path, "eval") == 1
    assert len(read_rows(path)) == 1  # the trainer reads any role
    with pytest.raises(DataError, match="line 1: 'choices' and 'answer' belong in eval datasets, not train"):
        count_rows(path, "train")


def test_empty_missing_and_unknown_role(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", ["", ""])
    with pytest.raises(DataError, match=r"empty\.jsonl: no rows"):
        read_rows(empty)
    with pytest.raises(DataError, match="no such file"):
        read_rows(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="invalid role 'test'"):
        count_rows(empty, "test")


def test_parse_row_names_where_the_row_came_from() -> None:
    with pytest.raises(DataError, match="general rows item 3: 'prompt' must be a string"):
        parse_row({"prompt": 3, "completion": "x"}, "general rows item 3")


@bounded()
@given(st.lists(st.binary(max_size=60) | json_values.map(dumps).map(str.encode), min_size=1, max_size=4))
def test_any_lines_give_rows_or_one_data_error(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes]
) -> None:
    path = tmp_path_factory.mktemp("rows") / "d.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines))
    try:
        rows = read_rows(path)
    except DataError as exc:
        assert exc.message.startswith("d.jsonl") and "\n" not in exc.message
    else:
        assert all(isinstance(r, Row) and "\x00" not in r.completion for r in rows)
