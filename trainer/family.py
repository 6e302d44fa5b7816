"""The tiny model family that tests, the demo and the benchmarks share.

v1 is a tiny Llama pretrained briefly on real English (the pydoc topic texts that ship with
Python); v2 is v1 trained further on more of that text (same shapes: a base-model "release");
v3 has a wider hidden size (a release no patch can port to). The domain is a held-out slice of
the same corpus: its train rows are text, its eval rows are two-choice continuations.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from trainer.tiny import TinyConfig, build_model, build_tokenizer, corpus_paragraphs

PRETRAIN_SHARE = 0.8  # the first 80% of paragraphs are "the internet"; the rest is the domain


@dataclass(frozen=True)
class FamilySpec:
    config: TinyConfig = field(default_factory=TinyConfig)
    v1_steps: int = 60
    v2_steps: int = 40
    seq_len: int = 128
    batch_size: int = 8
    lr: float = 3e-3
    seed: int = 0


@dataclass(frozen=True)
class Family:
    v1: Path
    v2: Path
    v3: Path


def _stream(tokenizer: Any, paragraphs: list[str]) -> list[int]:
    ids: list[int] = []
    for text in paragraphs:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return ids


def pretrain(
    model: Any,
    tokenizer: Any,
    paragraphs: list[str],
    steps: int,
    *,
    seq_len: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> list[float]:
    """Plain causal-LM training of every weight on packed text; returns the loss per step."""
    import torch

    ids = torch.tensor(_stream(tokenizer, paragraphs))
    chunks = ids[: len(ids) // seq_len * seq_len].view(-1, seq_len)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        batch = chunks[torch.randint(len(chunks), (batch_size,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _save(model: Any, tokenizer: Any, directory: Path, note: dict[str, Any]) -> Path:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "patchreg-family.json").write_text(json.dumps(note, indent=2, default=str))
    return directory


def build_family(root: Path | str, spec: FamilySpec | None = None) -> Family:
    """Build v1, v2, v3 under `root` (reused when already built with the same spec)."""
    import torch

    spec = spec or FamilySpec()
    root = Path(root)
    family = Family(root / "v1", root / "v2", root / "v3")
    stamp = json.dumps(asdict(spec), sort_keys=True, default=str)
    built = all((d / "patchreg-family.json").exists() for d in (family.v1, family.v2, family.v3))
    if built and json.loads((family.v1 / "patchreg-family.json").read_text()).get("spec") == stamp:
        return family
    paragraphs = list(corpus_paragraphs())
    cut = int(len(paragraphs) * PRETRAIN_SHARE)
    first, more = paragraphs[: cut // 2], paragraphs[cut // 2 : cut]
    tokenizer = build_tokenizer(spec.config.vocab_size)
    torch.manual_seed(spec.seed)

    v1 = build_model(spec.config, spec.seed)

    def train(model: Any, paragraphs: list[str], steps: int, seed: int) -> list[float]:
        return pretrain(
            model,
            tokenizer,
            paragraphs,
            steps,
            seq_len=spec.seq_len,
            batch_size=spec.batch_size,
            lr=spec.lr,
            seed=seed,
        )

    v1_losses = train(v1, first, spec.v1_steps, spec.seed)
    _save(v1, tokenizer, family.v1, {"spec": stamp, "role": "v1", "losses": v1_losses})
    v2_losses = train(v1, more, spec.v2_steps, spec.seed + 1)  # v1 evolves into v2
    _save(v1, tokenizer, family.v2, {"spec": stamp, "role": "v2 = v1 trained further", "losses": v2_losses})
    wide = replace(spec.config, hidden_size=spec.config.hidden_size + 32)
    v3 = build_model(wide, spec.seed)
    v3_losses = train(v3, first, spec.v1_steps, spec.seed)
    _save(v3, tokenizer, family.v3, {"spec": stamp, "role": "v3 (wider)", "losses": v3_losses})
    return family


def domain_rows(
    n_train: int = 48, n_eval: int = 32, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval) rows for the demo domain: held-out text, and two-choice continuations of it.

    Each eval row gives the opening of a domain paragraph and asks which of two continuations
    follows: its own, or another paragraph's. A patch that learned the domain text prefers the
    right one; the base, which never saw it, guesses.
    """
    paragraphs = list(corpus_paragraphs())
    domain = [p for p in paragraphs[int(len(paragraphs) * PRETRAIN_SHARE) :] if len(p) >= 160]
    return text_and_choice_rows(domain, n_train, n_eval, random.Random(seed))


def text_and_choice_rows(
    paragraphs: list[str], n_train: int, n_eval: int, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train rows (the first `n_train` paragraphs, 400 characters each) and `n_eval` two-choice
    rows over them: which 60 characters follow a paragraph's first 60, its own or another's."""
    train_paras = paragraphs[:n_train]
    train = [{"text": p[:400]} for p in train_paras]
    evals = []
    for i, p in enumerate(train_paras[:n_eval]):
        other = train_paras[(i + 1 + rng.randrange(len(train_paras) - 1)) % len(train_paras)]
        right, wrong = p[60:120], other[60:120]
        choices = [right, wrong] if rng.random() < 0.5 else [wrong, right]
        evals.append({"prompt": p[:60], "choices": choices, "answer": choices.index(right)})
    return train, evals


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
