"""apply_patch / revert on a live model, compatibility checks, and merged export to a directory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import AlreadyExists, IncompatibleModel
from trainer.patch.apply import apply_patch
from trainer.patch.merge import merge_into_directory
from trainer.patch.types import Columns, Patch, Rows, Scale
from trainer.tiny import TinyConfig, build_model

KIND_MODULES = {
    "lowrank": "model.layers.0.self_attn.q_proj",
    "columns": "model.layers.0.self_attn.o_proj",
    "rows": "model.layers.1.mlp.up_proj",
    "scale": "model.layers.1.self_attn.v_proj",
    "dense": "model.layers.1.mlp.down_proj",
}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_bit_equal(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    for key, value in state.items():
        assert value.dtype == snapshot[key].dtype
        assert torch.equal(value.view(torch.uint8), snapshot[key].view(torch.uint8)), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", list(KIND_MODULES))
def test_apply_changes_weights_and_revert_is_bit_exact(random_patch, kind, dtype):
    model = build_model().to(dtype)
    before = _snapshot(model)
    name = KIND_MODULES[kind]
    handle = apply_patch(model, random_patch(model, {name: kind}, seed=7))
    weight_key = f"{name}.weight"
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == [weight_key]
    assert model.state_dict()[weight_key].dtype == dtype
    handle.revert()
    _assert_bit_equal(model, before)
    handle.revert()  # a second revert is a no-op, not a second restore of stale data
    _assert_bit_equal(model, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_all_kinds_together_revert_bit_exact(random_patch, dtype):
    model = build_model().to(dtype)
    before = _snapshot(model)
    with apply_patch(model, random_patch(model, {m: k for k, m in KIND_MODULES.items()}, seed=2)):
        assert not torch.equal(
            model.state_dict()[f"{KIND_MODULES['rows']}.weight"], before[f"{KIND_MODULES['rows']}.weight"]
        )
    _assert_bit_equal(model, before)


def test_apply_matches_reference_formulas(random_patch):
    model = build_model()
    before = _snapshot(model)
    patch = random_patch(model, {m: k for k, m in KIND_MODULES.items()}, seed=4)
    apply_patch(model, patch)
    after = model.state_dict()
    for kind, name in KIND_MODULES.items():
        d, w0 = patch.deltas[name], before[f"{name}.weight"]
        if kind == "lowrank":
            expected = w0 + d.scale * d.B @ d.A
        elif kind == "columns":
            expected = w0.clone()
            expected[:, d.idx] += d.values
        elif kind == "rows":
            expected = w0.clone()
            expected[d.idx, :] += d.values
        elif kind == "scale":
            expected = d.s[:, None] * w0
        else:
            expected = w0 + d.delta
        torch.testing.assert_close(after[f"{name}.weight"], expected, rtol=1e-6, atol=1e-6)


def test_scale_scales_bias_too_and_reverts_it():
    layer = nn.Sequential()
    layer.add_module("proj", nn.Linear(3, 4, bias=True))
    w0, b0 = layer.proj.weight.detach().clone(), layer.proj.bias.detach().clone()
    s = torch.tensor([2.0, 0.5, -1.0, 3.0])
    handle = apply_patch(layer, Patch("p", {}, {"proj": Scale(s=s)}))
    torch.testing.assert_close(layer.proj.bias.detach(), s * b0)
    torch.testing.assert_close(layer.proj.weight.detach(), s[:, None] * w0)
    handle.revert()
    assert torch.equal(layer.proj.bias, b0) and torch.equal(layer.proj.weight, w0)


def _incompatible_cases(model: nn.Module, random_patch) -> dict[str, tuple[Patch, str]]:
    o_proj = "model.layers.0.self_attn.o_proj"
    good = random_patch(model, {"model.layers.0.mlp.up_proj": "rows"}, seed=1).deltas
    return {
        "missing module": (
            Patch("p", {}, {**good, "model.layers.9.self_attn.o_proj": Scale(s=torch.ones(64))}),
            "module model.layers.9.self_attn.o_proj: .*the model has nothing",
        ),
        "not linear": (
            Patch("p", {}, {**good, "model.embed_tokens": Scale(s=torch.ones(64))}),
            "module model.embed_tokens: .*the model has Embedding",
        ),
        "wrong out": (
            Patch("p", {}, {**good, o_proj: Columns(idx=torch.tensor([0]), values=torch.ones(32, 1))}),
            f"module {o_proj}: .*expects weight \\[32, >0\\], the model has \\[64, 64\\]",
        ),
        "index out of range": (
            Patch("p", {}, {**good, o_proj: Rows(idx=torch.tensor([1, 64]), values=torch.ones(2, 64))}),
            f"module {o_proj}: .*expects weight \\[>64, 64\\], the model has \\[64, 64\\]",
        ),
        "lowrank shape": (
            random_patch(build_model(TinyConfig(hidden_size=32, intermediate_size=48)), {o_proj: "lowrank"}),
            f"module {o_proj}: .*expects weight \\[32, 32\\], the model has \\[64, 64\\]",
        ),
    }


@pytest.mark.parametrize(
    "case", ["missing module", "not linear", "wrong out", "index out of range", "lowrank shape"]
)
def test_incompatible_model_rejected_untouched(random_patch, case):
    model = build_model()
    before = _snapshot(model)
    patch, message = _incompatible_cases(model, random_patch)[case]
    with pytest.raises(IncompatibleModel, match=message):
        apply_patch(model, patch)
    _assert_bit_equal(model, before)


def test_merge_into_directory_matches_live_apply(tmp_path, tiny_model_dir, random_patch, input_ids):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    live = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base_logits = live(input_ids).logits
    patch = random_patch(live, {m: k for k, m in KIND_MODULES.items()}, seed=9)
    out = merge_into_directory(tiny_model_dir, patch, tmp_path / "merged")
    apply_patch(live, patch)
    merged = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        expected, got = live(input_ids).logits, merged(input_ids).logits
    assert (expected - base_logits).abs().max() > 1e-2  # the patch really changes the model
    assert (expected - got).abs().max() <= 1e-5
    assert any(p.suffix == ".safetensors" for p in out.iterdir())
    tok = AutoTokenizer.from_pretrained(out)
    assert (
        tok("hello world").input_ids == AutoTokenizer.from_pretrained(tiny_model_dir)("hello world").input_ids
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no temp dir left behind


def test_merge_keeps_saved_dtype(tmp_path, random_patch):
    from transformers import AutoModelForCausalLM

    base = build_model().to(torch.bfloat16)
    base.save_pretrained(tmp_path / "bf16")
    patch = random_patch(base, {"model.layers.0.mlp.down_proj": "columns"})
    merge_into_directory(tmp_path / "bf16", patch, tmp_path / "out")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto")
    assert merged.model.layers[0].mlp.down_proj.weight.dtype == torch.bfloat16


def test_merge_refuses_non_empty_output_and_bad_patch(tmp_path, tiny_model_dir, random_patch, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    patch = random_patch(tiny_model, {"model.layers.0.self_attn.o_proj": "dense"})
    with pytest.raises(AlreadyExists, match="not empty"):
        merge_into_directory(tiny_model_dir, patch, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    bad = Patch("p", {}, {"model.layers.5.mlp.up_proj": Scale(s=torch.ones(128))})
    with pytest.raises(IncompatibleModel):
        merge_into_directory(tiny_model_dir, bad, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
