"""Training at real sizes on one GPU: Llama-3.2-1B and Llama-3.1-8B shapes, random bf16 weights
(nothing downloaded), each method for a few steps; prints peak GPU memory and tokens/s per run.

    python bench/train_gpu.py --shape 1b --methods lora,s2ft --steps 5 --seq 2048 --batch-size 4
    python bench/train_gpu.py --shape 8b --methods lora --max-tokens-per-batch 8192

Needs a CUDA device (the lent GPU machine); results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import time

_COMMON = {"num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256}
SHAPES = {  # the published configs' sizes (meta-llama/Llama-3.2-1B, Llama-3.1-8B)
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "tie_word_embeddings": True, **_COMMON},
    "8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "tie_word_embeddings": False, **_COMMON},
}  # fmt: skip


def build(shape: str):  # -> LlamaForCausalLM on CUDA in bf16
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=8192)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    return model.eval()


def rows(n: int, chars: int) -> list[dict[str, str]]:
    from trainer.tiny import corpus_paragraphs

    text = " ".join(corpus_paragraphs())
    return [{"text": text[i * chars : (i + 1) * chars]} for i in range(n)]


def run(shape: str, method: str, args: argparse.Namespace) -> dict[str, object]:
    import torch

    from trainer.loop import TrainArgs, train
    from trainer.methods import get_method, parse_overrides
    from trainer.tiny import build_tokenizer

    model = build(shape)
    torch.cuda.synchronize()
    started = time.perf_counter()
    result = train(
        model,
        build_tokenizer(512),
        rows(args.batch_size * args.steps, chars=args.seq * 4),
        get_method(method),
        parse_overrides(method),
        TrainArgs(
            steps=args.steps,
            batch_size=args.batch_size,
            max_length=args.seq,
            device="cuda",
            max_tokens_per_batch=args.max_tokens_per_batch,
            gradient_checkpointing=None if args.checkpointing == "auto" else args.checkpointing == "on",
        ),
    )
    return {
        "shape": shape,
        "method": method,
        "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 2),
        "steps": result.steps,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "peak_gpu_gb": round((result.peak_gpu_bytes or 0) / 2**30, 2),
        "gradient_checkpointing": result.gradient_checkpointing,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    parser.add_argument("--methods", default="lora,s2ft,propulsion")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-tokens-per-batch", type=int, default=None)
    parser.add_argument("--checkpointing", choices=("auto", "on", "off"), default="auto")
    args = parser.parse_args()
    for method in args.methods.split(","):
        print(json.dumps(run(args.shape, method, args)), flush=True)


if __name__ == "__main__":
    main()
