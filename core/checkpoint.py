"""The files of a saved transformers checkpoint, read without torch: its safetensors shards (from
the index when there is one), their headers as one tensor table, and its config.json.

One home for what fingerprinting, the streamed merge and the portability statistics all read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import InvalidInput, MalformedFile
from core.safetensors_header import TensorInfo, read_safetensors_header

INDEX_FILE = "model.safetensors.index.json"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedFile(f"{path.name}: not valid JSON ({exc})") from None


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a checkpoint: from the shard index if there is one."""
    index = model_dir / INDEX_FILE
    if index.exists():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise MalformedFile(f"{INDEX_FILE}: has no weight_map")
        files = sorted({model_dir / name for name in weight_map.values()})
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise MalformedFile(f"{INDEX_FILE}: lists shards that are missing: {', '.join(missing)}")
        return files
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        found = "pytorch_model.bin" if (model_dir / "pytorch_model.bin").exists() else "no weight files"
        raise InvalidInput(
            f"{model_dir}: no safetensors weights ({found}); save the model with safe_serialization"
        )
    return files


def shard_headers(model_dir: Path) -> dict[Path, dict[str, TensorInfo]]:
    """Each shard's tensors (name -> TensorInfo), headers only."""
    return {path: read_safetensors_header(path)[0] for path in weight_files(model_dir)}


def tensor_table(headers: dict[Path, dict[str, TensorInfo]]) -> list[list[Any]]:
    """[name, shape, dtype] rows over all shards, as `core.arch.weight_sources` reads them."""
    return [[i.name, list(i.shape), i.dtype] for infos in headers.values() for i in infos.values()]


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json as a dict ({} when absent: names are then taken as the checkpoint has them)."""
    path = model_dir / "config.json"
    if not path.is_file():
        return {}
    config = read_json(path)
    return config if isinstance(config, dict) else {}
