"""PEFT export and import on every kind of patch target: Conv1D (GPT-2), fused projections (Phi-3,
GPT-NeoX, Falcon, GPT-2's c_attn) and MoE experts (Mixtral, Qwen2-MoE), plus propulsion on experts.

What PEFT loads from our adapter must compute what `apply_patch` computes, and what PEFT itself
saved must import into a patch that computes what PEFT computes (≤1e-5 in fp32)."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

from core.arch import find_architecture, weight_sources
from core.errors import ConfigError
from core.safetensors_header import read_safetensors_header
from tests.trainer.conftest import make_random_patch
from trainer import zoo
from trainer.patch.apply import apply_patch
from trainer.patch.model_shapes import target_shapes
from trainer.patch.peft_experts import param_order
from trainer.patch.peft_export import export_peft, export_rank
from trainer.patch.peft_import import import_peft
from trainer.patch.types import LowRank, Patch, Scale

ARCHS = ("gpt2", "phi3", "gpt_neox", "falcon", "mixtral", "qwen2_moe")
IDS = torch.randint(3, 512, (2, 12), generator=torch.Generator().manual_seed(1))
GPT2 = "transformer.h"
EXP0, EXP1 = "model.layers.0.mlp.experts", "model.layers.1.mlp.experts"

# {model_type: {target: (kind, rank)}}: fused rows/columns, Conv1D, experts with differing ranks,
# experts missing from the patch, and two nested expert parameters of one module.
LORA_CASES = {
    "gpt2": {
        f"{GPT2}.0.attn.c_attn": ("rows", 3),
        f"{GPT2}.0.attn.c_proj": ("columns", 2),
        f"{GPT2}.1.attn.c_attn": ("columns", 4),
        f"{GPT2}.1.mlp.c_fc": ("lowrank", 4),
        f"{GPT2}.1.mlp.c_proj": ("lowrank", 3),
    },
    "phi3": {
        "model.layers.0.self_attn.qkv_proj": ("columns", 3),
        "model.layers.0.mlp.gate_up_proj": ("rows", 5),
        "model.layers.1.self_attn.qkv_proj": ("lowrank", 4),
    },
    "gpt_neox": {
        "gpt_neox.layers.0.attention.query_key_value": ("rows", 4),
        "gpt_neox.layers.1.attention.query_key_value": ("columns", 2),
        "gpt_neox.layers.1.mlp.dense_h_to_4h": ("lowrank", 4),
    },
    "falcon": {
        "transformer.h.0.self_attention.query_key_value": ("rows", 3),
        "transformer.h.1.self_attention.query_key_value": ("lowrank", 4),
    },
    "mixtral": {
        **{f"{EXP0}.gate_up_proj.{e}": ("lowrank", 2 + e) for e in range(4)},
        f"{EXP0}.down_proj.1": ("rows", 3),
        f"{EXP0}.down_proj.2": ("columns", 2),
        "model.layers.1.self_attn.q_proj": ("lowrank", 4),
    },
    "qwen2_moe": {
        f"{EXP1}.gate_up_proj.0": ("columns", 3),
        f"{EXP1}.down_proj.3": ("lowrank", 2),
        "model.layers.0.mlp.shared_expert.up_proj": ("lowrank", 4),
    },
}
IA3_CASES = {
    "gpt2": {f"{GPT2}.0.attn.c_attn": ("scale", 0), f"{GPT2}.1.mlp.c_fc": ("scale", 0)},
    "phi3": {"model.layers.0.self_attn.qkv_proj": ("scale", 0), "model.layers.1.mlp.down_proj": ("scale", 0)},
}


@pytest.fixture(scope="module")
def bases():
    """One tiny model per architecture, never modified: tests work on copies."""
    return {model_type: zoo.build(model_type) for model_type in ARCHS}


def _copy(bases, model_type):
    return copy.deepcopy(bases[model_type])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def _random_patch(model, spec, seed=0) -> Patch:
    """Clearly non-zero deltas of the given (kind, rank) per target ([out, in])."""
    kinds = {name: kind for name, (kind, _) in spec.items()}
    return make_random_patch(model, kinds, seed, ranks={name: k for name, (_, k) in spec.items()})


def _applied_logits(bases, model_type, patch) -> torch.Tensor:
    model = _copy(bases, model_type)
    with apply_patch(model, patch):
        return _logits(model)


def _peft_load(bases, model_type, adapter_dir):
    """PeftModel.from_pretrained on a copy; fails on any PEFT warning about keys, patterns or layout."""
    from peft import PeftModel

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(_copy(bases, model_type), adapter_dir)
    noted = [str(w.message) for w in caught]
    assert [m for m in noted if any(word in m for word in ("key", "pattern", "fan_in_fan_out"))] == []
    return model.eval()


def _split(patch: Patch) -> tuple[set[str], set[str]]:
    """(modules, expert parameters) a patch's deltas land on."""
    modules = {n for n in patch.deltas if "experts" not in n}
    return modules, {n.rsplit(".", 1)[0] for n in patch.deltas if "experts" in n}


