"""Serving exports: what each engine's loader requires (one test per rule, citing the loader's
source), PEFT giving our apply's logits for every target and accepted kind, Propulsion exact or
approximated with its error measured, and refusals that write nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.errors import ConfigError
from core.serving import ENGINES, VLLM_RANKS, BaseFacts
from trainer.checkpoint_weights import CheckpointWeights, serving_facts
from trainer.hf import load_causal_lm
from trainer.patch.apply import apply_patch
from trainer.patch.engine_export import engine_tensors, write_engine_for_base
from trainer.patch.types import Columns, Dense, LowRank, Patch, Rows, Scale

L0, L1 = "model.layers.0", "model.layers.1"
KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")


def _mixed(seed: int = 0) -> Patch:
    """Every LoRA kind, ranks 4/3/2, a scale with two changed channels, and layer 1 lacking q_proj."""
    g = torch.Generator().manual_seed(seed)
    s = torch.ones(64)
    s[[3, 7]] = torch.tensor([1.3, 0.6])
    return Patch(
        "test",
        {},
        {
            f"{L0}.self_attn.q_proj": LowRank(
                torch.randn(4, 64, generator=g), torch.randn(64, 4, generator=g), 2.0
            ),
            f"{L1}.mlp.down_proj": Columns(torch.tensor([1, 5, 9]), torch.randn(64, 3, generator=g) * 0.3),
            f"{L1}.self_attn.v_proj": Rows(torch.tensor([0, 2]), torch.randn(2, 64, generator=g) * 0.3),
            f"{L0}.self_attn.o_proj": Scale(s),
        },
    )


def _export(patch: Patch, base_dir: Path, target: str, out: Path, approximate: int | None = None) -> dict:
    out.mkdir()
    return write_engine_for_base(
        patch,
        out,
        target,
        serving_facts(base_dir),
        str(base_dir),
        None,
        base_dir=base_dir,
        approximate=approximate,
    )


def _adapter(out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    return json.loads((out / "adapter_config.json").read_text()), load_file(out / "adapter_model.safetensors")


def _modules(tensors: dict[str, torch.Tensor]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for key in tensors:
        match = KEY.match(key)
        assert match, key
        found.setdefault(match.group(1), set()).add(match.group(2))
    return found


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("target", ENGINES)
def test_peft_loads_every_engine_export_with_our_logits(
    tiny_model_dir: Path, tmp_path: Path, target: str
) -> None:
    from peft import PeftModel

    patch = _mixed()
    model = load_causal_lm(tiny_model_dir).eval()
    ids = torch.randint(0, 500, (2, 12), generator=torch.Generator().manual_seed(1))
    with apply_patch(model, patch):
        ours = _logits(model, ids)
    decided = _export(patch, tiny_model_dir, target, tmp_path / target)
    theirs = _logits(PeftModel.from_pretrained(load_causal_lm(tiny_model_dir), tmp_path / target).eval(), ids)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert decided["status"] == "padded" and decided["rank"] >= 4


def test_vllm_rules(tiny_model_dir: Path, tmp_path: Path) -> None:
    _export(_mixed(), tiny_model_dir, "vllm", tmp_path / "vllm")
    config, tensors = _adapter(tmp_path / "vllm")
    # vllm/config/lora.py: MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]: the rank is one
    assert config["r"] in VLLM_RANKS and config["r"] == 8
    # vllm/lora/peft_helper.py: patterns are dropped before 0.32, so none are written; scale = alpha / r = 1
    assert (
        config["rank_pattern"] == {} and config["alpha_pattern"] == {} and config["lora_alpha"] == config["r"]
    )
    # vllm/lora/peft_helper.py _validate_features: DoRA, bias and modules_to_save are errors
    assert config["use_dora"] is False and config["bias"] == "none" and config["modules_to_save"] is None
    # vllm/lora/peft_helper.py from_dict: r, lora_alpha and target_modules are required
    assert {"r", "lora_alpha", "target_modules"} <= set(config)
    # vllm/lora/utils.py parse_fine_tuned_lora_name: only `...lora_A.weight` / `...lora_B.weight`, with HF
    # per-projection names (vllm/model_executor/models/llama.py packs q/k/v and gate/up itself)
    assert all(KEY.match(k) for k in tensors)
    assert not any(name.endswith(("qkv_proj", "gate_up_proj")) for name in _modules(tensors))


def test_sglang_rules(tiny_model_dir: Path, tmp_path: Path) -> None:
    _export(_mixed(), tiny_model_dir, "sglang", tmp_path / "sglang")
    config, tensors = _adapter(tmp_path / "sglang")
    rank = config["r"]
    # python/sglang/srt/lora/mem_pool.py load_lora_weight_to_buffer: buffer_view.shape == weight.shape with
    # lora_rank = config.r, so every A is [r, in] and every B is [out, r]
    for key, tensor in tensors.items():
        assert (tensor.shape[0] if key.endswith("lora_A.weight") else tensor.shape[1]) == rank, key
    # python/sglang/srt/lora/lora.py normalize_qkv_proj indexes weights[v_name] for every q_proj, and
    # normalize_gate_up_proj needs gate_proj for an up_proj: each layer carries q, k, v (gate, up) together
    modules = _modules(tensors)
    for layer in (L0, L1):
        assert {f"{layer}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")} <= set(modules)
    # python/sglang/srt/lora/lora.py: assert self.config.hf_config["peft_type"].lower() == "lora"
    assert config["peft_type"] == "LORA"
    # python/sglang/srt/lora/lora.py: scaling = lora_alpha / r, one value for the whole adapter
    assert config["lora_alpha"] == rank


@pytest.mark.parametrize("target", ["lorax", "tgi"])
def test_lorax_and_tgi_get_every_module_type_in_every_layer(
    tiny_model_dir: Path, tmp_path: Path, target: str
) -> None:
    """server/lorax_server/adapters/lora.py LoraWeights.load (and TGI's copy in
    server/text_generation_server/adapters/lora.py): `if weight_name not in module_map: return None`
    drops a module type for all layers when any layer lacks it, and map_weights_for_model needs both A
    and B. The patch has q_proj in layer 0 only and v_proj in layer 1 only."""
    _export(_mixed(), tiny_model_dir, target, tmp_path / target)
    config, tensors = _adapter(tmp_path / target)
    modules = _modules(tensors)
    for leaf in ("self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"):
        for layer in (L0, L1):
            assert modules.get(f"{layer}.{leaf}") == {"A", "B"}, (layer, leaf)
    assert not torch.any(tensors[f"base_model.model.{L1}.self_attn.q_proj.lora_B.weight"])  # zeros: no change
    # server/lorax_server/utils/punica.py pad_to_min_rank pads ranks <= 8 to 8 and others to a multiple of 16,
    # then LoraWeights.load sets config.r = padded_rank (wrong scale for later module types): ours never is
    assert config["r"] == 8 or config["r"] % 16 == 0
    # adapters/lora.py get_scaling_factor(config.lora_alpha, config.r): one global alpha / r, here 1
    assert config["lora_alpha"] == config["r"] and config["rank_pattern"] == {}


def test_llama_cpp_rules(tiny_model_dir: Path, tmp_path: Path) -> None:
    _export(_mixed(), tiny_model_dir, "llama.cpp", tmp_path / "llama.cpp")
    config, tensors = _adapter(tmp_path / "llama.cpp")
    # src/llama-adapter.cpp get_scale: scale = alpha / b->ne[0] (each tensor's own rank): alpha == every rank
    ranks = {t.shape[0] if k.endswith("lora_A.weight") else t.shape[1] for k, t in tensors.items()}
    assert ranks == {config["lora_alpha"]}
    # convert_lora_to_gguf.py: every tensor is a lora_A/lora_B pair (anything else exits), lora_alpha is read
    assert all(v == {"A", "B"} for v in _modules(tensors).values())


def test_head_rules(tiny_model_dir: Path, make_tiny_model, tmp_path: Path) -> None:
    head = Patch("test", {}, {"lm_head": LowRank(torch.randn(2, 64), torch.randn(512, 2), 1.0)})
    untied = serving_facts(tiny_model_dir)
    # server/text_generation_server/models/__init__.py: lm_head is not among the adapter layers TGI loads
    with pytest.raises(ConfigError, match="TGI cannot load this patch: TGI does not load an lm_head LoRA"):
        engine_tensors(head, untied, "tgi")
    # convert_lora_to_gguf.py: "lm_head is present in adapter, but is ignored in base model" on tied bases
    tied = serving_facts(make_tiny_model(tie_word_embeddings=True))
    assert tied.tied_head
    with pytest.raises(ConfigError, match="tied embeddings"):
        engine_tensors(head, tied, "llama.cpp")
    tensors, export = engine_tensors(head, untied, "vllm")  # vLLM, SGLang and LoRAX take an lm_head LoRA
    assert export.modules == ["lm_head"] and set(_modules(tensors)) == {"lm_head"}


def test_propulsion_on_every_channel_needs_an_explicit_approximation(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    g = torch.Generator().manual_seed(3)
    names = [f"{L0}.self_attn.o_proj", f"{L1}.mlp.up_proj"]
    patch = Patch(
        "propulsion",
        {},
        {n: Scale(1 + 0.05 * torch.randn(64 if "o_proj" in n else 128, generator=g)) for n in names},
    )
    facts = serving_facts(tiny_model_dir)
    with pytest.raises(ConfigError, match=r"merged instead; or --approximate RANK"):
        engine_tensors(patch, facts, "vllm")
    assert not (tmp_path / "refused").exists()

    decided = _export(patch, tiny_model_dir, "vllm", tmp_path / "approx", approximate=8)
    approx = decided["approximation"]
    _, tensors = _adapter(tmp_path / "approx")
    with CheckpointWeights(tiny_model_dir) as checkpoint:
        for name in names:
            w = checkpoint.load(checkpoint.source(name))
            exact = (patch.deltas[name].s - 1)[:, None] * w
            written = (
                tensors[f"base_model.model.{name}.lora_B.weight"]
                @ tensors[f"base_model.model.{name}.lora_A.weight"]
            )
            measured = float(torch.linalg.norm(exact - written) / torch.linalg.norm(exact))
            # the error written into the manifest is the error of what was written
            assert measured == pytest.approx(approx["relative_error"][name], rel=1e-3, abs=1e-6)
            assert 0 < measured < 1
    assert 0 < approx["logit_error"] < 1 and approx["logit_texts"] == 4
    assert decided["status"] == "approximate" and decided["rank"] == 8

    full = _export(patch, tiny_model_dir, "sglang", tmp_path / "full-rank", approximate=64)  # rank 64 = exact
    assert max(full["approximation"]["relative_error"].values()) < 1e-5


def test_dense_and_oversized_ranks_are_refused_with_the_alternative(tiny_model_dir: Path) -> None:
    facts = serving_facts(tiny_model_dir)
    dense = Patch("full", {}, {f"{L0}.mlp.up_proj": Dense(torch.randn(128, 64))})
    with pytest.raises(ConfigError, match=r"is a dense delta.*export --format merged instead"):
        engine_tensors(dense, facts, "lorax")
    wide = BaseFacts("llama", {f"{L0}.self_attn.q_proj": (4096, 4096)})
    big = Patch(
        "lora", {}, {f"{L0}.self_attn.q_proj": LowRank(torch.zeros(600, 4096), torch.zeros(4096, 600), 1.0)}
    )
    with pytest.raises(ConfigError, match="rank 600 is above 512"):
        engine_tensors(big, wide, "vllm")


def test_fused_and_conv1d_architectures_are_refused(make_zoo_model) -> None:
    for model_type, module in (
        ("gpt2", "transformer.h.0.attn.c_attn"),
        ("phi3", "model.layers.0.self_attn.qkv_proj"),
    ):
        facts = serving_facts(make_zoo_model(model_type))
        out_f, in_f = facts.shapes[module]
        patch = Patch("lora", {}, {module: LowRank(torch.zeros(2, in_f), torch.zeros(out_f, 2), 1.0)})
        with pytest.raises(ConfigError, match="not a per-projection decoder module"):
            engine_tensors(patch, facts, "vllm")
