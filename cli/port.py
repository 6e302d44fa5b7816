"""`patchreg port`: move a patch onto another base version without training, and check it."""

from __future__ import annotations

from typing import Any

import click

from cli.context import AppContext, json_flag, pass_app
from cli.errors import NotRemote
from cli.follow import FINISHED, follow_job
from cli.output import emit, print_fields, print_table
from core.errors import InvalidState
from core.forecast import describe


def _fmt(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "-"
    acc = metrics.get("accuracy")
    return f"loss {metrics['loss']:.4f}" + (f", acc {acc:.3f}" if acc is not None else "")


@click.command()
@click.argument("patch_id", metavar="PATCH")
@click.option(
    "--base", "base_ref", metavar="FAMILY:VERSION", required=True, help="The base version to port onto."
)
@click.option("--no-eval", is_flag=True, help="Port and compute statistics, but do not evaluate or gate.")
@click.option("--margin", default=0.0, show_default=True, help="Gain over the base alone needed to validate.")
@click.option(
    "--keep", "keep_fraction", default=0.8, show_default=True, help="Share of the source gain to keep."
)
@click.option(
    "--decide-by",
    type=click.Choice(["score", "accuracy"]),
    default="score",
    show_default=True,
    help="The per-row number the gate pairs: the gold completion's log-likelihood, or the right choice.",
)
@click.option("--wait", is_flag=True, help="Against a server: follow the worker's port job until it ends.")
@json_flag
@pass_app
def port(
    app: AppContext,
    patch_id: str,
    base_ref: str,
    no_eval: bool,
    margin: float,
    keep_fraction: float,
    decide_by: str,
    wait: bool,
) -> None:
    """Port PATCH onto --base (PortLLM: the same delta, no training), then evaluate and gate it.

    The verdict is recorded either way; an incompatible port creates nothing and exits 1. Against a
    server the port is a worker's job (the one a release queues, with the default gate): it is
    queued, or the job already queued is shown; --wait follows it to its end.
    """
    if app.remote is not None:
        if no_eval or margin != 0.0 or keep_fraction != 0.8 or decide_by != "score":
            raise NotRemote(
                "unsupported",
                "`patchreg port --no-eval/--margin/--keep/--decide-by` runs only where the registry is; "
                "against a server a port is a worker's job with the default gate",
            )
        _port_job(app, patch_id, base_ref, wait)
        return
    from trainer.gate import GateConfig
    from worker.porting import port_and_check

    app.ensure_schema()
    gate = GateConfig(margin=margin, keep_fraction=keep_fraction, metric=decide_by)
    report = port_and_check(app.factory, app.store, patch_id, base_ref, evaluate=not no_eval, gate=gate)
    if report.patch is None:
        raise InvalidState(f"cannot port to {base_ref}: {report.why}")

    def human() -> None:
        p = report.patch
        assert p is not None
        print_fields(
            [
                ("ported patch", f"{p.id} ({'new' if report.created else 'already ported'})"),
                ("from", f"{p.parent_id} on {report.verdict.source_base}"),
                ("verdict", report.verdict.verdict),
                ("portability", f"{report.portability['score']:.3f}" if report.portability else "-"),
                ("forecast", describe(report.forecast) if report.forecast else "-"),
                ("status", p.status),
                ("why", report.why),
            ]
        )
        if report.rows:
            click.echo()
            table = [
                {
                    "dataset": r["dataset"],
                    "base": _fmt(r["base"]),
                    "ported": _fmt(r["ported"]),
                    "source": f"{_fmt(r['source'])} (base {_fmt(r['source_base'])})",
                }
                for r in report.rows
            ]
            columns = [
                ("DATASET", "dataset"),
                (f"{base_ref} ALONE", "base"),
                (f"{base_ref} + PATCH", "ported"),
                (f"SOURCE ON {report.verdict.source_base}", "source"),
            ]
            print_table(table, columns)

    data = {
        "verdict": report.verdict,
        "patch": report.patch,
        "created": report.created,
        "portability": report.portability,
        "forecast": report.forecast,
        "evaluations": report.rows,
        "noop": report.noop,
        "status": report.status,
        "why": report.why,
    }
    emit(app.json_output, data, human)


def _port_job(app: AppContext, patch_id: str, base_ref: str, wait: bool) -> None:
    """Queue (or find) the port job of PATCH onto --base on the server; with `wait`, its outcome."""
    job = app.backend.queue_port(patch_id, base_ref)
    if wait and job.status not in FINISHED:
        job = follow_job(app, job.id, show=not app.json_output)
    result = job.result or {}
    if job.status != "succeeded":
        emit(
            app.json_output,
            job,
            lambda: click.echo(f"port job {job.id} is {job.status}: {patch_id} onto {base_ref}"),
        )
        if job.status in ("failed", "cancelled"):
            why = job.error.splitlines()[0] if job.error else "cancelled"
            raise InvalidState(f"job {job.id} ended {job.status}: {why}")
        return
    emit(
        app.json_output,
        job,
        lambda: print_fields(
            [
                ("job", f"{job.id} {job.status}"),
                ("ported patch", result.get("patch_id")),
                ("verdict", result.get("verdict")),
                ("forecast", describe(result["forecast"]) if result.get("forecast") else "-"),
                ("status", result.get("status")),
                ("why", result.get("why")),
                ("retrain job", result.get("retrain_job")),
            ]
        ),
    )
