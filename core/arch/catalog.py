"""The architectures patchreg supports, one entry per family of `model_type`s.

Learned from the model code in transformers 5 (module names, fused layouts, MoE parameters) and
from what PEFT and vLLM map per model (`packed_modules_mapping`); written here as data. To add an
architecture, add an entry: see README, "Add an architecture".
"""

from __future__ import annotations

from core.arch.spec import CONV1D, EXPERTS, GROUPED, Architecture, Projection

ATTN = (
    Projection("self_attn.q_proj", ("q",)),
    Projection("self_attn.k_proj", ("k",)),
    Projection("self_attn.v_proj", ("v",)),
    Projection("self_attn.o_proj", ("o",)),
)
GATED_MLP = (
    Projection("mlp.gate_proj", ("gate",)),
    Projection("mlp.up_proj", ("up",)),
    Projection("mlp.down_proj", ("down",)),
)


def _experts(saved_gate_up: tuple[str, ...], saved_down: tuple[str, ...]) -> tuple[Projection, ...]:
    return (
        Projection("mlp.experts.gate_up_proj", ("gate", "up"), EXPERTS, saved=saved_gate_up),
        Projection("mlp.experts.down_proj", ("down",), EXPERTS, saved=saved_down),
    )


QWEN_EXPERTS = _experts(
    ("mlp.experts.{e}.gate_proj", "mlp.experts.{e}.up_proj"), ("mlp.experts.{e}.down_proj",)
)

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        "Llama",
        ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"),
        "model.layers",
        ATTN + GATED_MLP,
        example="meta-llama/Llama-3.1-8B, Mistral-7B, Qwen2.5/Qwen3, Gemma 2",
    ),
    Architecture(
        "Gemma 3 (multimodal)",
        ("gemma3",),
        "model.language_model.layers",
        ATTN + GATED_MLP,
        text_config="text_config",
        renames=(
            ("model.language_model", "language_model.model"),
            ("model.vision_tower", "vision_tower"),
            ("model.multi_modal_projector", "multi_modal_projector"),
            ("lm_head", "language_model.lm_head"),
        ),
        example="google/gemma-3-4b-it (text side; the vision tower is never patched)",
    ),
    Architecture(
        "Phi-3",
        ("phi3",),
        "model.layers",
        (
            Projection("self_attn.qkv_proj", ("q", "k", "v")),
            Projection("self_attn.o_proj", ("o",)),
            Projection("mlp.gate_up_proj", ("gate", "up")),
            Projection("mlp.down_proj", ("down",)),
        ),
        example="microsoft/Phi-3-mini-4k-instruct",
    ),
    Architecture(
        "Phi-2",
        ("phi",),
        "model.layers",
        (
            Projection("self_attn.q_proj", ("q",)),
            Projection("self_attn.k_proj", ("k",)),
            Projection("self_attn.v_proj", ("v",)),
            Projection("self_attn.dense", ("o",)),
            Projection("mlp.fc1", ("up",)),
            Projection("mlp.fc2", ("down",)),
        ),
        example="microsoft/phi-2",
    ),
    Architecture(
        "GPT-2",
        ("gpt2",),
        "transformer.h",
        (
            Projection("attn.c_attn", ("q", "k", "v"), CONV1D),
            Projection("attn.c_proj", ("o",), CONV1D),
            Projection("mlp.c_fc", ("up",), CONV1D),
            Projection("mlp.c_proj", ("down",), CONV1D),
        ),
        example="openai-community/gpt2",
    ),
    Architecture(
        "GPT-NeoX",
        ("gpt_neox",),
        "gpt_neox.layers",
        (
            Projection("attention.query_key_value", ("q", "k", "v"), layout=GROUPED),
            Projection("attention.dense", ("o",)),
            Projection("mlp.dense_h_to_4h", ("up",)),
            Projection("mlp.dense_4h_to_h", ("down",)),
        ),
        renames=(("lm_head", "embed_out"),),
        example="EleutherAI/pythia-1.4b",
    ),
    Architecture(
        "OPT",
        ("opt",),
        "model.decoder.layers",
        (
            Projection("self_attn.q_proj", ("q",)),
            Projection("self_attn.k_proj", ("k",)),
            Projection("self_attn.v_proj", ("v",)),
            Projection("self_attn.out_proj", ("o",)),
            Projection("fc1", ("up",)),
            Projection("fc2", ("down",)),
        ),
        example="facebook/opt-1.3b",
    ),
    Architecture(
        "Falcon",
        ("falcon",),
        "transformer.h",
        (
            # grouped [kv head, q heads of the group + k + v, head_dim] covers all three Falcon forms:
            # multi_query (7B: one KV head), per-head (kv = heads) and new_decoder_architecture (40B).
            Projection("self_attention.query_key_value", ("q", "k", "v"), layout=GROUPED),
            Projection("self_attention.dense", ("o",)),
            Projection("mlp.dense_h_to_4h", ("up",)),
            Projection("mlp.dense_4h_to_h", ("down",)),
        ),
        example="tiiuae/falcon-7b",
    ),
    Architecture(
        "Mixtral",
        ("mixtral",),
        "model.layers",
        ATTN
        + _experts(
            ("block_sparse_moe.experts.{e}.w1", "block_sparse_moe.experts.{e}.w3"),
            ("block_sparse_moe.experts.{e}.w2",),
        ),
        example="mistralai/Mixtral-8x7B-v0.1",
    ),
    Architecture(
        "Qwen2-MoE",
        ("qwen2_moe",),
        "model.layers",
        (
            *ATTN,
            Projection("mlp.shared_expert.gate_proj", ("gate",)),
            Projection("mlp.shared_expert.up_proj", ("up",)),
            Projection("mlp.shared_expert.down_proj", ("down",)),
            *QWEN_EXPERTS,
        ),
        example="Qwen/Qwen1.5-MoE-A2.7B",
    ),
    Architecture(
        "Qwen3-MoE",
        ("qwen3_moe",),
        "model.layers",
        ATTN + QWEN_EXPERTS,
        example="Qwen/Qwen3-30B-A3B",
    ),
)

BY_MODEL_TYPE: dict[str, Architecture] = {t: a for a in ARCHITECTURES for t in a.model_types}
