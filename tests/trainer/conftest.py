"""Shared fixtures for trainer tests. Several engineers add fixtures here: append, don't reorder."""

from __future__ import annotations

from pathlib import Path

import pytest

# --- patch format fixtures (tests/trainer/test_patch_*.py) ------------------------------------------


def make_random_patch(model, spec: dict[str, str], seed: int = 0, ranks: dict[str, int] | None = None):
    """A Patch with random, clearly non-zero deltas of the given kind per target of `model` (a
    Linear, a Conv1D or an expert slice, shaped [out, in] as `trainer.patch.targets` sees it).

    Magnitudes are large enough to move the logits visibly, so a test comparing two ways of applying
    the patch cannot pass by both being no-ops.
    """
    import torch

    from trainer.patch.targets import all_targets
    from trainer.patch.types import Columns, Dense, LowRank, Patch, Rows, Scale

    targets = all_targets(model)
    gen = torch.Generator().manual_seed(seed)
    deltas = {}
    for name, kind in spec.items():
        out_f, in_f = targets[name].shape
        rank = (ranks or {}).get(name, 4)
        if kind == "lowrank":
            a = torch.randn(rank, in_f, generator=gen) * 0.3
            b = torch.randn(out_f, rank, generator=gen) * 0.3
            deltas[name] = LowRank(A=a, B=b, scale=2.0)
        elif kind == "columns":
            idx = torch.randperm(in_f, generator=gen)[:rank]
            deltas[name] = Columns(idx=idx, values=torch.randn(out_f, rank, generator=gen) * 0.3)
        elif kind == "rows":
            idx = torch.randperm(out_f, generator=gen)[:rank]
            deltas[name] = Rows(idx=idx, values=torch.randn(rank, in_f, generator=gen) * 0.3)
        elif kind == "scale":
            deltas[name] = Scale(s=1.0 + 0.3 * torch.randn(out_f, generator=gen))
        elif kind == "dense":
            deltas[name] = Dense(delta=torch.randn(out_f, in_f, generator=gen) * 0.05)
        else:
            raise AssertionError(kind)
    return Patch(method="test", method_config={"seed": seed}, deltas=deltas)


@pytest.fixture
def tiny_model():
    """A fresh tiny Llama in fp32, eval mode."""
    from trainer.tiny import build_model

    return build_model()


@pytest.fixture
def input_ids():
    import torch

    return torch.randint(3, 512, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def random_patch():
    """`random_patch(model, {module: kind}, seed=0, ranks=None) -> Patch` (see make_random_patch)."""
    return make_random_patch


# --- training fixtures (tests/trainer/test_methods.py, test_loop.py, test_alewr.py, ...) -------------


def corpus_rows(n: int = 8, start: int = 0, chars: int = 160) -> list[dict[str, str]]:
    """`n` text rows of real English (pydoc topics), cut to `chars` characters to keep steps fast."""
    from trainer.tiny import corpus_paragraphs

    return [{"text": p[:chars]} for p in corpus_paragraphs()[start : start + n]]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from trainer.tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture
def train_rows() -> list[dict[str, str]]:
    """Eight short domain rows; the same every time."""
    return corpus_rows(8)


@pytest.fixture
def write_jsonl(tmp_path):
    """`write_jsonl(rows, name="data.jsonl") -> Path` of a JSONL file in tmp_path."""
    import json

    def write(rows, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    return write


# --- memory tests (test_merge.py, test_port_stats.py) ------------------------------------------------


@pytest.fixture(scope="session")
def large_checkpoints(tmp_path_factory: pytest.TempPathFactory):
    """(A, B): a 235 MB bf16 Llama in 40 MB shards and an evolved copy of it (A plus noise), built
    once per session: big enough that holding a whole checkpoint breaks a streaming bound."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("large")
    config = LlamaConfig(
        vocab_size=8192, hidden_size=1024, intermediate_size=4096, num_hidden_layers=6, num_attention_heads=8
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(root / "a", max_shard_size="40MB")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(root / "b", max_shard_size="40MB")
    return root / "a", root / "b"


def measure_peak(*argv: str) -> dict[str, float]:
    """`python -m bench.rss ARGV...` in a fresh process: peak anon/file RSS increases and seconds."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "bench.rss", *argv], capture_output=True, text=True, check=True, cwd=root
    )
    return json.loads(done.stdout)
