"""S²FT: selection (pooled, seeded, GQA-aware), sliced backprop, and what it saves for backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.methods import get_method, parse_overrides
from trainer.methods.s2ft.layers import S2ColumnsLinear
from trainer.methods.s2ft.selection import model_shape
from trainer.tiny import TinyConfig, build_model

GQA = TinyConfig(num_attention_heads=4, num_key_value_heads=2)  # head_dim 16, 2 heads per KV head


def _prepare(overrides, config=GQA):
    model = build_model(config)
    method, cfg = get_method("s2ft"), parse_overrides("s2ft", overrides)
    return model, method, cfg, method.prepare(model, cfg)


def test_default_budget_trains_at_least_one_head_and_one_channel():
    model, method, cfg, prepared = _prepare([])
    patch = method.extract_patch(prepared, cfg)
    o = [d for n, d in patch.deltas.items() if n.endswith("o_proj")]
    down = [d for n, d in patch.deltas.items() if n.endswith("down_proj")]
    assert sum(len(d.idx) for d in o) == 16  # exactly one head of head_dim columns
    total = sum(p.numel() for p in model.parameters())
    assert sum(len(d.idx) for d in down) == round(0.005 * total / 64)  # half the 1% budget
    assert all(d.kind == "columns" for d in patch.deltas.values())


def test_selection_is_pooled_seeded_and_head_aligned_on_gqa():
    overrides = ["o_ratio=0.5", "v_ratio=0.5", "d_ratio=0.1", "u_ratio=0.1"]
    _, method, cfg, prepared = _prepare([*overrides, "seed=3"])
    patch = method.extract_patch(prepared, cfg)
    again = method.extract_patch(_prepare([*overrides, "seed=3"])[3], cfg)
    other = method.extract_patch(_prepare([*overrides, "seed=4"])[3], cfg)
    key = lambda p: {n: d.idx.tolist() for n, d in p.deltas.items()}  # noqa: E731
    assert key(patch) == key(again) and key(patch) != key(other)
    shape = model_shape(build_model(GQA))
    by_kind = {
        k: [d for n, d in patch.deltas.items() if n.endswith(k)] for k in ("o_proj", "v_proj", "down_proj")
    }
    assert sum(len(d.idx) for d in by_kind["o_proj"]) == 4 * 16  # 0.5 of 2 layers x 4 heads
    assert sum(len(d.idx) for d in by_kind["v_proj"]) == 2 * 16  # 0.5 of 2 layers x 2 KV heads
    for d in by_kind["v_proj"]:
        assert (
            d.kind == "rows" and int(d.idx.max()) < shape.dims.kv_heads * shape.dims.head_dim
        )  # within v's 32 rows
        blocks = d.idx.view(-1, 16)
        assert torch.equal(blocks - blocks[:, :1], torch.arange(16).expand_as(blocks))  # whole heads
    assert sum(len(d.idx) for d in by_kind["down_proj"]) == round(0.1 * 2 * 128)


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_trains_with_any_kv_grouping(kv_heads, tiny_tokenizer, train_rows):
    from trainer.loop import TrainArgs, train

    config = TinyConfig(num_attention_heads=4, num_key_value_heads=kv_heads)
    cfg = parse_overrides("s2ft", ["o_ratio=0.25", "v_ratio=0.5", "d_ratio=0.05"])
    result = train(
        build_model(config), tiny_tokenizer, train_rows, get_method("s2ft"), cfg, TrainArgs(steps=2)
    )
    kinds = {n.rsplit(".", 1)[1]: d.kind for n, d in result.patch.deltas.items()}
    assert kinds["v_proj"] == "rows" and kinds["o_proj"] == "columns"
    assert all(float(d.values.abs().sum()) > 0 for d in result.patch.deltas.values())


def _grads(sliced: bool, x: torch.Tensor, base: nn.Linear, idx: torch.Tensor):
    layer = S2ColumnsLinear(base, idx, base.out_features, sliced=sliced)
    with torch.no_grad():
        layer.s2ft_delta.normal_(generator=torch.Generator().manual_seed(0))
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach(), x.grad, layer.s2ft_delta.grad


def test_sliced_function_matches_stock_autograd():
    torch.manual_seed(0)
    base = nn.Linear(24, 8, bias=True).requires_grad_(False)
    x, idx = torch.randn(3, 5, 24), torch.tensor([2, 7, 11, 20])
    for got, want in zip(_grads(True, x, base, idx), _grads(False, x, base, idx), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def _saved_activation_numel(module: nn.Module, x: torch.Tensor) -> int:
    """Elements autograd keeps for backward in one forward, parameters and buffers excluded."""
    owned = {t.data_ptr() for t in [*module.parameters(), *module.buffers()]}
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        module(x)
    return sum(t.numel() for t in saved if t.data_ptr() not in owned)


@pytest.mark.parametrize("backprop", ["sliced", "autograd"])
def test_columns_keep_only_the_sliced_activation(backprop):
    torch.manual_seed(0)
    base = nn.Linear(256, 64, bias=False)
    x = torch.randn(4, 32, 256, requires_grad=True)
    idx = torch.arange(0, 256, 32)  # 8 of 256 input columns
    full = _saved_activation_numel(base.requires_grad_(True), x)  # full fine-tuning keeps all of x
    s2 = _saved_activation_numel(
        S2ColumnsLinear(base.requires_grad_(False), idx, base.out_features, backprop == "sliced"), x
    )
    assert full == x.numel()
    assert s2 <= 4 * 32 * len(idx) + len(idx)  # x[..., idx] (plus, for autograd, the tiny index)


def test_whole_model_saves_less_than_full_fine_tuning(tiny_tokenizer):
    ids = torch.randint(3, 512, (4, 64), generator=torch.Generator().manual_seed(0))

    def saved_bytes(name: str) -> int:
        model = build_model(TinyConfig(hidden_size=128, intermediate_size=512))
        prepared = get_method(name).prepare(model, parse_overrides(name))
        owned = {p.data_ptr() for p in prepared.model.parameters()}
        total = 0

        def pack(t):
            nonlocal total
            total += 0 if t.data_ptr() in owned else t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            prepared.model(input_ids=ids).logits.sum()
        return total

    assert saved_bytes("s2ft") < saved_bytes("full")
    assert saved_bytes("s2ft") < saved_bytes("lora")
