"""Tiny random models of every architecture in the catalog, built locally (nothing downloaded).

Hidden 64, 2 layers, 4 heads (2 KV heads where the family has GQA), vocabulary 512 to match the
tiny BPE tokenizer. Tests and benchmarks use them to prove each method on each architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.tiny import SPECIAL_TOKENS, build_tokenizer

VOCAB = 512
_IDS: dict[str, Any] = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
_COMMON: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}
_GQA: dict[str, Any] = {"num_key_value_heads": 2}
_HEAD16: dict[str, Any] = {"head_dim": 16}
_MOE: dict[str, Any] = {"num_experts_per_tok": 2, **_GQA}


def _config(model_type: str) -> Any:
    import transformers as tf

    builders: dict[str, Callable[[], Any]] = {
        "llama": lambda: tf.LlamaConfig(**_COMMON, **_GQA, intermediate_size=128),
        "mistral": lambda: tf.MistralConfig(**_COMMON, **_GQA, intermediate_size=128),
        "qwen2": lambda: tf.Qwen2Config(**_COMMON, **_GQA, intermediate_size=128, tie_word_embeddings=True),
        "qwen3": lambda: tf.Qwen3Config(**_COMMON, **_GQA, intermediate_size=128, head_dim=16),
        "gemma2": lambda: tf.Gemma2Config(**_COMMON, **_GQA, intermediate_size=128, head_dim=16),
        "gemma3_text": lambda: tf.Gemma3TextConfig(**_COMMON, **_GQA, intermediate_size=128, head_dim=16),
        "gemma3": _gemma3,
        "phi3": lambda: tf.Phi3Config(**_COMMON, **_GQA, intermediate_size=128),
        "phi": lambda: tf.PhiConfig(**_COMMON, intermediate_size=128),
        "gpt2": lambda: tf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=256),
        "gpt_neox": lambda: tf.GPTNeoXConfig(**_COMMON, intermediate_size=128),
        "opt": lambda: tf.OPTConfig(**_COMMON, ffn_dim=128, word_embed_proj_dim=64),
        "falcon": lambda: tf.FalconConfig(**_COMMON),
        "mixtral": lambda: tf.MixtralConfig(**_COMMON, **_MOE, intermediate_size=64, num_local_experts=4),
        "qwen2_moe": lambda: tf.Qwen2MoeConfig(
            **_COMMON,
            **_MOE,
            intermediate_size=128,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=64,
            num_experts=4,
        ),
        "qwen3_moe": lambda: tf.Qwen3MoeConfig(
            **_COMMON, **_MOE, **_HEAD16, intermediate_size=128, moe_intermediate_size=32, num_experts=4
        ),
    }
    if model_type not in builders:
        raise KeyError(f"no tiny config for model_type {model_type!r}; known: {', '.join(sorted(builders))}")
    config = builders[model_type]()
    for key, value in _IDS.items():
        setattr(config, key, value)
    return config


def _gemma3() -> Any:
    import transformers as tf

    text = tf.Gemma3TextConfig(**_COMMON, **_GQA, intermediate_size=128, head_dim=16, **_IDS)
    vision = tf.SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    return tf.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=16)


MODEL_TYPES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3_text",
    "gemma3",
    "phi3",
    "phi",
    "gpt2",
    "gpt_neox",
    "opt",
    "falcon",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
)


def build(model_type: str, seed: int = 0) -> Any:
    """A tiny random causal LM of `model_type`, in eval mode, fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    config = _config(model_type)
    torch.manual_seed(seed)
    if model_type == "gemma3":
        from transformers import Gemma3ForConditionalGeneration

        return Gemma3ForConditionalGeneration(config).eval()
    return AutoModelForCausalLM.from_config(config).eval()


def save(model_type: str, directory: Path | str, seed: int = 0) -> Path:
    """Build and `save_pretrained` a tiny model of `model_type` with the tiny tokenizer."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    directory = Path(directory)
    build(model_type, seed).save_pretrained(directory)
    tokenizer = build_tokenizer(VOCAB)
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2]
    tokenizer.save_pretrained(directory)
    return directory
