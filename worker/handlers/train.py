"""`train`: train a patch on a base version from a domain's train dataset and register it.

The patch row, its blob, the follow-up `evaluate` job and the job's success commit in one
transaction: a worker killed at any point before leaves no patch and no blob behind, and the job
reruns from scratch on the next worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry.services import bases, datasets, jobs, patches
from worker.context import JobContext
from worker.handlers.importance import ensure_importance

if TYPE_CHECKING:
    from trainer.methods import MethodConfig
    from trainer.regularizers import Regularization


def typed_settings(p: dict[str, Any]) -> tuple[MethodConfig, Regularization | None]:
    """The job's method config and regularisation, typed: from the stored `method_config` (a
    retrain; either stored form, see `core.method_config`) or from the `--set` strings."""
    from trainer.regularizers import regularization
    from trainer.settings import parse_settings, settings_from_dict

    if p.get("method_config"):
        config, reg = settings_from_dict(p["method"], p["method_config"])
    else:
        config, reg = parse_settings(p["method"], p.get("overrides") or [], p.get("regularize"))
    if reg is None and p.get("regularize"):
        reg = regularization(p["regularize"])
    return config, reg


def run(ctx: JobContext) -> dict[str, Any]:
    from trainer.loop import Progress, TrainArgs, train_to_patch

    p = ctx.payload
    base, method = p["base"], p["method"]
    config, reg = typed_settings(p)  # settings checked here, before any work
    args = TrainArgs(device=ctx.device, **(p.get("args") or {}))  # values checked here, before any work

    with ctx.transaction() as s:
        model_dir = bases.model_dir(s, base)
        data_path = datasets.readable_file(s, ctx.store, int(p["dataset_id"]))

    if reg is not None and reg.name == "alewr":  # the base's own map, measured once and reused
        reg = reg.replace(importance=str(ensure_importance(ctx, base, int(p["general_dataset_id"]))))

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
        config,
        ctx.work_dir / "patch.safetensors",
        args=args,
        regularization=reg,
        on_progress=on_step,
        models=ctx.models,
    )
    metrics = {
        "train_first_loss": result.losses[0],
        "train_final_loss": result.losses[-1],
        "train_steps": result.steps,
        "train_tokens": result.tokens,
        "train_seconds": round(result.seconds, 3),
        "train_tokens_per_s": round(result.tokens_per_s, 1),
        "gradient_checkpointing": result.gradient_checkpointing,
        **({"peak_gpu_gb": round(result.peak_gpu_bytes / 2**30, 3)} if result.peak_gpu_bytes else {}),
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
