"""The architecture catalog: README's table is generated from it, names map both ways, layouts
locate heads where the model code puts them."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.arch import find_architecture, require_architecture, to_runtime, to_saved, weight_sources
from core.arch.catalog import ARCHITECTURES, BY_MODEL_TYPE
from core.arch.spec import GROUPED, Dims, Projection, dims_of, head_rows
from core.arch.table import BEGIN, END, markdown
from core.errors import Unsupported

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_the_generated_one() -> None:
    text = README.read_text()
    assert BEGIN in text and END in text
    assert text.split(BEGIN, 1)[1].split(END, 1)[0].strip() == markdown().strip()


def test_each_model_type_belongs_to_one_architecture() -> None:
    types = [t for a in ARCHITECTURES for t in a.model_types]
    assert len(types) == len(set(types)) == len(BY_MODEL_TYPE)


def test_unknown_model_type_names_what_to_set() -> None:
    assert find_architecture({"model_type": "mamba"}) is None
    with pytest.raises(Unsupported, match=r"'mamba'.*--set target_modules=.*known: .*llama"):
        require_architecture({"model_type": "mamba"}, "default targets")


def test_gemma3_names_map_between_checkpoint_and_runtime() -> None:
    arch = BY_MODEL_TYPE["gemma3"]
    runtime = "model.language_model.layers.0.self_attn.q_proj"
    assert to_saved(arch, runtime) == "language_model.model.layers.0.self_attn.q_proj"
    assert to_runtime(arch, to_saved(arch, runtime)) == runtime
    assert to_saved(arch, "lm_head") == "language_model.lm_head"


def test_weight_sources_transpose_conv1d_stack_experts_and_find_a_tied_head() -> None:
    gpt2 = [
        ["transformer.h.0.attn.c_attn.weight", [64, 192], "F32"],
        ["transformer.wte.weight", [512, 64], "F32"],
    ]
    sources = weight_sources(BY_MODEL_TYPE["gpt2"], gpt2)
    assert (
        sources["transformer.h.0.attn.c_attn"].shape == (192, 64)
        and sources["transformer.h.0.attn.c_attn"].transposed
    )
    assert sources["lm_head"].tied and sources["lm_head"].pieces == ("transformer.wte.weight",)
    mixtral = [
        [
            f"model.layers.0.block_sparse_moe.experts.{e}.{w}.weight",
            [32, 64] if w != "w2" else [64, 32],
            "BF16",
        ]
        for e in range(2)
        for w in ("w1", "w2", "w3")
    ]
    sources = weight_sources(BY_MODEL_TYPE["mixtral"], mixtral)
    gate_up = sources["model.layers.0.mlp.experts.gate_up_proj.1"]
    assert gate_up.shape == (64, 64) and gate_up.pieces == (
        "model.layers.0.block_sparse_moe.experts.1.w1.weight",
        "model.layers.0.block_sparse_moe.experts.1.w3.weight",
    )
    assert sources["model.layers.0.mlp.experts.down_proj.0"].shape == (64, 32)
    assert not any("block_sparse_moe" in name for name in sources)


def test_falcon_dims_follow_its_three_attention_forms() -> None:
    base = {"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
    assert dims_of(base).kv_heads == 1  # multi_query defaults to true (Falcon-7B)
    assert dims_of({**base, "multi_query": False}).kv_heads == 4
    assert dims_of({**base, "new_decoder_architecture": True, "num_kv_heads": 2}).kv_heads == 2


def test_v_rows_inside_fused_projections() -> None:
    dims = Dims(layers=1, hidden=64, heads=4, kv_heads=2, head_dim=16)
    concat = Projection("self_attn.qkv_proj", ("q", "k", "v"))
    assert head_rows(concat, "v", dims, 1) == range(64 + 32 + 16, 64 + 32 + 32)  # after q (4 heads) and k (2)
    grouped = Projection("attention.query_key_value", ("q", "k", "v"), layout=GROUPED)
    # [kv group, 2 q heads + k + v, 16]: group 1's v is the 4th slot of the second group of 4
    assert head_rows(grouped, "v", dims, 1) == range((4 + 3) * 16, (4 + 4) * 16)
    neox = Dims(layers=1, hidden=64, heads=4, kv_heads=4, head_dim=16)  # [heads, 3, head_dim]
    assert head_rows(grouped, "v", neox, 2) == range((2 * 3 + 2) * 16, (2 * 3 + 3) * 16)
