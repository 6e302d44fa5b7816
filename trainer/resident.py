"""Base models kept loaded between jobs, within a memory budget.

A worker ports and evaluates many patches on the same base on release day; loading a 7B base
takes 30–60 s and 16 GB each time. Jobs *borrow* a resident model, apply their patch in place and
revert it (revert is bit-exact, `trainer.patch.apply`), and hand it back. A borrow that ends with
an exception evicts the model instead: whatever the job did to it, the next job gets a fresh load.
The least recently used models are dropped when a load would exceed the budget; a model larger than
the whole budget is loaded for its borrow and dropped afterwards.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (directory, torch device, torch dtype) -> (model, tokenizer)
Loader = Callable[[Path, Any, Any], tuple[Any, Any]]


def _load(directory: Path, device: Any, dtype: Any) -> tuple[Any, Any]:
    from trainer.hf import load_causal_lm, load_tokenizer

    return load_causal_lm(directory, dtype=dtype).to(device).eval(), load_tokenizer(directory)


def checkpoint_dtype(directory: Path) -> Any:
    """The dtype a checkpoint is stored in (config.json's `dtype`/`torch_dtype`, also a multimodal
    model's `text_config`); float32 when it does not say, as `from_pretrained` would load it."""
    import torch

    from core.checkpoint import read_config

    config = read_config(directory)
    for section in (config, config.get("text_config") or {}):
        name = section.get("dtype") or section.get("torch_dtype")
        if isinstance(name, str) and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
    return torch.float32


def model_bytes(model: Any) -> int:
    """Memory a loaded model holds: parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def default_budget(device: str = "cpu") -> int:
    """Bytes a worker may keep resident by default: 60% of the GPU's memory on CUDA, a third of
    physical memory on CPU (evaluation activations, the patch and the OS need the rest)."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return int(0.6 * torch.cuda.get_device_properties(0).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 3)


Key = tuple[str, str, Any]  # (resolved directory, device, torch dtype)


@dataclass
class _Entry:
    model: Any
    tokenizer: Any
    nbytes: int


class ResidentModels:
    """Loaded models by (directory, device, dtype), least recently used first. `loads` counts loads."""

    def __init__(self, budget_bytes: int, device: str = "cpu", loader: Loader | None = None) -> None:
        from trainer.hf import resolve_device

        if budget_bytes < 0:
            raise ValueError("the model cache budget cannot be negative")
        self.budget = budget_bytes
        self.device = resolve_device(device)
        self.loader: Loader = loader or _load
        self.loads = 0
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()

    @property
    def resident_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def resident(self) -> list[str]:
        return [directory for directory, _, _ in self._entries]

    def _key(self, directory: Path, dtype: Any) -> Key:
        return str(Path(directory).resolve()), str(self.device), dtype

    def _fetch(self, key: Key) -> _Entry:
        entry = self._entries.pop(key, None)
        if entry is None:
            model, tokenizer = self.loader(Path(key[0]), self.device, key[2])
            self.loads += 1
            entry = _Entry(model, tokenizer, model_bytes(model))
        return entry

    def _keep(self, key: Key, entry: _Entry) -> None:
        if entry.nbytes > self.budget:
            return
        while self._entries and self.resident_bytes + entry.nbytes > self.budget:
            self._entries.popitem(last=False)
        self._entries[key] = entry

    @contextmanager
    def borrow(
        self, directory: Path | str, dtype: Any = None, *, alone: bool = False
    ) -> Iterator[tuple[Any, Any]]:
        """(model, tokenizer) of the base in `directory`, loaded once per dtype (default: the
        checkpoint's own); the caller must leave the model as it found it (apply/revert, or a
        training method's cleanup). An exception evicts it. `alone` first drops every other
        resident model: training needs that memory for activations, gradients and optimizer state."""
        directory = Path(directory)
        key = self._key(directory, dtype if dtype is not None else checkpoint_dtype(directory))
        if alone:
            for other in [k for k in self._entries if k != key]:
                del self._entries[other]
        entry = self._fetch(key)
        self._entries[key] = entry  # resident while borrowed, so a nested borrow shares it
        try:
            yield entry.model, entry.tokenizer
        except BaseException:
            self._entries.pop(key, None)
            raise
        self._entries.pop(key, None)
        self._keep(key, entry)
