"""Factories for rows and files that tests need: real patch files written by the trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from sqlalchemy.orm import Session, sessionmaker

from registry.db import transaction
from registry.services import bases, domains
from trainer.patch.io import save_patch
from trainer.patch.types import Columns, Delta, Dense, LowRank, Rows, Scale
from trainer.patch.types import Patch as PatchFile


def write_patch(path: Path, hidden: int = 64, with_lm_head: bool = False, seed: int = 0) -> Path:
    """A patch of every LoRA-engine kind; another `seed` gives other bytes (another import)."""
    g = torch.Generator().manual_seed(seed)
    deltas = {
        "model.layers.0.self_attn.q_proj": LowRank(
            torch.randn(4, hidden, generator=g), torch.randn(hidden, 4, generator=g), 0.5
        ),
        "model.layers.1.self_attn.o_proj": Columns(
            torch.tensor([3, 7, 9]), torch.randn(hidden, 3, generator=g)
        ),
        "model.layers.0.mlp.down_proj": Scale(torch.rand(hidden, generator=g) + 0.5),
    }
    if with_lm_head:
        deltas["lm_head"] = LowRank(
            torch.randn(2, hidden, generator=g), torch.randn(512, 2, generator=g), 1.0
        )
    return save_patch(PatchFile("lora", {"r": 4}, deltas), path)


def register_family(
    factory: sessionmaker[Session], make_tiny_model: Callable[..., Path], *domain_names: str
) -> None:
    """tiny:v1; tiny:v2 = same shapes, other weights (parent v1); tiny:v3 = wider (parent v2); and domains."""
    with transaction(factory) as s:
        bases.register_base(s, "tiny:v1", str(make_tiny_model(seed=0)))
        bases.register_base(s, "tiny:v2", str(make_tiny_model(seed=1)), parent="tiny:v1")
        bases.register_base(s, "tiny:v3", str(make_tiny_model(seed=0, hidden_size=96)), parent="tiny:v2")
        for name in domain_names:
            domains.create_domain(s, name)


def random_delta(kind: str, shape: tuple[int, int], g: torch.Generator) -> Delta:
    """A small random delta of `kind` for a weight of [out, in] `shape`."""
    out_f, in_f = shape
    if kind == "lowrank":
        return LowRank(torch.randn(2, in_f, generator=g), torch.randn(out_f, 2, generator=g), 0.5)
    if kind == "columns":
        return Columns(torch.tensor([0, in_f - 1]), torch.randn(out_f, 2, generator=g))
    if kind == "rows":
        return Rows(torch.tensor([0, out_f - 1]), torch.randn(2, in_f, generator=g))
    if kind == "scale":
        return Scale(torch.rand(out_f, generator=g) + 0.5)
    return Dense(torch.randn(out_f, in_f, generator=g) * 0.01)


def write_zoo_patch(path: Path, model_type: str, kinds: dict[str, str], method: str = "lora") -> Path:
    """A patch on runtime targets of a tiny `trainer.zoo` model ({target: delta kind}), shaped from
    the live model's [out, in] weights, so a registry that reads the checkpoint wrongly refuses it."""
    from trainer import zoo
    from trainer.patch.targets import all_targets

    targets = all_targets(zoo.build(model_type))
    g = torch.Generator().manual_seed(0)
    deltas = {name: random_delta(kind, targets[name].shape, g) for name, kind in kinds.items()}
    return save_patch(PatchFile(method, {}, deltas), path)


def raw_patch(
    path: Path,
    modules: dict[str, dict[str, object]] | str,
    tensors: dict[str, tuple[str, tuple[int, ...], bytes]],
    *,
    method_config: str = "{}",
    **metadata: str,
) -> Path:
    """A patch file written byte by byte (no validation on the way): `tensors` maps a name to
    (dtype code, shape, data), `modules` may be any JSON text, so tests can plant what no writer
    would produce."""
    import json

    from core.safetensors_header import TensorInfo, header_bytes

    meta = {
        "format_version": "2",
        "method": "lora",
        "method_config": method_config,
        "modules": modules if isinstance(modules, str) else json.dumps(modules),
        **metadata,
    }
    infos = [TensorInfo(name, dtype, shape) for name, (dtype, shape, _) in tensors.items()]
    path.write_bytes(header_bytes(infos, meta) + b"".join(data for _, _, data in tensors.values()))
    return path
