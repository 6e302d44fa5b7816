"""The model card beside a fetch: the Hub's model-tree fields in YAML, then patchreg's provenance."""

from __future__ import annotations

from core.fetch import FetchPlan
from core.model_card import render

PLAN = FetchPlan(
    patch_id="ab12cd34ef56",
    domain="medical",
    base="llama3:3.1",
    base_name="meta-llama/Llama-3.1-8B",
    revision="0123abcd",
    source_uri="hf://meta-llama/Llama-3.1-8B@0123abcd",
    method="lora",
    origin="ported",
    status="validated",
    digest="f" * 64,
    why="alias production",
    provenance={
        "lineage": [
            {"patch": "99aa", "base": "llama3:3.0", "origin": "trained", "status": "validated"},
            {"patch": "ab12cd34ef56", "base": "llama3:3.1", "origin": "ported", "status": "validated"},
        ],
        "train_dataset": "medical/notes",
        "train_dataset_digest": "e" * 64,
        "evaluations": [
            {"dataset": "medical/quiz", "patch": {"loss": 1.5, "accuracy": 0.75}, "base_alone": {"loss": 2.0}}
        ],
        "gate": "beats the base alone by +0.5000",
    },
)


def test_a_hub_base_is_named_for_the_model_tree_and_the_provenance_follows() -> None:
    card = render(PLAN, "peft", "vllm", {"status": "padded", "rank": 16, "rule": "one rank R=16"})
    head, body = card.split("---\n")[1], card.split("---\n")[2]
    assert head.splitlines() == [
        'base_model: "meta-llama/Llama-3.1-8B"',
        'base_model_relation: "adapter"',
        'library_name: "peft"',
        'tags: ["patchreg", "lora", "medical", "vllm"]',
    ]
    assert "| base revision | 0123abcd |" in body and f"| patch sha256 | `{'f' * 64}` |" in body
    assert f"| trained on | medical/notes (sha256 `{'e' * 64}`) |" in body
    assert (
        "1. `99aa` on llama3:3.0 (trained, validated)\n2. `ab12cd34ef56` on llama3:3.1 (ported, validated)"
        in body
    )
    assert "| medical/quiz | loss 1.5000, accuracy 0.750 | loss 2.0000 |" in body
    assert "| export | padded, rank 16: one rank R=16 |" in body


def test_a_merged_model_is_a_finetune_for_transformers() -> None:
    head = render(PLAN, "merged").split("---\n")[1]
    assert 'base_model_relation: "finetune"' in head and 'library_name: "transformers"' in head
    assert '"vllm"' not in head