@pytest.mark.parametrize(
    ("model_type", "case"),
    [(t, "lora") for t in LORA_CASES] + [(t, "ia3") for t in IA3_CASES],
)
def test_export_loads_in_peft_with_our_logits(bases, tmp_path, model_type, case):
    spec = (LORA_CASES if case == "lora" else IA3_CASES)[model_type]
    patch = _random_patch(bases[model_type], spec)
    shapes = target_shapes(bases[model_type])
    out = export_peft(patch, tmp_path / "adapter", model_type, module_shapes=shapes)

    expected = _applied_logits(bases, model_type, patch)
    peft_model = _peft_load(bases, model_type, out)

    assert (expected - _logits(bases[model_type])).abs().max() > 1e-2
    assert (_logits(peft_model) - expected).abs().max() <= 1e-5
    modules, params = _split(patch)
    assert set(peft_model.base_model.targeted_module_names) == modules
    assert set(peft_model.base_model.targeted_parameter_names) == params
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["fan_in_fan_out"] is (model_type == "gpt2")
    assert config["target_modules"] == sorted(modules)
    assert config.get("target_parameters", []) == sorted(params)
    if case == "lora":
        assert export_rank(patch) == max(k for _, k in spec.values())


@pytest.mark.parametrize("model_type", list(LORA_CASES))
def test_export_then_import_gives_the_same_model(bases, tmp_path, model_type):
    patch = _random_patch(bases[model_type], LORA_CASES[model_type], seed=5)
    out = export_peft(patch, tmp_path / "adapter", model_type, module_shapes=target_shapes(bases[model_type]))

    back = import_peft(out)

    assert back.modules == patch.modules  # experts absent from the patch stay absent
    for name, delta in back.deltas.items():
        assert isinstance(delta, LowRank)
        if isinstance(patch.deltas[name], LowRank):
            assert delta.A.shape == patch.deltas[name].A.shape  # zero padding is dropped again
    expected = _applied_logits(bases, model_type, patch)
    assert (_applied_logits(bases, model_type, back) - expected).abs().max() <= 1e-5


def test_nested_expert_adapters_use_peft_key_names(bases, tmp_path):
    """Two parameters of one experts module: the one PEFT wraps last sits at the module, the other
    one `base_layer` deeper; PEFT re-saving our adapter writes exactly our keys and values."""
    patch = _random_patch(bases["mixtral"], LORA_CASES["mixtral"])
    ours = export_peft(patch, tmp_path / "ours", "mixtral", module_shapes=target_shapes(bases["mixtral"]))
    tensors = load_file(ours / "adapter_model.safetensors")
    prefix = f"base_model.model.{EXP0}"
    # gate_up_proj: [out 128, rank 5 · 4 experts]; down_proj: [out 64, ...], padded to the same rank
    assert tensors[f"{prefix}.base_layer.lora_A.weight"].shape == (4 * 5, 64)
    assert tensors[f"{prefix}.base_layer.lora_B.weight"].shape == (128, 5 * 4)
    assert tensors[f"{prefix}.lora_B.weight"].shape == (64, 5 * 4)
    assert tensors[f"{prefix}.lora_B.weight"].reshape(64, 5, 4)[:, :, [0, 3]].abs().max() == 0  # absent
    config = json.loads((ours / "adapter_config.json").read_text())
    assert config["target_parameters"] == [f"{EXP0}.down_proj", f"{EXP0}.gate_up_proj"]
    assert (config["r"], config["rank_pattern"]) == (5, {"model.layers.1.self_attn.q_proj": 4})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT looks up the base's config.json by its name, "mixtral"
        _peft_load(bases, "mixtral", ours).save_pretrained(tmp_path / "resaved")
    resaved = load_file(tmp_path / "resaved" / "adapter_model.safetensors")
    assert resaved.keys() == tensors.keys()
    assert all(torch.equal(resaved[k], v) for k, v in tensors.items())


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe", "qwen3_moe"])
def test_catalog_lists_expert_parameters_in_registration_order(model_type):
    """PEFT nests ParamWrappers in the module's registration order; export and import read that
    order from the catalog, so the two must agree."""
    model = zoo.build(model_type)
    module = model.get_submodule(EXP0)
    registered = [n for n, p in module.named_parameters(recurse=False) if p.dim() == 3]
    assert param_order(EXP0) == registered


