"""`importance`: measure a base version's ALEWR importance map on a general dataset, once.

The map is kept per (base, dataset) and reused by every regularised training job on that base; the
`importance` job records it together with its own completion, in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from registry.services import bases, datasets, training
from worker.context import JobContext


def ensure_importance(
    ctx: JobContext, base: str, dataset_id: int, finish: Callable[[Session, str], None] | None = None
) -> Path:
    """The local file of the stored map for (base, dataset), computing and storing it if missing;
    `finish(session, digest)` runs in the transaction that finds or records it."""
    from core.rows import read_rows
    from trainer.regularizers.alewr.importance import compute_importance

    with ctx.transaction() as s:
        digest = training.find_importance(s, base, dataset_id)
        if digest is not None:
            if finish is not None:
                finish(s, digest)
            return ctx.store.local_path(digest)
        model_dir = bases.model_dir(s, base)
        rows_path = datasets.readable_file(s, ctx.store, dataset_id)
    ctx.progress(0, 1, f"measuring ALEWR importance of {base}")
    out = compute_importance(
        model_dir,
        read_rows(rows_path),
        out_path=ctx.work_dir / "importance.safetensors",
        device=ctx.device,
        models=ctx.models,
    )
    with ctx.transaction() as s:
        digest = training.record_importance(s, ctx.store, base, dataset_id, out, ctx.job.id)
        if finish is not None:
            finish(s, digest)
    ctx.progress(1, 1, f"importance of {base} stored")
    return ctx.store.local_path(digest)


def run(ctx: JobContext) -> dict[str, Any]:
    base, dataset_id = ctx.payload["base"], int(ctx.payload["dataset_id"])
    result: dict[str, Any] = {"base": base, "dataset_id": dataset_id}

    def finish(s: Session, digest: str) -> None:
        result["digest"] = digest
        ctx.complete_in(s, result)

    ensure_importance(ctx, base, dataset_id, finish)
    return result
