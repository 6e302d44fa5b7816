"""PEFT export: what PeftModel loads from our directory must compute what apply_patch computes."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

from core.errors import AlreadyExists, ConfigError
from trainer.patch.apply import apply_patch
from trainer.patch.model_shapes import target_shapes
from trainer.patch.peft_export import export_peft, export_rank

O_PROJ_0 = "model.layers.0.self_attn.o_proj"
CASES = {
    "lowrank": {"model.layers.0.self_attn.q_proj": "lowrank", "model.layers.1.mlp.down_proj": "lowrank"},
    "columns": {O_PROJ_0: "columns", "model.layers.1.mlp.down_proj": "columns"},
    "rows": {"model.layers.0.self_attn.v_proj": "rows", "model.layers.1.mlp.up_proj": "rows"},
    "scale": {"model.layers.0.self_attn.k_proj": "scale", "model.layers.1.mlp.down_proj": "scale"},
    "lora mix": {
        O_PROJ_0: "columns",
        "model.layers.1.mlp.up_proj": "rows",
        "model.layers.1.mlp.down_proj": "lowrank",
    },
}
# Different ranks per module force rank_pattern/alpha_pattern.
RANKS = {O_PROJ_0: 3, "model.layers.1.mlp.down_proj": 7, "model.layers.1.mlp.up_proj": 5}


def _load(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir)


def _adapted_modules(peft_model) -> set[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    prefix = "base_model.model."
    return {
        name.removeprefix(prefix)
        for name, module in peft_model.named_modules()
        if isinstance(module, BaseTunerLayer)
    }


@pytest.mark.parametrize("case", list(CASES))
def test_peft_adapter_matches_own_apply(tmp_path, tiny_model_dir, random_patch, input_ids, case):
    from peft import PeftModel

    base = _load(tiny_model_dir)
    patch = random_patch(base, CASES[case], seed=11, ranks=RANKS)
    out = export_peft(patch, tmp_path / "adapter", "tiny-llama", "v2", module_shapes=target_shapes(base))

    ours = _load(tiny_model_dir)
    with torch.no_grad():
        base_logits = ours(input_ids).logits
        apply_patch(ours, patch)
        expected = ours(input_ids).logits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_model = PeftModel.from_pretrained(base, out)
    key_warnings = [str(w.message) for w in caught if "key" in str(w.message).lower()]
    assert key_warnings == []  # no missing/unexpected adapter keys
    with torch.no_grad():
        got = peft_model(input_ids).logits
    assert (expected - base_logits).abs().max() > 1e-2
    assert (expected - got).abs().max() <= 1e-5
    assert _adapted_modules(peft_model) == set(CASES[case])


def test_adapter_touches_only_patched_module(tmp_path, tiny_model_dir, random_patch):
    from peft import PeftModel

    base = _load(tiny_model_dir)
    patch = random_patch(base, {O_PROJ_0: "lowrank"})
    out = export_peft(patch, tmp_path / "a", "tiny", None)
    peft_model = PeftModel.from_pretrained(base, out)
    assert _adapted_modules(peft_model) == {O_PROJ_0}  # not layer 1's o_proj


def test_lora_files_use_peft_layout(tmp_path, tiny_model, random_patch):
    patch = random_patch(
        tiny_model, {O_PROJ_0: "columns", "model.layers.1.mlp.down_proj": "lowrank"}, ranks=RANKS
    )
    out = export_peft(patch, tmp_path / "a", "org/base", "abc123", module_shapes=target_shapes(tiny_model))
    tensors = load_file(out / "adapter_model.safetensors")
    assert set(tensors) == {
        f"base_model.model.{m}.lora_{ab}.weight" for m in patch.deltas for ab in ("A", "B")
    }
    a = tensors[f"base_model.model.{O_PROJ_0}.lora_A.weight"]
    idx = patch.deltas[O_PROJ_0].idx
    assert a.shape == (3, 64) and torch.equal(a.argmax(dim=1), idx) and a.sum() == 3  # one-hot selector
    text = (out / "adapter_config.json").read_text()
    config = json.loads(text)
    assert list(config) == sorted(config)
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert config["base_model_name_or_path"] == "org/base" and config["revision"] == "abc123"
    assert config["inference_mode"] is True
    ranks = {m: config["rank_pattern"].get(m, config["r"]) for m in patch.deltas}
    alphas = {m: config["alpha_pattern"].get(m, config["lora_alpha"]) for m in patch.deltas}
    assert ranks == {O_PROJ_0: 3, "model.layers.1.mlp.down_proj": 7}
    assert alphas[O_PROJ_0] / ranks[O_PROJ_0] == 1.0
    assert alphas["model.layers.1.mlp.down_proj"] / 7 == pytest.approx(2.0)
    assert export_rank(patch) == 7


def test_peft_save_round_trip_keeps_our_keys(tmp_path, tiny_model_dir, random_patch):
    """PEFT re-saving our adapter must produce the same tensor names: proof the layout is PEFT's own."""
    from peft import PeftModel

    base = _load(tiny_model_dir)
    patch = random_patch(base, {O_PROJ_0: "rows", "model.layers.1.mlp.up_proj": "rows"}, ranks=RANKS)
    ours = export_peft(patch, tmp_path / "ours", str(tiny_model_dir), None, module_shapes=target_shapes(base))
    PeftModel.from_pretrained(base, ours).save_pretrained(tmp_path / "resaved")
    resaved = load_file(tmp_path / "resaved" / "adapter_model.safetensors")
    original = load_file(ours / "adapter_model.safetensors")
    assert resaved.keys() == original.keys()
    for key, value in original.items():
        assert torch.equal(resaved[key], value), key


