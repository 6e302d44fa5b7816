"""`patchreg train-local` and `patchreg eval`: train or evaluate on this machine, no registry needed.

torch, transformers and the trainer package are imported inside the command bodies so that
`patchreg --help` stays fast. PatchregError propagates; the root group turns it into one stderr line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from core.vocab import REGULARIZERS, TRAIN_METHODS

_existing_file = click.Path(exists=True, dir_okay=False, path_type=Path)
_existing_dir = click.Path(exists=True, file_okay=False, path_type=Path)


def _wants_json(ctx: click.Context, flag: bool) -> bool:
    return flag or bool(getattr(ctx.obj, "json_output", False))


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2))


@click.command("train-local")
@click.argument("model_dir", type=_existing_dir)
@click.argument("data", type=_existing_file)
@click.option("--method", "method", type=click.Choice(TRAIN_METHODS), required=True, help="Training method.")
@click.option("--regularize", type=click.Choice(REGULARIZERS), default=None, help="Forgetting regulariser.")
@click.option("--general", type=_existing_file, default=None, help="General-role JSONL for ALEWR importance.")
@click.option(
    "--importance",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="ALEWR importance file: reused if it exists, else written here (default: beside the patch).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Method setting (repeatable).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimizer steps (default: 1 epoch).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--lr", type=float, default=None, help="Learning rate (default: the method's).")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-length", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--max-tokens-per-batch",
    type=click.IntRange(min=1),
    default=None,
    help="Split batches into micro-batches of at most this many tokens (same step, less memory).",
)
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    default=None,
    help="Recompute activations in backward (default: on for models of 1B parameters or more).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--json", "json_flag", is_flag=True, help="Print a JSON summary instead of text.")
@click.pass_context
def train_local_command(
    ctx: click.Context,
    model_dir: Path,
    data: Path,
    method: str,
    regularize: str | None,
    general: Path | None,
    importance: Path | None,
    overrides: tuple[str, ...],
    steps: int | None,
    epochs: float,
    lr: float | None,
    batch_size: int,
    grad_accum: int,
    max_length: int,
    warmup_steps: int,
    seed: int,
    device: str,
    max_tokens_per_batch: int | None,
    gradient_checkpointing: bool | None,
    output: Path,
    json_flag: bool,
) -> None:
    """Train a patch on MODEL_DIR (a saved transformers model) from DATA (JSONL) into -o PATCH."""
    from tqdm import tqdm

    from trainer.loop import Progress, TrainArgs, train_to_patch
    from trainer.settings import parse_settings

    config, regularization = parse_settings(method, overrides, regularize)  # bad settings fail first
    if regularization is not None and importance is not None:
        regularization = regularization.replace(importance=str(importance))
    as_json = _wants_json(ctx, json_flag)
    args = TrainArgs(
        lr=lr,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        warmup_steps=warmup_steps,
        seed=seed,
        device=device,
        max_tokens_per_batch=max_tokens_per_batch,
        gradient_checkpointing=gradient_checkpointing,
    )
    bar: tqdm | None = None

    def on_progress(p: Progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total_steps, desc=f"train {method}", unit="step", disable=as_json, leave=False)
        bar.set_postfix(loss=f"{p.loss:.4f}", tok_s=f"{p.tokens_per_s:,.0f}", eta=f"{p.eta_s:.0f}s")
        bar.update(1)

    try:
        path, result = train_to_patch(
            model_dir,
            data,
            method,
            config,
            output,
            args=args,
            regularization=regularization,
            general_path=general,
            on_progress=on_progress,
        )
    finally:
        if bar is not None:
            bar.close()
    summary = {
        "patch": str(path),
        "method": method,
        "method_config": result.patch.method_config,
        "steps": result.steps,
        "first_loss": result.losses[0],
        "final_loss": result.losses[-1],
        "tokens": result.tokens,
        "seconds": round(result.seconds, 3),
        "tokens_per_s": round(result.tokens_per_s, 1),
        "peak_gpu_bytes": result.peak_gpu_bytes,
        "gradient_checkpointing": result.gradient_checkpointing,
        "trainable_params": result.trainable_params,
        "modules": len(result.patch.deltas),
    }
    if as_json:
        _echo_json(summary)
        return
    click.echo(
        f"wrote {path}: {method}, {result.trainable_params:,} trainable params over "
        f"{len(result.patch.deltas)} modules; loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f} "
        f"in {result.steps} steps ({result.seconds:.1f}s)"
    )


@click.command("eval")
@click.argument("model_dir", type=_existing_dir)
@click.argument("data", type=_existing_file)
@click.option("--patch", "patch_path", type=_existing_file, default=None, help="Patch file to apply first.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-length", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "json_flag", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def eval_command(
    ctx: click.Context,
    model_dir: Path,
    data: Path,
    patch_path: Path | None,
    batch_size: int,
    max_length: int,
    device: str,
    json_flag: bool,
) -> None:
    """Loss, perplexity and (for rows with choices) accuracy of MODEL_DIR, optionally + a patch."""
    from trainer.evaluate import evaluate_directory

    result = evaluate_directory(
        model_dir, data, patch_path, batch_size=batch_size, max_length=max_length, device=device
    )
    data_out = {"model": str(model_dir), "patch": str(patch_path) if patch_path else None, **result.to_dict()}
    if _wants_json(ctx, json_flag):
        _echo_json(data_out)
        return
    line = f"loss {result.loss:.4f}  perplexity {result.perplexity:.2f}"
    line += f"  ({result.tokens:,} tokens, {result.rows} rows)"
    if result.accuracy is not None:
        line += f"  accuracy {result.accuracy:.3f} ({result.choice_rows} choice rows)"
    click.echo(line)
