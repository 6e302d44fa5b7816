"""The testbed family: a Llama of a few million parameters on every English text this machine
ships, with releases that drift further from v1 each time — big enough for the methods' claims to
show or fail, built once per machine and recipe.

The text, all read from disk, nothing downloaded:
- **pretraining (v1)**: the docstrings of Python's standard library (`ast`, no import), minus a
  held-out share that becomes the *general* set (forgetting is measured on it);
- **releases**: v2, v3 and v4 each continue v1's training on the docstrings of one more package
  installed with patchreg's `ml` extra (`SHIFTS`: SQLAlchemy, then numpy, then transformers), so
  each release has seen more text unlike v1's (its drift from v1 is measured and recorded);
- **the domain**: Python's pydoc topics (`trainer.tiny.corpus_paragraphs`), which no release saw:
  train rows are its text, eval rows ask which of two continuations follows a topic's opening.

A build is keyed by its recipe and the digest of the text it read (`testbed.json` records both,
with each source's size and the loss curves); `make test` builds only `QUICK`, the tests' tiny
variant, and the family the tests and demo share stays `trainer.family`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import shutil
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.family import pretrain, text_and_choice_rows, write_jsonl
from trainer.tiny import TinyConfig, bpe_json, build_model, corpus_paragraphs, tokenizer_from_json

FORMAT = 1  # bump when the build changes what it makes from the same recipe and text
SHIFTS = ("sqlalchemy", "numpy", "transformers")  # what v2, v3 and v4 each add, in order
SKIPPED_STDLIB = {"test", "tests", "idlelib", "lib2to3", "site-packages", "tkinter", "turtledemo"}
MIN_PARAGRAPH = 80  # characters: shorter docstring paragraphs are signatures and one-liners


@dataclass(frozen=True)
class TestbedRecipe:
    config: TinyConfig = field(
        default_factory=lambda: TinyConfig(
            vocab_size=4096,
            hidden_size=256,
            intermediate_size=704,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=4,
            max_position_embeddings=256,
        )
    )
    # 1,200 steps of 16 × 256 tokens ≈ 4.9 M tokens over ~1.1 M characters of standard-library
    # docstrings (v1 ends at 0.42 nats/token: it memorises them); each release adds 1.2 M tokens
    pretrain_steps: int = 1200
    release_steps: int = 300  # per release, on top of the one before
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 1e-3
    release_lr: float = 5e-4
    max_chars: int | None = None  # per source; None: all of it
    general_rows: int = 300
    domain_train_rows: int = 400
    domain_eval_rows: int = 300
    seed: int = 0


# what the tests build: the same recipe at a size that trains in seconds
QUICK = TestbedRecipe(
    config=TinyConfig(vocab_size=384, hidden_size=48, intermediate_size=96, num_hidden_layers=2),
    pretrain_steps=12,
    release_steps=6,
    seq_len=64,
    batch_size=4,
    lr=3e-3,
    release_lr=3e-3,
    max_chars=40_000,
    general_rows=20,
    domain_train_rows=24,
    domain_eval_rows=16,
)


@dataclass(frozen=True)
class Testbed:
    root: Path
    releases: tuple[Path, ...]  # v1, v2, v3, v4
    general: Path  # held-out pretraining text, {"text": ...} rows
    domain_train: Path
    domain_eval: Path
    note: dict[str, Any]


def docstring_paragraphs(
    root: Path, max_chars: int | None = None, skip: frozenset[str] = frozenset()
) -> list[str]:
    """The docstrings of every `.py` file under `root` (parsed, never imported), split into
    paragraphs of one line each, in file order; at most `max_chars` characters."""
    out: list[str] = []
    total = 0
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.relative_to(root).parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for block in (ast.get_docstring(node) or "").split("\n\n"):
                text = " ".join(block.split())
                if len(text) >= MIN_PARAGRAPH:
                    out.append(text)
                    total += len(text)
                    if max_chars is not None and total >= max_chars:
                        return out
    return out


def sources(recipe: TestbedRecipe) -> dict[str, list[str]]:
    """Every text the testbed reads, by name (`stdlib`, each of `SHIFTS`, `pydoc-topics`)."""
    import importlib.util

    texts = {
        "stdlib": docstring_paragraphs(
            Path(sysconfig.get_paths()["stdlib"]), recipe.max_chars, frozenset(SKIPPED_STDLIB)
        )
    }
    for package in SHIFTS:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"the testbed reads {package}'s docstrings: pip install 'patchreg[ml]'")
        texts[package] = docstring_paragraphs(
            Path(spec.origin).parent, recipe.max_chars, frozenset({"tests"})
        )
    topics = list(corpus_paragraphs())
    texts["pydoc-topics"] = topics if recipe.max_chars is None else _first_chars(topics, recipe.max_chars)
    return texts


def _first_chars(paragraphs: list[str], limit: int) -> list[str]:
    out, total = [], 0
    for p in paragraphs:
        if total >= limit:
            break
        out.append(p)
        total += len(p)
    return out


def _digest(recipe: TestbedRecipe, texts: dict[str, list[str]]) -> str:
    h = hashlib.sha256(json.dumps({"format": FORMAT, "recipe": asdict(recipe)}, sort_keys=True).encode())
    for name in sorted(texts):
        h.update(name.encode())
        for paragraph in texts[name]:
            h.update(paragraph.encode() + b"\0")
    return h.hexdigest()


def default_cache() -> Path:
    return Path(os.environ.get("PATCHREG_TESTBED_CACHE", Path.home() / ".cache" / "patchreg" / "testbed"))


def build_testbed(recipe: TestbedRecipe = TestbedRecipe(), cache: Path | None = None) -> Testbed:
    """The testbed for `recipe`, built under `cache` (default `default_cache()`) unless a build of
    the same recipe and text is there already. Built in a private directory, renamed when done."""
    texts = sources(recipe)
    digest = _digest(recipe, texts)
    root = (cache or default_cache()) / f"testbed-{digest[:16]}"
    if not (root / "testbed.json").is_file():
        scratch = root.with_name(f"{root.name}.building-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            _build(recipe, texts, digest, scratch)
            try:
                scratch.rename(root)
            except OSError:  # another process finished the same build first: keep theirs
                if not (root / "testbed.json").is_file():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _open(root)


def _open(root: Path) -> Testbed:
    note = json.loads((root / "testbed.json").read_text())
    return Testbed(
        root=root,
        releases=tuple(root / f"v{i}" for i in range(1, 2 + len(SHIFTS))),
        general=root / "data" / "general.jsonl",
        domain_train=root / "data" / "domain-train.jsonl",
        domain_eval=root / "data" / "domain-eval.jsonl",
        note=note,
    )


def _build(recipe: TestbedRecipe, texts: dict[str, list[str]], digest: str, root: Path) -> None:
    import torch

    rng = random.Random(recipe.seed)
    stdlib = list(texts["stdlib"])
    rng.shuffle(stdlib)
    general, pretraining = stdlib[: recipe.general_rows], stdlib[recipe.general_rows :]
    tokenizer_json = bpe_json(pretraining, recipe.config.vocab_size)
    tokenizer = tokenizer_from_json(tokenizer_json)
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.config, recipe.seed)
    losses = {
        "v1": pretrain(
            model, tokenizer, pretraining, recipe.pretrain_steps,
            seq_len=recipe.seq_len, batch_size=recipe.batch_size, lr=recipe.lr, seed=recipe.seed,
        )
    }  # fmt: skip
    _save(model, tokenizer, root / "v1")
    first = {n: p.detach().clone() for n, p in model.named_parameters()}
    drift = {"v1": 0.0}
    for i, package in enumerate(SHIFTS, start=2):
        name = f"v{i}"
        losses[name] = pretrain(
            model, tokenizer, texts[package], recipe.release_steps,
            seq_len=recipe.seq_len, batch_size=recipe.batch_size, lr=recipe.release_lr, seed=recipe.seed + i,
        )  # fmt: skip
        _save(model, tokenizer, root / name)
        drift[name] = _relative_drift(first, model)
    data = root / "data"
    data.mkdir()
    write_jsonl([{"text": p} for p in general], data / "general.jsonl")
    topics = [p for p in texts["pydoc-topics"] if len(p) >= 160]
    train, evals = text_and_choice_rows(topics, recipe.domain_train_rows, recipe.domain_eval_rows, rng)
    write_jsonl(train, data / "domain-train.jsonl")
    write_jsonl(evals, data / "domain-eval.jsonl")
    note = {
        "format": FORMAT,
        "digest": digest,
        "recipe": asdict(recipe),
        "parameters": sum(p.numel() for p in model.parameters()),
        "sources": {n: {"paragraphs": len(t), "chars": sum(map(len, t))} for n, t in texts.items()},
        "releases": {
            f"v{i}": ("stdlib docstrings" if i == 1 else f"+ {SHIFTS[i - 2]} docstrings") for i in range(1, 5)
        },
        "drift_from_v1": drift,  # ‖W − W_v1‖ / ‖W_v1‖ over every weight
        "losses": losses,
    }
    (root / "testbed.json").write_text(json.dumps(note, indent=1))


def _save(model: Any, tokenizer: Any, directory: Path) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _relative_drift(first: dict[str, Any], model: Any) -> float:
    import torch

    moved = sum(float(torch.sum((p.detach() - first[n]) ** 2)) for n, p in model.named_parameters())
    size = sum(float(torch.sum(w**2)) for w in first.values())
    return (moved / size) ** 0.5
