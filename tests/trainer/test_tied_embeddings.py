"""A patch on the `lm_head` of a tied-embedding model (Qwen2 ties them by default) changes the
output projection only: our apply equals PEFT's, the input embeddings never move, revert re-ties
them bit for bit, a merged export is untied on purpose, and `full` training on lm_head trains the
head alone (the patch then applies exactly as trained)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainer.patch.apply import apply_patch
from trainer.patch.merge import merge_into_directory
from trainer.patch.peft_export import export_peft
from trainer.patch.types import LowRank, Patch, Scale

Q0 = "model.layers.0.self_attn.q_proj"
IDS = torch.tensor([[1, 5, 9, 20, 33, 40, 77, 101]])


@pytest.fixture(scope="module")
def tied_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zoo's tiny Qwen2, which ties its input embeddings and lm_head."""
    from trainer import zoo

    return zoo.save("qwen2", tmp_path_factory.mktemp("tied") / "qwen2")


def _load(path: Path):
    from trainer.hf import load_causal_lm

    return load_causal_lm(path, dtype=torch.float32).eval()


def _patch(kind: str) -> Patch:
    g = torch.Generator().manual_seed(1)
    head = (
        LowRank(torch.randn(4, 64, generator=g) * 0.3, torch.randn(512, 4, generator=g) * 0.3, 1.0)
        if kind == "lowrank"
        else Scale(torch.rand(512, generator=g) + 0.5)
    )
    q = LowRank(torch.randn(4, 64, generator=g) * 0.3, torch.randn(64, 4, generator=g) * 0.3, 1.0)
    return Patch("test", {}, {"lm_head": head, **({Q0: q} if kind == "lowrank" else {})})


@pytest.mark.parametrize("kind", ["lowrank", "scale"])
def test_apply_on_a_tied_head_equals_peft_and_leaves_the_embeddings_alone(
    tied_dir: Path, tmp_path: Path, kind: str
) -> None:
    from peft import PeftModel

    model = _load(tied_dir)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the premise: tied
    embeddings = model.model.embed_tokens.weight.detach().clone()
    patch = _patch(kind)
    with torch.no_grad():
        base = model(input_ids=IDS).logits
        with apply_patch(model, patch) as applied:
            assert applied.untied == ["lm_head"]
            assert torch.equal(model.model.embed_tokens.weight, embeddings)
            ours = model(input_ids=IDS).logits
        assert model.lm_head.weight is model.model.embed_tokens.weight  # tied again
        assert torch.equal(model(input_ids=IDS).logits, base)  # and bit-exact

    export_peft(patch, tmp_path / "adapter", str(tied_dir))
    peft_model = PeftModel.from_pretrained(_load(tied_dir), tmp_path / "adapter").eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=IDS).logits
    assert (ours - base).abs().max().item() > 0.1  # the patch does something
    assert (theirs - ours).abs().max().item() <= 1e-5


def test_a_merge_of_a_tied_head_is_untied_and_equals_our_apply(tied_dir: Path, tmp_path: Path) -> None:
    patch = _patch("lowrank")
    model = _load(tied_dir)
    with torch.no_grad(), apply_patch(model, patch):
        ours = model(input_ids=IDS).logits
    merged_dir = merge_into_directory(tied_dir, patch, tmp_path / "merged")
    assert json.loads((merged_dir / "config.json").read_text())["tie_word_embeddings"] is False
    merged = _load(merged_dir)
    assert merged.lm_head.weight is not merged.model.embed_tokens.weight
    assert torch.equal(merged.model.embed_tokens.weight, _load(tied_dir).model.embed_tokens.weight)
    with torch.no_grad():
        assert torch.equal(merged(input_ids=IDS).logits, ours)


def test_full_training_on_a_tied_head_trains_the_head_alone(tied_dir: Path, tiny_tokenizer) -> None:
    from tests.trainer.conftest import corpus_rows
    from trainer.loop import TrainArgs, train
    from trainer.methods import get_method, parse_overrides

    model = _load(tied_dir)
    embeddings = model.model.embed_tokens.weight.detach().clone()
    method = get_method("full")
    config = parse_overrides(method, ["target_modules=lm_head"])
    args = TrainArgs(steps=3, lr=1e-2, batch_size=2, max_length=32, device="cpu")
    result = train(model, tiny_tokenizer, corpus_rows(4), method, config, args)
    assert list(result.patch.deltas) == ["lm_head"]
    assert model.lm_head.weight is model.model.embed_tokens.weight  # cleanup re-tied them
    assert torch.equal(model.model.embed_tokens.weight, embeddings)  # and the embeddings never moved
    with torch.no_grad(), apply_patch(model, result.patch):
        assert torch.equal(model.model.embed_tokens.weight, embeddings)
        assert float(result.patch.deltas["lm_head"].delta.abs().max()) > 0
