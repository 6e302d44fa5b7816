"""Merge a patch into a checkpoint shard by shard: peak memory is one tensor pair, not the model.

Each safetensors shard of the base is read tensor by tensor (memory-mapped), the deltas that touch
a tensor are added in fp32 and cast back to its dtype, and the tensor is written straight out
(the header, computable from the input's, goes first): only one tensor is held at a time. Every
shard keeps its name, so the output is sharded like its input and keeps the index.

Patches name runtime weights; `core.arch.weight_sources` says which saved tensors hold them
(Conv1D stored transposed, a Mixtral expert's gate_up stacked from two tensors, a tied `lm_head`
sharing the input embedding). A patch on a tied `lm_head` writes the head as a tensor of its own
and unties it in the config, so loading the merge gives exactly the patched model.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.arch import WeightSource, find_architecture, to_saved, weight_sources
from core.atomic import atomic_output_dir
from core.checkpoint import INDEX_FILE, read_config, tensor_table, weight_files
from core.errors import IncompatibleModel
from core.fit import module_misfit
from core.safetensors_header import DTYPE_BYTES, TensorInfo, header_bytes, read_safetensors_header
from trainer.patch.types import Columns, Delta, Dense, LowRank, Patch, Rows, Scale, delta_shapes, max_index

COPIED_SUFFIXES = (".json", ".jinja", ".model", ".txt", ".py")


@dataclass(frozen=True)
class _Edit:
    """One delta restricted to the rows [start, stop) of its target that one saved tensor holds."""

    delta: Delta
    start: int
    stop: int
    transposed: bool


def _rows(delta: Delta, start: int, stop: int) -> Delta:
    """The part of `delta` that lands on output rows [start, stop), re-indexed from 0."""
    if isinstance(delta, LowRank):
        return LowRank(delta.A, delta.B[start:stop], delta.scale)
    if isinstance(delta, Dense):
        return Dense(delta.delta[start:stop])
    if isinstance(delta, Columns):
        return Columns(delta.idx, delta.values[start:stop])
    if isinstance(delta, Scale):
        return Scale(delta.s[start:stop])
    keep = (delta.idx >= start) & (delta.idx < stop)
    return Rows(delta.idx[keep] - start, delta.values[keep])


def added(weight: torch.Tensor, delta: Delta) -> torch.Tensor:
    """`weight` ([out, in]) + `delta`, computed in fp32 and cast back to the weight's dtype."""
    w = weight.float()
    if isinstance(delta, LowRank):
        w = w + delta.scale * (delta.B.float() @ delta.A.float())
    elif isinstance(delta, Dense):
        w = w + delta.delta.float()
    elif isinstance(delta, Columns):
        w = w.index_add(1, delta.idx.long(), delta.values.float())
    elif isinstance(delta, Rows):
        if delta.idx.numel():
            w = w.index_add(0, delta.idx.long(), delta.values.float())
    else:
        w = delta.s.float()[:, None] * w
    return w.to(weight.dtype)


def _plan(
    patch: Patch, sources: dict[str, WeightSource], arch: Any
) -> tuple[dict[str, list[_Edit]], list[str]]:
    """Edits per saved tensor name, and the tied targets that need a tensor of their own."""
    edits: dict[str, list[_Edit]] = {}
    tied: list[str] = []
    for name, delta in sorted(patch.deltas.items()):
        source = sources.get(name)
        misfit = module_misfit(
            name,
            delta.kind,
            delta_shapes(delta),
            source.shape if source else None,
            target="the base",
            max_index=max_index(delta),
        )
        if misfit is not None:
            raise IncompatibleModel(misfit.message)
        assert source is not None
        if source.tied:
            tied.append(name)
            continue
        start = 0
        per_piece = source.shape[0] // len(source.pieces)
        for piece in source.pieces:
            stop = start + per_piece
            part = delta if len(source.pieces) == 1 else _rows(delta, start, stop)
            edits.setdefault(piece, []).append(_Edit(part, start, stop, source.transposed))
            start = stop
        if isinstance(delta, Scale):
            bias = to_saved(arch, name) + ".bias"
            edits.setdefault(bias, []).append(_Edit(delta, 0, source.shape[0], False))
    return edits, tied


def _edited(name: str, tensor: torch.Tensor, edits: list[_Edit]) -> torch.Tensor:
    for edit in edits:
        if name.endswith(".bias"):
            assert isinstance(edit.delta, Scale)
            tensor = (edit.delta.s.float() * tensor.float()).to(tensor.dtype)
        elif edit.transposed:
            tensor = added(tensor.T, edit.delta).T.contiguous()
        else:
            tensor = added(tensor, edit.delta)
    return tensor


