"""PEFT import: adapters made by PEFT (or by our export) compute the same thing as patches."""

from __future__ import annotations

import json

import pytest
import torch

from core.errors import ConfigError, MalformedFile
from trainer.patch.apply import apply_patch
from trainer.patch.peft_export import export_peft
from trainer.patch.peft_import import import_peft
from trainer.patch.types import LowRank, Scale
from trainer.tiny import build_model

Q0 = "model.layers.0.self_attn.q_proj"
V1 = "model.layers.1.self_attn.v_proj"
DOWN1 = "model.layers.1.mlp.down_proj"


def _patched_logits(patch, input_ids) -> torch.Tensor:
    model = build_model()
    with torch.no_grad():
        apply_patch(model, patch)
        return model(input_ids).logits


def _peft_adapter(tmp_path, config, fill=None):
    """Save an adapter made by PEFT itself on a tiny model; return (dir, the PeftModel)."""
    from peft import get_peft_model

    peft_model = get_peft_model(build_model(), config)
    if fill is not None:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                fill(name, param)
    out = tmp_path / "adapter"
    peft_model.save_pretrained(out)
    return out, peft_model.eval()


def _rewrite_config(adapter_dir, **changes) -> None:
    path = adapter_dir / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("kinds", [{Q0: "lowrank", DOWN1: "lowrank"}, {Q0: "scale", V1: "scale"}])
def test_export_then_import_round_trips(tmp_path, tiny_model, random_patch, input_ids, kinds):
    patch = random_patch(tiny_model, kinds, seed=3, ranks={DOWN1: 6})
    out = export_peft(patch, tmp_path / "a", "tiny", "v1")

    back = import_peft(out)

    assert back.modules == patch.modules
    for name, delta in patch.deltas.items():
        got = back.deltas[name]
        assert type(got) is type(delta)
        if isinstance(delta, LowRank):
            assert torch.allclose(got.scale * got.B @ got.A, delta.scale * delta.B @ delta.A, atol=1e-6)
        else:
            assert torch.equal(got.s, delta.s)
    assert back.method == ("ia3" if "scale" in kinds.values() else "lora")
    assert back.metadata["peft_base_model_name_or_path"] == "tiny"
    base = build_model()(input_ids).logits
    expected = _patched_logits(patch, input_ids)
    assert (expected - base).abs().max() > 1e-2
    assert (_patched_logits(back, input_ids) - expected).abs().max() <= 1e-6


LORA_CONFIGS = {
    "plain": {},
    "rslora": {"use_rslora": True},
    "patterns": {"rank_pattern": {DOWN1: 2}, "alpha_pattern": {"q_proj": 3}},
    # the anchored and escaped forms PEFT users write, matched without running them as regexes
    "anchored patterns": {
        "rank_pattern": {f"^{DOWN1}$": 2},
        "alpha_pattern": {".*q_proj": 3, "model\\.layers\\.0\\.self_attn\\.v_proj": 5},
    },
}


@pytest.mark.parametrize("case", list(LORA_CONFIGS))
def test_lora_made_by_peft_gives_peft_logits(tmp_path, input_ids, case):
    from peft import LoraConfig

    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False,
        **LORA_CONFIGS[case],
    )  # fmt: skip
    adapter, peft_model = _peft_adapter(tmp_path, config)

    patch = import_peft(adapter, method_name="portllm")

    with torch.no_grad():
        want = peft_model(input_ids).logits
        base = build_model()(input_ids).logits
    assert (want - base).abs().max() > 1e-3  # the adapter really does something
    assert (_patched_logits(patch, input_ids) - want).abs().max() <= 1e-5
    assert patch.method == "portllm"
    assert len(patch.deltas) == 6  # 2 layers x 3 targets, named as the model names them
    assert "model.layers.0.mlp.down_proj" in patch.deltas
    if case in ("patterns", "anchored patterns"):
        assert patch.deltas[DOWN1].A.shape[0] == 2
        assert patch.deltas[DOWN1].scale == pytest.approx(8 / 2)
        assert patch.deltas[Q0].scale == pytest.approx(3 / 4)
    if case == "rslora":
        assert patch.deltas[Q0].scale == pytest.approx(8 / 2)


