"""Fingerprints of a saved model directory (config.json, safetensors weights, tokenizer files).

- architecture: model_type + the sorted (tensor, shape, dtype) table. Two checkpoints of one
  architecture share it; any change of shape or dtype changes it. The table is kept too: the
  compatibility checks compare modules against it.
- tokenizer: what decides token ids (vocabulary, merges, normalisation, pre-tokenisation, added
  and special tokens), not incidental settings such as padding side or max length.
- config: canonical JSON of config.json, without keys that record who saved it. The dict itself
  is kept too: it says which architecture the base is (`core.arch`) and its sizes.
- weights: sha256 over the weight files, streamed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.checkpoint import read_json, weight_files
from core.errors import InvalidInput, MalformedFile
from core.safetensors_header import TensorInfo, read_safetensors_header
from registry.store import sha256_file

# Keys that say how or where a config was saved, not what the model is.
VOLATILE_CONFIG_KEYS = frozenset({"transformers_version", "_name_or_path", "_commit_hash"})
TOKENIZER_JSON_KEYS = ("model", "normalizer", "pre_tokenizer", "post_processor", "added_tokens")
TOKENIZER_VOCAB_FILES = ("vocab.json", "merges.txt", "tokenizer.model", "vocab.txt", "spiece.model")


@dataclass(frozen=True)
class ModelFingerprint:
    model_type: str
    architecture: str
    arch_fingerprint: str
    tokenizer_fingerprint: str | None
    config_digest: str
    weights_digest: str
    num_parameters: int
    tensors: dict[str, TensorInfo] = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # config.json, stable keys only

    def tensor_table(self) -> list[list[Any]]:
        return tensor_table(self.tensors)


def tensor_table(tensors: dict[str, TensorInfo]) -> list[list[Any]]:
    """JSON-ready rows [name, shape, dtype], sorted by name: what the architecture hash covers."""
    return [[t.name, list(t.shape), t.dtype] for t in sorted(tensors.values(), key=lambda t: t.name)]


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def combine_weight_hashes(file_hashes: list[tuple[str, str]]) -> str:
    """The weights digest from each weight file's (name, sha256), in `weight_files` order: one
    definition for the fingerprint and for a downloaded copy checked against it."""
    h = hashlib.sha256()
    for name, digest in file_hashes:
        h.update(f"{name}:{digest}\n".encode())
    return h.hexdigest()


def tokenizer_fingerprint(model_dir: Path) -> str | None:
    tok_json = model_dir / "tokenizer.json"
    parts: dict[str, Any] = {}
    if tok_json.exists():
        data = read_json(tok_json)
        parts["tokenizer.json"] = {k: data.get(k) for k in TOKENIZER_JSON_KEYS}
    for name in TOKENIZER_VOCAB_FILES:
        if (model_dir / name).exists():
            parts[name] = sha256_file(model_dir / name)
    if not parts:
        return None
    special = model_dir / "special_tokens_map.json"
    config = model_dir / "tokenizer_config.json"
    if special.exists():
        parts["special_tokens_map"] = read_json(special)
    if config.exists():
        cfg = read_json(config)
        parts["special_tokens"] = {k: v for k, v in cfg.items() if k.endswith("_token")}
    return _sha(_canonical(parts))


def fingerprint_model_dir(
    model_dir: Path, on_progress: Callable[[int, int], None] | None = None
) -> ModelFingerprint:
    """Fingerprint a saved model; `on_progress(done_bytes, total_bytes)` follows the weight hashing."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InvalidInput(f"{model_dir}: not a directory")
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise InvalidInput(f"{model_dir}: no config.json (is this a saved transformers model?)")
    config = read_json(config_path)
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise MalformedFile(f"{config_path.name}: has no model_type")
    architectures = config.get("architectures") or [config["model_type"]]

    files = weight_files(model_dir)
    total, done = sum(f.stat().st_size for f in files), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, total)

    tensors: dict[str, TensorInfo] = {}
    file_hashes: list[tuple[str, str]] = []
    for path in files:
        file_tensors, _ = read_safetensors_header(path)
        duplicated = tensors.keys() & file_tensors.keys()
        if duplicated:
            raise MalformedFile(f"{path.name}: tensor {sorted(duplicated)[0]!r} appears in two weight files")
        tensors.update(file_tensors)
        file_hashes.append((path.name, sha256_file(path, advance)))

    table = tensor_table(tensors)
    stable_config = {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS}
    return ModelFingerprint(
        model_type=config["model_type"],
        architecture=str(architectures[0]),
        arch_fingerprint=_sha(_canonical({"model_type": config["model_type"], "tensors": table})),
        tokenizer_fingerprint=tokenizer_fingerprint(model_dir),
        config_digest=_sha(_canonical(stable_config)),
        weights_digest=combine_weight_hashes(file_hashes),
        num_parameters=sum(t.numel for t in tensors.values()),
        tensors=tensors,
        config=stable_config,
    )
