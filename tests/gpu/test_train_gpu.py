"""Training on a CUDA device (the lent GPU machine; deselected where there is none): a bf16 base
with fp32 trainable tensors, gradient checkpointing and a token budget, and the peak memory and
throughput the job reports."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.conftest import corpus_rows
from trainer.loop import TrainArgs, train
from trainer.methods import get_method, parse_overrides
from trainer.tiny import build_tokenizer

pytestmark = pytest.mark.gpu


def _model(layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=512, hidden_size=1024, intermediate_size=4096, num_hidden_layers=layers,
        num_attention_heads=16, num_key_value_heads=4,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device("cuda"):
        return LlamaForCausalLM(config).to(torch.bfloat16)


@pytest.mark.parametrize("method", ["lora", "s2ft", "propulsion", "full"])
def test_bf16_training_on_cuda_reports_memory_and_throughput(method: str) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = TrainArgs(steps=3, batch_size=4, max_length=256, device="cuda", gradient_checkpointing=True)
    result = train(
        model,
        build_tokenizer(512),
        corpus_rows(16, chars=800),
        get_method(method),
        parse_overrides(method),
        args,
    )
    assert result.peak_gpu_bytes and result.tokens_per_s > 0 and result.gradient_checkpointing
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the base is back, bf16


def test_checkpointing_and_a_token_budget_lower_peak_memory() -> None:
    rows = corpus_rows(16, chars=4000)
    peaks = {}
    for label, extra in {
        "plain": {},
        "bounded": {"gradient_checkpointing": True, "max_tokens_per_batch": 1024},
    }.items():
        args = TrainArgs(steps=2, batch_size=8, max_length=1024, device="cuda", **extra)
        result = train(
            _model(8), build_tokenizer(512), rows, get_method("lora"), parse_overrides("lora"), args
        )
        peaks[label] = result.peak_gpu_bytes
    assert peaks["bounded"] < 0.7 * peaks["plain"], peaks
