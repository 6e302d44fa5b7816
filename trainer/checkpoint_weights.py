"""A checkpoint's weights by the runtime names patches use, read one at a time from its safetensors
shards: what the portability statistics and the serving exports read, never a whole model.

`core.arch.weight_sources` maps each runtime weight to the saved tensors it is made of (a GPT-2
Conv1D read transposed, a Mixtral expert's w1 and w3 stacked, Gemma 3's renamed text weights, a
tied head's embedding), from config.json and the shard headers alone. Only the current shard stays
open: a memory map's touched pages count as resident until it closes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.arch import WeightSource, find_architecture, weight_sources
from core.checkpoint import read_config, shard_headers, tensor_table
from core.errors import IncompatibleModel


class CheckpointWeights:
    """Lazy tensor access to a safetensors checkpoint directory (single file or sharded), by the
    runtime names patches use: `core.arch.weight_sources` maps each to the saved tensors it is made
    of, from config.json and the safetensors headers alone (no tensor is read to find one)."""

    def __init__(self, directory: Path | str, label: str = "") -> None:
        self.directory, self.label = Path(directory), label or str(directory)
        self._handles: dict[str, Any] = {}
        headers = shard_headers(self.directory)
        self._files = {name: path.name for path, infos in headers.items() for name in infos}
        self.sources = weight_sources(find_architecture(read_config(self.directory)), tensor_table(headers))

    def _open(self, filename: str) -> Any:
        """The shard's handle; the previous shard is closed first (one memory map at a time)."""
        from safetensors import safe_open

        if filename not in self._handles:
            self.close()
            self._handles[filename] = safe_open(str(self.directory / filename), framework="pt").__enter__()
        return self._handles[filename]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.__exit__(None, None, None)
        self._handles.clear()

    def __enter__(self) -> CheckpointWeights:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def position(self, source: WeightSource) -> tuple[str, str]:
        """Where the weight's first piece is stored: (shard, name), to read shards in order."""
        return self._files[source.pieces[0]], source.pieces[0]

    def source(self, module: str) -> WeightSource:
        found = self.sources.get(module)
        if found is None:
            raise IncompatibleModel(
                f"module '{module}': no weight '{module}' (Linear, Conv1D or expert) in base {self.label} "
                f"({self.directory})"
            )
        return found

    def load(self, source: WeightSource) -> torch.Tensor:
        """The [out, in] weight in fp32, in memory of its own (never a view of a memory map, which
        closes with its shard): Conv1D pieces transposed back, expert pieces stacked along rows, a
        tied head read from the embedding it shares."""
        pieces = [
            self._open(self._files[key]).get_tensor(key).to(torch.float32, copy=True) for key in source.pieces
        ]
        if source.transposed:
            pieces = [piece.T for piece in pieces]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)


def serving_facts(model_dir: Path | str) -> Any:
    """`core.serving.BaseFacts` of a checkpoint directory, from its config and shard headers."""
    from core.serving import BaseFacts

    directory = Path(model_dir)
    config = read_config(directory)
    sources = weight_sources(find_architecture(config), tensor_table(shard_headers(directory)))
    head = sources.get("lm_head")
    return BaseFacts(
        model_type=str(config.get("model_type", "")),
        shapes={name: s.shape for name, s in sources.items()},
        tied_head=bool(head is not None and head.tied),
    )