def _peft_made(bases, model_type, config, tmp_path, fill=None):
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns it ignored rank patterns of parameters; it did not
        peft_model = get_peft_model(_copy(bases, model_type), config)
    if fill is not None:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                fill(name, param)
    peft_model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter", peft_model.eval()


PEFT_LORAS = {
    "gpt2": {"target_modules": ["c_attn", "c_proj", "c_fc"], "fan_in_fan_out": True},
    "phi3": {"target_modules": ["qkv_proj", "gate_up_proj"]},
    "gpt_neox": {"target_modules": ["query_key_value", "dense_4h_to_h"]},
    "falcon": {
        "target_modules": ["query_key_value"],
        "rank_pattern": {"transformer.h.1.self_attention.query_key_value": 2},
    },
    "mixtral": {
        "target_modules": ["q_proj"],
        "target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
        "rank_pattern": {f"{EXP1}.down_proj": 2},
        "alpha_pattern": {f"{EXP0}.gate_up_proj": 3},
    },
    "qwen2_moe": {"target_modules": ["shared_expert.gate_proj"], "target_parameters": [f"{EXP0}.down_proj"]},
}


@pytest.mark.parametrize("model_type", list(PEFT_LORAS))
def test_lora_made_by_peft_imports_with_peft_logits(bases, tmp_path, model_type):
    from peft import LoraConfig

    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **PEFT_LORAS[model_type])
    adapter, peft_model = _peft_made(bases, model_type, config, tmp_path)

    patch = import_peft(adapter)

    want = _logits(peft_model)
    assert (want - _logits(bases[model_type])).abs().max() > 1e-3
    assert (_applied_logits(bases, model_type, patch) - want).abs().max() <= 1e-5
    if model_type == "mixtral":
        assert len([n for n in patch.deltas if "experts" in n]) == 2 * 2 * 4  # layers x params x experts
        assert patch.deltas[f"{EXP1}.down_proj.3"].A.shape == (2, 64)
        assert patch.deltas[f"{EXP0}.gate_up_proj.0"].scale == pytest.approx(3 / 4)
    if model_type == "qwen2_moe":
        assert {n.rsplit(".", 1)[0] for n in patch.deltas if "experts" in n} == {f"{EXP0}.down_proj"}


def _random_ia3(name, param):
    if "ia3_l" in name:
        param.copy_(1.0 + 0.5 * torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))))


def test_ia3_made_by_peft_on_conv1d_imports_with_peft_logits(bases, tmp_path):
    from peft import IA3Config

    config = IA3Config(target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=[], fan_in_fan_out=True)
    adapter, peft_model = _peft_made(bases, "gpt2", config, tmp_path, fill=_random_ia3)

    patch = import_peft(adapter)

    assert all(isinstance(d, Scale) for d in patch.deltas.values())
    want = _logits(peft_model)
    assert (want - _logits(bases["gpt2"])).abs().max() > 1e-3
    assert (_applied_logits(bases, "gpt2", patch) - want).abs().max() <= 1e-5


def test_lora_method_on_experts_exports_what_it_trained(bases, tmp_path):
    """The LoRA method's per-expert extraction and the export's packing are inverses: the exported
    adapter computes what the live PEFT model computed."""
    from trainer.methods import get_method, parse_overrides

    method, config = get_method("lora"), parse_overrides("lora", ["r=2"])
    prepared = method.prepare(_copy(bases, "mixtral"), config)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in prepared.params.items():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    live = _logits(prepared.model)
    patch = method.extract_patch(prepared, config)
    assert {n.rsplit(".", 1)[0] for n in patch.deltas if "experts" in n} == {
        f"model.layers.{layer}.mlp.experts.{p}" for layer in (0, 1) for p in ("gate_up_proj", "down_proj")
    }
    out = export_peft(patch, tmp_path / "adapter", "mixtral", module_shapes=target_shapes(bases["mixtral"]))

    assert (_logits(_peft_load(bases, "mixtral", out)) - live).abs().max() <= 1e-5
    assert (_applied_logits(bases, "mixtral", patch) - live).abs().max() <= 1e-5