def _data(tensor: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a tensor, as safetensors stores them (no copy)."""
    array: Any = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
    return memoryview(array)


BLOCK_BYTES = 4 << 20  # fp32 bytes of one row block: bounds every temporary of an edit


def _blocks(handle: Any, name: str, shape: tuple[int, ...], edits: list[_Edit]) -> Iterator[torch.Tensor]:
    """The merged tensor `name`, in blocks of whole rows read straight from the file (2-D weights
    edited by row block: `_rows` restricts each delta to the block); small or transposed tensors,
    and 1-D ones, whole."""
    rows = shape[0] if len(shape) == 2 else 0
    step = max(1, BLOCK_BYTES // (4 * shape[1])) if rows else 0
    if not rows or step >= rows or any(e.transposed for e in edits):
        yield _edited(name, handle.get_tensor(name), edits)
        return
    view = handle.get_slice(name)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        block = view[start:stop]
        for edit in edits:
            block = added(block, _rows(edit.delta, start, stop))
        yield block


def _write_shard(
    shard: Path,
    header: tuple[dict[str, TensorInfo], dict[str, str]],
    out: Path,
    edits: dict[str, list[_Edit]],
    heads: dict[str, tuple[str, Delta]],
) -> dict[str, int]:
    """Write one merged shard (header first, from the input's), block by block: only one row block
    of one tensor is in memory. `heads` adds tensors made from one of this shard's (a tied head:
    saved name -> (embedding name, delta)). Returns the added tensors' sizes in bytes."""
    from safetensors import safe_open

    infos, meta = header
    order = sorted(infos.values(), key=lambda info: info.name)
    added_infos = [TensorInfo(name, infos[src].dtype, infos[src].shape) for name, (src, _) in heads.items()]
    sizes = {i.name: i.numel * DTYPE_BYTES[i.dtype] for i in added_infos}
    with safe_open(str(shard), framework="pt") as handle, open(out, "wb") as f:
        f.write(header_bytes(order + added_infos, meta or {"format": "pt"}))
        for info in order:
            for block in _blocks(handle, info.name, info.shape, edits.get(info.name, [])):
                f.write(_data(block))
        for src, delta in heads.values():
            for block in _blocks(
                handle, src, infos[src].shape, [_Edit(delta, 0, infos[src].shape[0], False)]
            ):
                f.write(_data(block))
    return sizes


def write_merged(model_dir: Path | str, patch: Patch, directory: Path) -> None:
    """Write base + patch into `directory` (which exists), shard by shard and tensor by tensor;
    config, tokenizer and index files are copied (the config untied when a tied head got a tensor
    of its own)."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    arch = find_architecture(config)
    headers = {shard: read_safetensors_header(shard) for shard in weight_files(model_dir)}
    sources = weight_sources(arch, tensor_table({shard: infos for shard, (infos, _) in headers.items()}))
    edits, tied = _plan(patch, sources, arch)
    added_sizes: dict[str, tuple[str, int]] = {}
    for shard, header in headers.items():
        heads = {
            to_saved(arch, target) + ".weight": (sources[target].pieces[0], patch.deltas[target])
            for target in tied
            if sources[target].pieces[0] in header[0]
        }
        for name, size in _write_shard(shard, header, directory / shard.name, edits, heads).items():
            added_sizes[name] = (shard.name, size)
    _copy_side_files(model_dir, directory, added_sizes, config, arch.text_config if arch else None)


def _copy_side_files(
    model_dir: Path,
    directory: Path,
    extra: dict[str, tuple[str, int]],
    config: dict[str, Any],
    text_config: str | None,
) -> None:
    for file in sorted(model_dir.iterdir()):
        if file.is_file() and file.suffix in COPIED_SUFFIXES and file.name not in ("config.json", INDEX_FILE):
            shutil.copy2(file, directory / file.name)
    if extra:
        config["tie_word_embeddings"] = False
        if text_config and isinstance(config.get(text_config), dict):
            config[text_config]["tie_word_embeddings"] = False
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    index = model_dir / INDEX_FILE
    if index.exists():
        data = json.loads(index.read_text())
        metadata = data.setdefault("metadata", {})
        for name, (shard_name, size) in extra.items():
            data["weight_map"][name] = shard_name
            metadata["total_size"] = metadata.get("total_size", 0) + size
        (directory / INDEX_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def merge_into_directory(model_dir: Path | str, patch: Patch, out_dir: Path | str) -> Path:
    """`write_merged` into a new directory `out_dir`: built in a temp directory beside it and renamed
    into place at the end; an existing non-empty `out_dir` is refused before anything is read."""
    with atomic_output_dir(out_dir) as tmp:
        write_merged(model_dir, patch, tmp)
    return Path(out_dir)