def _random_ia3(name, param):
    if "ia3_l" in name:
        param.copy_(1.0 + 0.5 * torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))))


def test_ia3_made_by_peft_gives_peft_logits(tmp_path, input_ids):
    from peft import IA3Config

    config = IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=[])
    adapter, peft_model = _peft_adapter(tmp_path, config, fill=_random_ia3)

    patch = import_peft(adapter)

    assert patch.method == "ia3"
    assert all(isinstance(d, Scale) and d.s.dtype == torch.float32 for d in patch.deltas.values())
    with torch.no_grad():
        want = peft_model(input_ids).logits
    assert (want - build_model()(input_ids).logits).abs().max() > 1e-3
    assert (_patched_logits(patch, input_ids) - want).abs().max() <= 1e-5


def test_ia3_feedforward_input_scaling_is_rejected(tmp_path):
    from peft import IA3Config

    config = IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"])
    adapter, _ = _peft_adapter(tmp_path, config)

    with pytest.raises(ConfigError, match=r"down_proj.*feed-forward"):
        import_peft(adapter)


def test_dora_is_rejected(tmp_path):
    from peft import LoraConfig

    adapter, _ = _peft_adapter(tmp_path, LoraConfig(r=2, target_modules=["q_proj"], use_dora=True))

    with pytest.raises(ConfigError, match="DoRA"):
        import_peft(adapter)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"bias": "all"}, "bias"),
        ({"init_lora_weights": "pissa"}, "pissa"),
        ({"peft_type": "PREFIX_TUNING"}, "PREFIX_TUNING.*not supported"),
    ],
)
def test_unsupported_lora_settings_are_rejected(tmp_path, tiny_model, random_patch, changes, message):
    adapter = export_peft(random_patch(tiny_model, {Q0: "lowrank"}), tmp_path / "a", "tiny")
    _rewrite_config(adapter, **changes)

    with pytest.raises(ConfigError, match=message):
        import_peft(adapter)


def test_damaged_adapters_are_rejected(tmp_path, tiny_model, random_patch):
    from safetensors.torch import load_file, save_file

    adapter = export_peft(random_patch(tiny_model, {Q0: "lowrank"}, ranks={Q0: 4}), tmp_path / "a", "tiny")
    weights = adapter / "adapter_model.safetensors"
    tensors = load_file(str(weights))

    _rewrite_config(adapter, r=8, lora_alpha=8)  # config rank disagrees with the tensors
    with pytest.raises(MalformedFile, match=rf"{Q0}.*rank"):
        import_peft(adapter)
    _rewrite_config(adapter, r=4)

    save_file({k: v for k, v in tensors.items() if "lora_A" in k}, str(weights))
    with pytest.raises(MalformedFile, match=rf"{Q0}.*lora_B"):
        import_peft(adapter)

    weights.unlink()
    torch.save(tensors, adapter / "adapter_model.bin")
    with pytest.raises(MalformedFile, match=r"convert it to adapter_model\.safetensors"):
        import_peft(adapter)

    with pytest.raises(MalformedFile, match=r"no adapter_config\.json"):
        import_peft(tmp_path)


def test_the_same_adapter_converts_to_the_same_bytes(tmp_path):
    """Content addressing dedupes a re-upload only if conversion is deterministic (safetensors' own
    writer ordered the metadata by a per-call hash: three conversions, three digests)."""
    from peft import LoraConfig

    from trainer.patch.io import save_patch

    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False,
                        rank_pattern={DOWN1: 1}, revision="abc")  # fmt: skip
    adapter, _ = _peft_adapter(tmp_path, config)
    files = [save_patch(import_peft(adapter), tmp_path / f"{i}.safetensors").read_bytes() for i in range(3)]
    assert files[0] == files[1] == files[2]