def test_experts_count_comes_from_the_base(bases, tmp_path):
    """An expert parameter's adapter spans all the base's experts, however few the patch changes."""
    patch = _random_patch(bases["qwen2_moe"], {f"{EXP0}.down_proj.0": ("lowrank", 2)})
    shapes = target_shapes(bases["qwen2_moe"])
    out = export_peft(patch, tmp_path / "adapter", "qwen2_moe", module_shapes=shapes)
    assert load_file(out / "adapter_model.safetensors")[f"base_model.model.{EXP0}.lora_A.weight"].shape == (
        8,
        32,
    )
    expected = _applied_logits(bases, "qwen2_moe", patch)
    assert (_logits(_peft_load(bases, "qwen2_moe", out)) - expected).abs().max() <= 1e-5

    beyond = _random_patch(bases["qwen2_moe"], {f"{EXP0}.down_proj.0": ("lowrank", 2)})
    beyond.deltas[f"{EXP0}.down_proj.7"] = beyond.deltas.pop(f"{EXP0}.down_proj.0")
    with pytest.raises(ConfigError, match=r"down_proj\.7.*has 4 experts"):
        export_peft(beyond, tmp_path / "beyond", "qwen2_moe", module_shapes=shapes)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return {t: zoo.save(t, tmp_path_factory.mktemp(t)) for t in ("gpt2", "mixtral")}


@pytest.mark.parametrize("model_type", ["gpt2", "mixtral"])
def test_tensor_table_gives_the_models_target_shapes(bases, saved, model_type):
    """What the registry knows of a base (its tensor table) gives every target's [out, in] shape, so
    a fetch in PEFT format builds the same adapter as an export from the model."""
    infos = {}
    for file in saved[model_type].glob("*.safetensors"):
        infos.update(read_safetensors_header(file)[0])
    table = [[t.name, list(t.shape), t.dtype] for t in infos.values()]
    sources = weight_sources(find_architecture({"model_type": model_type}), table)
    from_table = {n: s.shape for n, s in sources.items()}
    from_model = target_shapes(bases[model_type])
    assert {n: from_table.get(n) for n in from_model} == from_model


@pytest.mark.parametrize("model_type", ["gpt2", "mixtral"])
def test_cli_export_of_conv1d_and_expert_patches(bases, saved, tmp_path, model_type):
    from click.testing import CliRunner
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from cli.patchfile import export_command
    from trainer.patch.io import load_patch, save_patch

    spec = {
        "gpt2": {f"{GPT2}.0.attn.c_attn": ("columns", 3), f"{GPT2}.1.attn.c_proj": ("rows", 2)},
        "mixtral": {f"{EXP1}.down_proj.2": ("columns", 3), f"{EXP1}.gate_up_proj.1": ("rows", 2)},
    }[model_type]
    patch_file = save_patch(_random_patch(bases[model_type], spec), tmp_path / "patch.safetensors")
    model_dir = saved[model_type]
    result = CliRunner().invoke(
        export_command,
        [str(patch_file), "--model", str(model_dir), "--format", "peft", "-o", str(tmp_path / "a")],
    )
    assert result.exit_code == 0, result.output

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with apply_patch(model, load_patch(patch_file)):
        expected = _logits(model)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), tmp_path / "a")
    assert (_logits(peft_model) - expected).abs().max() <= 1e-5


def test_scale_on_an_expert_has_no_peft_form(bases, tmp_path):
    patch = _random_patch(bases["mixtral"], {f"{EXP0}.down_proj.1": ("scale", 0)})
    with pytest.raises(ConfigError, match=r"down_proj\.1.*MoE expert.*--format merged") as caught:
        export_peft(patch, tmp_path / "adapter", "mixtral")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "adapter").exists()


def test_target_parameters_other_than_experts_are_refused(bases, tmp_path):
    from peft import LoraConfig

    config = LoraConfig(r=2, target_modules=[], target_parameters=["model.layers.0.self_attn.q_proj.weight"])
    adapter, _ = _peft_made(bases, "mixtral", config, tmp_path)
    with pytest.raises(ConfigError, match=r"q_proj\.weight.*target_modules"):
        import_peft(adapter)


