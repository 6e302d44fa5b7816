"""The testbed family (`trainer/testbed.py`), built in its quick variant: deterministic by seed,
releases that drift further from v1 each time, data files of the recipe's sizes, reused once built."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from trainer.testbed import QUICK, SHIFTS, build_testbed


def _digests(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "testbed.json")
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    return build_testbed(QUICK, tmp_path_factory.mktemp("testbed-a"))


def test_the_quick_testbed_is_the_same_bytes_from_the_same_seed(
    built, tmp_path_factory: pytest.TempPathFactory
) -> None:
    again = build_testbed(QUICK, tmp_path_factory.mktemp("testbed-b"))
    assert _digests(again.root) == _digests(built.root) and len(_digests(built.root)) > 12
    assert again.note["digest"] == built.note["digest"] and again.root.name == built.root.name


def test_each_release_drifts_further_from_v1_and_the_data_has_the_recipes_sizes(built) -> None:
    drift = built.note["drift_from_v1"]
    assert drift["v1"] == 0 < drift["v2"] < drift["v3"] < drift["v4"]
    assert [p.name for p in built.releases] == ["v1", "v2", "v3", "v4"] and len(SHIFTS) == 3
    assert all(
        (p / "model.safetensors").is_file() and (p / "tokenizer.json").is_file() for p in built.releases
    )

    def rows(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    general, train, evals = rows(built.general), rows(built.domain_train), rows(built.domain_eval)
    assert (len(general), len(train), len(evals)) == (
        QUICK.general_rows,
        QUICK.domain_train_rows,
        QUICK.domain_eval_rows,
    )
    assert all(len(r["choices"]) == 2 and r["choices"][r["answer"]] for r in evals)
    pretrained = {r["text"] for r in general}  # held out of v1's pretraining, never in the domain
    assert not pretrained & {r["text"] for r in train}
    assert set(built.note["sources"]) == {"stdlib", *SHIFTS, "pydoc-topics"}


def test_a_built_testbed_is_reused(built) -> None:
    stamp = (built.root / "testbed.json").stat().st_mtime_ns
    assert build_testbed(QUICK, built.root.parent).root == built.root
    assert (built.root / "testbed.json").stat().st_mtime_ns == stamp
    assert not list(built.root.parent.glob("*.building-*"))
