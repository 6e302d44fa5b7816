"""Factories for rows and files that tests need: real patch files written by the trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from sqlalchemy.orm import Session, sessionmaker

from registry.db import transaction
from registry.services import bases, domains
from trainer.patch.io import save_patch
from trainer.patch.types import Columns, LowRank, Scale
from trainer.patch.types import Patch as PatchFile


def write_patch(path: Path, hidden: int = 64, with_lm_head: bool = False) -> Path:
    g = torch.Generator().manual_seed(0)
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