# --- propulsion on MoE experts ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def propulsion_mixtral(bases, tiny_tokenizer):
    """Propulsion with its default targets on Mixtral, trained a few steps and not cleaned up."""
    from tests.trainer.conftest import corpus_rows
    from trainer.data import as_rows, encode_rows, pad_token_id
    from trainer.loop import TrainArgs, optimize
    from trainer.methods import get_method, parse_overrides

    model = _copy(bases, "mixtral")
    experts = model.get_submodule(EXP0)
    originals = {n: p for n, p in experts.named_parameters(recurse=False)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method, config = get_method("propulsion"), parse_overrides("propulsion")
    prepared = method.prepare(model, config)
    initial = {n: p.detach().clone() for n, p in prepared.params.items()}
    examples = encode_rows(tiny_tokenizer, as_rows(corpus_rows(8)), 64)
    args = TrainArgs(steps=3, batch_size=8, max_length=64, schedule="constant")
    optimize(prepared.model, prepared.params, examples, args, lr=1e-2, pad_id=pad_token_id(tiny_tokenizer))
    return method, config, prepared, initial, before, originals


def test_propulsion_trains_expert_scales(propulsion_mixtral):
    _, _, prepared, initial, _, _ = propulsion_mixtral
    assert all("propulsion_" in n for n in prepared.params)
    expert_z = {n: p for n, p in prepared.params.items() if ".experts." in n}
    assert len(expert_z) == 4  # 2 layers x (gate_up_proj, down_proj)
    assert all(p.shape == (4, p.shape[1]) and p.dtype == torch.float32 for p in expert_z.values())
    assert all(not torch.equal(p, initial[n]) for n, p in expert_z.items())
    trainable = {n for n, p in prepared.model.named_parameters() if p.requires_grad}
    assert trainable == set(prepared.params)


def test_propulsion_scales_each_expert_parameter_once_per_forward(propulsion_mixtral):
    """Eager experts index their parameter once per routed expert; the scaled parameter is still
    computed once per forward, and both implementations agree."""
    from trainer.methods.propulsion import PropulsionExperts

    prepared = propulsion_mixtral[2]
    config = prepared.model.config
    default = config._experts_implementation
    scales = [m for m in prepared.model.modules() if isinstance(m, PropulsionExperts)]
    calls: list[int] = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in scales]
    logits = {}
    try:
        for implementation in ("grouped_mm", "eager"):
            config._experts_implementation = implementation
            calls.clear()
            logits[implementation] = _logits(prepared.model)
            assert len(calls) == len(scales) == 4, implementation
    finally:
        config._experts_implementation = default
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(logits["eager"], logits["grouped_mm"], atol=1e-5, rtol=0)


def test_propulsion_patch_on_experts_reproduces_the_trained_model(bases, propulsion_mixtral, tmp_path):
    method, config, prepared, *_ = propulsion_mixtral
    live = _logits(prepared.model)
    patch = method.extract_patch(prepared, config)
    experts = {n for n in patch.deltas if ".experts." in n}
    assert experts == {
        f"model.layers.{layer}.mlp.experts.{p}.{e}"
        for layer in (0, 1)
        for p in ("gate_up_proj", "down_proj")
        for e in range(4)
    }
    assert all(isinstance(d, Scale) and d.s.dtype == torch.float32 for d in patch.deltas.values())
    assert (live - _logits(bases["mixtral"])).abs().max() > 1e-3
    assert (_applied_logits(bases, "mixtral", patch) - live).abs().max() <= 1e-5
    with pytest.raises(ConfigError, match="--format merged"):
        export_peft(patch, tmp_path / "adapter", "mixtral")


def test_propulsion_cleanup_restores_experts_bit_for_bit(propulsion_mixtral):
    method, _, prepared, _, before, originals = propulsion_mixtral
    model = method.cleanup(prepared)
    experts = model.get_submodule(EXP0)
    assert not hasattr(experts, "parametrizations") and "forward" not in vars(experts)
    assert type(experts).__name__ == "MixtralExperts"  # parametrize's generated subclass is gone
    assert all(getattr(experts, n) is p for n, p in originals.items())  # the very same Parameters
    now = dict(model.named_parameters())
    assert set(now) == set(before)
    assert all(torch.equal(now[n], v) for n, v in before.items())


@pytest.mark.parametrize("model_type", ["qwen2_moe", "qwen3_moe"])
def test_propulsion_default_targets_work_on_moe_models(model_type):
    from trainer.methods import get_method, parse_overrides

    model = zoo.build(model_type)
    base = _logits(model)
    method, config = get_method("propulsion"), parse_overrides("propulsion")
    prepared = method.prepare(model, config)
    assert torch.equal(_logits(prepared.model), base)  # z = 1 at init
    patch = method.extract_patch(prepared, config)
    assert any(n.startswith(f"{EXP0}.gate_up_proj.") for n in patch.deltas)
    method.cleanup(prepared)
    assert torch.equal(_logits(model), base)
