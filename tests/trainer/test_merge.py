"""The streamed merge: shard by shard and tensor by tensor, sharded like its input, bit-identical
to applying the patch in memory, and with a peak memory far below the model's size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.checkpoint import INDEX_FILE as INDEX
from tests.trainer.conftest import measure_peak
from trainer import zoo
from trainer.hf import load_causal_lm
from trainer.patch.apply import apply_patch
from trainer.patch.io import save_patch
from trainer.patch.merge import BLOCK_BYTES, merge_into_directory
from trainer.patch.targets import all_targets
from trainer.patch.types import Columns, Dense, LowRank, Patch, Rows, Scale


def _random_patch(model, with_head: bool = True) -> Patch:
    """One delta of every kind, spread over the model's targets (and the output head)."""
    g = torch.Generator().manual_seed(0)
    deltas = {}
    kinds = ["lowrank", "columns", "rows", "scale", "dense"]
    for i, (name, target) in enumerate(sorted(all_targets(model).items())):
        if name == "lm_head" and not with_head:
            continue
        out_f, in_f = target.shape
        kind = "lowrank" if name == "lm_head" else kinds[i % 5]
        if kind == "lowrank":
            deltas[name] = LowRank(
                torch.randn(2, in_f, generator=g) * 0.1, torch.randn(out_f, 2, generator=g) * 0.1, 1.0
            )
        elif kind == "columns":
            deltas[name] = Columns(torch.tensor([0, 3]), torch.randn(out_f, 2, generator=g) * 0.1)
        elif kind == "rows":
            deltas[name] = Rows(torch.tensor([1, out_f - 1]), torch.randn(2, in_f, generator=g) * 0.1)
        elif kind == "scale":
            deltas[name] = Scale(1 + 0.1 * torch.randn(out_f, generator=g))
        else:
            deltas[name] = Dense(torch.randn(out_f, in_f, generator=g) * 0.01)
    return Patch("test", {}, deltas)


def _merged_tensors(directory: Path) -> dict[str, torch.Tensor]:
    out = {}
    for file in sorted(directory.glob("*.safetensors")):
        out.update(load_file(file))
    return out


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])  # qwen2's tiny config ties its embeddings
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("block_bytes", [1024, BLOCK_BYTES])  # 1 KiB: 4-row blocks, every edit split
def test_streamed_merge_of_a_sharded_checkpoint_equals_the_patch_applied_in_memory(
    model_type: str, dtype: torch.dtype, block_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trainer.patch.merge.BLOCK_BYTES", block_bytes)
    model = zoo.build(model_type).to(dtype)
    model.save_pretrained(tmp_path / "base", max_shard_size="100KB")
    base = tmp_path / "base"
    shards = sorted(p.name for p in base.glob("*.safetensors"))
    assert len(shards) >= 3 and (base / INDEX).exists()
    loaded = load_causal_lm(base, dtype=dtype)
    patch = _random_patch(loaded)

    merged = merge_into_directory(base, patch, tmp_path / "merged")

    assert sorted(p.name for p in merged.glob("*.safetensors")) == shards
    index = json.loads((merged / INDEX).read_text())["weight_map"]
    tensors = _merged_tensors(merged)
    assert set(index) == set(tensors)
    tied = model.config.tie_word_embeddings
    assert json.loads((merged / "config.json").read_text())["tie_word_embeddings"] is False
    with apply_patch(loaded, patch):
        expected = {k: v.clone() for k, v in loaded.state_dict().items()}
    for name, tensor in tensors.items():
        assert tensor.dtype == dtype and torch.equal(tensor, expected[name]), name
    assert ("lm_head.weight" in tensors) and (
        "lm_head.weight" not in load_file(base / index["lm_head.weight"])
    ) == tied
    assert torch.equal(tensors["model.embed_tokens.weight"], model.state_dict()["model.embed_tokens.weight"])


def test_streamed_merge_peak_memory_stays_near_one_shard(large_checkpoints, tmp_path: Path) -> None:
    """A 235 MB bf16 checkpoint in 40 MB shards merges with a peak RSS increase (anonymous and
    file-backed, sampled every millisecond in a fresh process) under 1.5 shards + the patch; a
    whole-model load would need ≥ 235 MB."""
    base, _ = large_checkpoints
    shards = list(base.glob("*.safetensors"))
    size, largest = sum(p.stat().st_size for p in shards), max(p.stat().st_size for p in shards)
    model = load_causal_lm(base)
    patch_path = save_patch(_random_patch(model, with_head=False), tmp_path / "patch.safetensors")
    del model
    peak = measure_peak("merge", str(base), str(patch_path), str(tmp_path / "merged"))
    print(
        f"merged {size / 1e6:.0f} MB, largest shard {largest / 1e6:.0f} MB: "
        f"RSS +{peak['anon_bytes'] / 1e6:.0f} MB anonymous, +{peak['file_bytes'] / 1e6:.0f} MB file-backed"
    )
    assert size > 200e6
    assert peak["anon_bytes"] < 1.5 * largest + patch_path.stat().st_size, (peak, largest, size)
    assert peak["anon_bytes"] + peak["file_bytes"] < 2 * largest + patch_path.stat().st_size, (peak, largest)
