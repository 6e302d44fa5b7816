"""`patchreg train`: queue a training job for a domain on a base version (a worker runs it)."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.follow import follow_job
from cli.output import emit, print_fields
from core.errors import InvalidState
from core.vocab import REGULARIZERS, TRAIN_METHODS
from registry.services import training


@click.command()
@click.argument("domain")
@click.option("--base", "base_ref", metavar="FAMILY:VERSION", required=True, help="Base version to train on.")
@click.option("--method", type=click.Choice(TRAIN_METHODS), required=True, help="Training method.")
@click.option("--regularize", type=click.Choice(REGULARIZERS), help="Forgetting regulariser (ALEWR).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Method setting (repeatable).")
@click.option("--dataset", help="Train dataset of DOMAIN (default: its newest readable one).")
@click.option("--general", "general_dataset", help="General dataset for ALEWR importance (default: newest).")
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps (default: one epoch).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Epochs (default 1).")
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate (default: the method's)."
)
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size (default 4).")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option(
    "--max-tokens-per-batch",
    type=click.IntRange(min=1),
    help="Split batches into micro-batches of at most this many tokens (same step, less memory).",
)
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    default=None,
    help="Recompute activations in backward (default: on for bases of 1B parameters or more).",
)
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")
@json_flag
@pass_app
def train(
    app: AppContext,
    domain: str,
    base_ref: str,
    method: str,
    regularize: str | None,
    overrides: tuple[str, ...],
    dataset: str | None,
    general_dataset: str | None,
    steps: int | None,
    epochs: float | None,
    lr: float | None,
    batch_size: int | None,
    seed: int | None,
    max_tokens_per_batch: int | None,
    gradient_checkpointing: bool | None,
    wait: bool,
) -> None:
    """Queue training of a DOMAIN patch on --base with --method; `patchreg worker` runs it.

    Settings are checked now, so a typo fails here and queues nothing.
    """
    if regularize:  # said in the words of this command's options, before the settings are read
        training.check_regularizable(method, regularize)
    if app.remote is None:  # against a server, the server checks them (`POST /v1/jobs/train`)
        from trainer.settings import parse_settings

        parse_settings(method, overrides, regularize)  # PatchregError → one line, nothing queued
    args = {
        k: v
        for k, v in {
            "steps": steps,
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "seed": seed,
            "max_tokens_per_batch": max_tokens_per_batch,
            "gradient_checkpointing": gradient_checkpointing,
        }.items()
        if v is not None
    }
    job = app.backend.train(
        domain=domain,
        base=base_ref,
        method=method,
        overrides=list(overrides),
        regularize=regularize,
        dataset=dataset,
        general_dataset=general_dataset,
        args=args,
    )
    if not wait:
        emit(
            app.json_output,
            job,
            lambda: click.echo(f"queued job {job.id}: train {domain} on {base_ref} with {method}"),
        )
        return
    if not app.json_output:
        click.echo(f"queued job {job.id}: train {domain} on {base_ref} with {method}")
    done = follow_job(app, job.id, show=not app.json_output)
    result = done.result or {}
    emit(
        app.json_output,
        done,
        lambda: print_fields(
            [
                ("job", f"{done.id} {done.status}"),
                ("patch", result.get("patch_id")),
                (
                    "loss",
                    f"{result['train_first_loss']:.4f} -> {result['train_final_loss']:.4f}"
                    if result
                    else None,
                ),
                ("evaluation job", result.get("evaluate_job")),
            ]
        ),
    )
    if done.status != "succeeded":
        why = done.error.splitlines()[0] if done.error else "cancelled"
        raise InvalidState(f"job {done.id} ended {done.status}: {why}")
