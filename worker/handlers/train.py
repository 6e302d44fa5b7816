"""`train`: train a patch on a base version from a domain's train dataset and register it.

The patch row, its blob, the follow-up `evaluate` job and the job's success commit in one
transaction: a worker killed at any point before leaves no patch and no blob behind, and the job
reruns from scratch on the next worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.services import bases, datasets, jobs, patches
from worker.context import JobContext
from worker.handlers.importance import ensure_importance


def config_overrides(method_config: dict[str, Any]) -> list[str]:
    """A stored method config as `key=value` settings (the importance file path is per-base, so
    it is dropped: the job supplies the new base's own map)."""
    out = []
    for key, value in method_config.items():
        if key == "importance":
            continue
        if isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        elif value is None:
            text = "none"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        out.append(f"{key}={text}")
    return out


def run(ctx: JobContext) -> dict[str, Any]:
    from trainer.loop import Progress, TrainArgs, train_to_patch

    p = ctx.payload
    base, method = p["base"], p["method"]
    overrides = list(p.get("overrides") or [])
    if p.get("method_config"):
        overrides = config_overrides(p["method_config"])
    args = TrainArgs(device=ctx.device, **(p.get("args") or {}))  # values checked here, before any work

    with ctx.transaction() as s:
        model_dir = bases.model_dir(s, base)
        data_path = datasets.readable_file(s, ctx.store, int(p["dataset_id"]))

    importance: Path | None = None
    if p.get("regularize") == "alewr":
        importance = ensure_importance(ctx, base, int(p["general_dataset_id"]))

    def on_step(progress: Progress) -> None:
        ctx.progress(
            progress.step,
            progress.total_steps,
            f"train {method} on {base}: step {progress.step}/{progress.total_steps}"
            f", loss {progress.loss:.4f}",
            loss=round(progress.loss, 5),
        )

    ctx.progress(0, None, f"loading {base} to train {method}")
    out, result = train_to_patch(
        model_dir,
        data_path,
        method,
        overrides,
        ctx.work_dir / "patch.safetensors",
        args=args,
        regularize=p.get("regularize"),
        importance_path=importance,
        on_progress=on_step,
    )
    metrics = {
        "train_first_loss": result.losses[0],
        "train_final_loss": result.losses[-1],
        "train_steps": result.steps,
        "train_tokens": result.tokens,
        "train_seconds": round(result.seconds, 3),
    }
    with ctx.transaction() as s:
        patch = patches.register_patch(
            s,
            ctx.store,
            p["domain"],
            base,
            out,
            p.get("origin", "trained"),
            parent_id=p.get("parent_id"),
            train_dataset_id=int(p["dataset_id"]),
            job_id=ctx.job.id,
            metrics=metrics,
        )
        evaluation, _ = jobs.enqueue(s, "evaluate", {"patch_id": patch.id}, dedupe_key=f"evaluate:{patch.id}")
        summary = {"patch_id": patch.id, "evaluate_job": evaluation.id, **metrics}
        ctx.complete_in(s, summary)
    return summary
