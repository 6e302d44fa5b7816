"""Tiny real Llama models and tokenizers, built locally for tests, the demo and the benchmarks.

Nothing is downloaded: the tokenizer is a byte-level BPE trained with `tokenizers` on the pydoc
topic texts that ship with Python, and the model is a small `LlamaConfig` with seeded weights.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")


@functools.cache
def corpus_paragraphs() -> tuple[str, ...]:
    """Real English text that ships with Python, split into paragraphs, in a fixed order."""
    from pydoc_data.topics import topics

    paragraphs: list[str] = []
    for key in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[key]):
            text = " ".join(block.split())
            if len(text) >= 40:
                paragraphs.append(text)
    return tuple(paragraphs)


@dataclass(frozen=True)
class TinyConfig:
    """Shape of a tiny Llama. Defaults give a 2-layer GQA model that runs in milliseconds on CPU."""

    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 256
    tie_word_embeddings: bool = False


@functools.cache
def _tokenizer_json(vocab_size: int) -> str:
    return bpe_json(corpus_paragraphs(), vocab_size)


def bpe_json(texts: Iterable[str], vocab_size: int) -> str:
    """A byte-level BPE of `vocab_size` tokens trained on `texts`, as tokenizer JSON (deterministic
    for the same texts in the same order)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return tok.to_str()


def build_tokenizer(vocab_size: int = 512):  # -> transformers.PreTrainedTokenizerFast
    """A byte-level BPE tokenizer of `vocab_size` tokens (cached per size: training takes ~1 s)."""
    return tokenizer_from_json(_tokenizer_json(vocab_size))


def tokenizer_from_json(json_text: str):  # -> transformers.PreTrainedTokenizerFast
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json_text),
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )


def build_model(config: TinyConfig = TinyConfig(), seed: int = 0):  # -> transformers.LlamaForCausalLM
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer_ids = {name: i for i, name in enumerate(SPECIAL_TOKENS)}
    llama_config = LlamaConfig(
        **asdict(config),
        pad_token_id=tokenizer_ids["<pad>"],
        bos_token_id=tokenizer_ids["<s>"],
        eos_token_id=tokenizer_ids["</s>"],
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config).eval()


def save_tiny_model(directory: Path | str, config: TinyConfig = TinyConfig(), seed: int = 0) -> Path:
    """Build and save a tiny model plus its tokenizer with `save_pretrained` (safetensors)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a tiny model saves in milliseconds; no bar needed
    directory = Path(directory)
    model = build_model(config, seed)
    model.save_pretrained(directory)
    build_tokenizer(config.vocab_size).save_pretrained(directory)
    return directory
