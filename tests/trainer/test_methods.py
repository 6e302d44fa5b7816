"""One matrix over every training method: what trains, what the patch reproduces, and exports."""

from __future__ import annotations

import pytest
import torch

from trainer.data import as_rows, encode_rows, pad_token_id
from trainer.evaluate import evaluate
from trainer.loop import TrainArgs, optimize
from trainer.methods import get_method, parse_overrides
from trainer.tiny import build_model

METHODS = ["lora", "s2ft", "propulsion", "full"]
ADAPTERS = ["lora", "s2ft", "propulsion"]  # the methods with a PEFT export and an identity init
LR = {"lora": 1e-2, "s2ft": 1e-2, "propulsion": 1e-2, "full": 2e-3}
PATCH_KIND = {"lora": {"lowrank"}, "s2ft": {"columns"}, "propulsion": {"scale"}, "full": {"dense"}}


def _train(name, model, tokenizer, rows, steps=6):
    """Prepare and optimise without cleanup, so the live trained model can be compared with the patch."""
    method, config = get_method(name), parse_overrides(name)
    torch.manual_seed(0)
    prepared = method.prepare(model, config)
    prepared.state["test_initial"] = {n: p.detach().clone() for n, p in prepared.params.items()}
    args = TrainArgs(steps=steps, batch_size=8, max_length=64, schedule="constant")
    examples = encode_rows(tokenizer, as_rows(rows), 64)
    optimize(prepared.model, prepared.params, examples, args, lr=LR[name], pad_id=pad_token_id(tokenizer))
    return method, config, prepared


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture(scope="module")
def trained(tiny_tokenizer):
    """Per method: (patch, logits of the live trained model) on fixed probe ids."""
    from tests.trainer.conftest import corpus_rows

    ids = torch.randint(3, 512, (2, 12), generator=torch.Generator().manual_seed(1))
    out = {}
    for name in METHODS:
        method, config, prepared = _train(name, build_model(), tiny_tokenizer, corpus_rows(8))
        live = _logits(prepared.model, ids)
        out[name] = (method.extract_patch(prepared, config), live, ids)
    return out


@pytest.mark.parametrize("name", METHODS)
def test_only_the_methods_parameters_train(name, tiny_tokenizer, train_rows):
    model = build_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method, _, prepared = _train(name, model, tiny_tokenizer, train_rows, steps=2)
    trainable = {n for n, p in prepared.model.named_parameters() if p.requires_grad}
    assert trainable == set(prepared.params)
    prefix = {"lora": "lora_", "s2ft": "s2ft_delta", "propulsion": "propulsion_z", "full": "_proj.weight"}[
        name
    ]
    assert all(prefix in n for n in trainable)
    initial = prepared.state["test_initial"]
    assert all(not torch.equal(p, initial[n]) for n, p in prepared.params.items())  # each one moved
    method.cleanup(prepared)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set()  # cleanup hands back the base, bit for bit, whatever trained


@pytest.mark.parametrize("name", ADAPTERS)
def test_output_equals_the_base_at_init(name, input_ids):
    model = build_model()
    base = _logits(model, input_ids)
    method, config = get_method(name), parse_overrides(name)
    prepared = method.prepare(model, config)
    assert torch.equal(_logits(prepared.model, input_ids), base)
    method.cleanup(prepared)


@pytest.mark.parametrize("name", METHODS)
def test_a_few_steps_lower_the_training_loss(name, tiny_tokenizer, train_rows):
    model = build_model()
    start = evaluate(model, tiny_tokenizer, train_rows, max_length=64).loss
    *_, prepared = _train(name, model, tiny_tokenizer, train_rows, steps=8)
    trained_loss = evaluate(prepared.model, tiny_tokenizer, train_rows, max_length=64).loss
    assert trained_loss < start - 0.05, (start, trained_loss)


@pytest.mark.parametrize("name", METHODS)
def test_patch_reproduces_the_trained_model(name, trained):
    from trainer.patch.apply import apply_patch

    patch, live, ids = trained[name]
    assert {d.kind for d in patch.deltas.values()} == PATCH_KIND[name]
    assert patch.method == name and patch.method_config == parse_overrides(name).to_dict()
    model = build_model()
    base = _logits(model, ids)
    with apply_patch(model, patch):
        patched = _logits(model, ids)
    assert (patched - base).abs().max() > 1e-3  # the patch does something
    torch.testing.assert_close(patched, live, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", METHODS)
def test_apply_then_revert_restores_every_weight_bit_for_bit(name, trained):
    from trainer.patch.apply import apply_patch

    patch = trained[name][0]
    model = build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    handle = apply_patch(model, patch)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    handle.revert()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ADAPTERS)
def test_peft_export_loads_in_peft_with_the_same_logits(name, trained, tmp_path):
    from peft import PeftModel

    from trainer.patch.apply import apply_patch
    from trainer.patch.model_shapes import target_shapes
    from trainer.patch.peft_export import export_peft

    patch, _, ids = trained[name]
    ours = build_model()
    out = export_peft(patch, tmp_path / "adapter", "tiny-base", "v1", module_shapes=target_shapes(ours))
    with apply_patch(ours, patch):
        expected = _logits(ours, ids)
    peft_model = PeftModel.from_pretrained(build_model(), out)
    got = _logits(peft_model, ids)
    assert (got - _logits(build_model(), ids)).abs().max() > 1e-3
    assert (got - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("name", METHODS)
def test_merged_export_loads_in_transformers_with_the_same_logits(name, trained, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from trainer.patch.merge import merge_into_directory

    patch, live, ids = trained[name]
    merged = merge_into_directory(tiny_model_dir, patch, tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    assert (_logits(model, ids) - live).abs().max() <= 1e-5


def test_lora_patch_scale_is_alpha_over_r(trained):
    patch = trained["lora"][0]
    delta = next(iter(patch.deltas.values()))
    assert delta.scale == 32.0 / 16 and delta.A.shape[0] == 16
    assert len(patch.deltas) == 2 * 7  # all seven projections in both layers


def test_propulsion_keeps_z_in_fp32_and_stores_z_to_the_k(tiny_tokenizer, train_rows):
    model = build_model().to(torch.bfloat16)
    method, config = get_method("propulsion"), parse_overrides("propulsion", ["degree=15"])
    prepared = method.prepare(model, config)
    assert all(p.dtype == torch.float32 for p in prepared.params.values())
    module = prepared.state["wrapped"]["model.layers.0.mlp.down_proj"]
    with torch.no_grad():
        module.propulsion_z.fill_(1.0 + 2**-7)  # one bf16 ULP above 1: must not round back to 1
    patch = method.extract_patch(prepared, config)
    s = patch.deltas["model.layers.0.mlp.down_proj"].s
    assert s.dtype == torch.float32
    torch.testing.assert_close(s, torch.full_like(s, (1.0 + 2**-7) ** 15))
    method.cleanup(prepared)
    assert not any("propulsion" in n for n, _ in model.named_parameters())


def test_propulsion_refuses_embeddings():
    from core.errors import ConfigError

    config = parse_overrides("propulsion", ["target_modules=embed_tokens"])
    with pytest.raises(ConfigError, match="embeddings"):
        get_method("propulsion").prepare(build_model(), config)