def test_ia3_layout(tmp_path, tiny_model, random_patch):
    patch = random_patch(tiny_model, {O_PROJ_0: "scale"})
    out = export_peft(patch, tmp_path / "a", "tiny", None)
    tensors = load_file(out / "adapter_model.safetensors")
    ia3_l = tensors[f"base_model.model.{O_PROJ_0}.ia3_l"]
    assert ia3_l.shape == (64, 1) and ia3_l.dtype == torch.float32
    assert torch.equal(ia3_l[:, 0], patch.deltas[O_PROJ_0].s)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "IA3" and config["feedforward_modules"] == []
    assert export_rank(patch) is None


def test_dense_has_no_peft_form(tmp_path, tiny_model, random_patch):
    patch = random_patch(tiny_model, {O_PROJ_0: "dense"})
    with pytest.raises(ConfigError, match="export --format merged instead"):
        export_peft(patch, tmp_path / "a", "tiny", None)
    assert not (tmp_path / "a").exists()
    assert export_rank(patch) is None


def test_mixed_lora_and_ia3_refused(tmp_path, tiny_model, random_patch):
    patch = random_patch(tiny_model, {O_PROJ_0: "lowrank", "model.layers.1.mlp.up_proj": "scale"})
    with pytest.raises(ConfigError, match="mixes scale deltas"):
        export_peft(patch, tmp_path / "a", "tiny", None)
    assert list(tmp_path.iterdir()) == []


def test_columns_need_module_shapes(tmp_path, tiny_model, random_patch):
    patch = random_patch(tiny_model, {O_PROJ_0: "columns"})
    with pytest.raises(ConfigError, match=f"module '{O_PROJ_0}'.*module_shapes"):
        export_peft(patch, tmp_path / "a", "tiny", None)


def test_refuses_non_empty_out_dir(tmp_path, tiny_model, random_patch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("keep")
    with pytest.raises(AlreadyExists, match="not empty"):
        export_peft(random_patch(tiny_model, {O_PROJ_0: "scale"}), tmp_path / "a", "tiny", None)
    assert (tmp_path / "a" / "x").read_text() == "keep"
