"""`patchreg jobs`: the work queue — list, show, cancel, retry."""

from __future__ import annotations

import json

import click

from cli.context import AppContext, json_flag, pass_app
from cli.listing import page_options, rows_of
from cli.output import emit, print_fields, print_table
from core.vocab import JOB_KINDS, JOB_STATUSES
from registry.schemas import JobRead

COLUMNS = [
    ("ID", "id"),
    ("KIND", "kind"),
    ("STATUS", "status"),
    ("ATTEMPTS", "attempts_shown"),
    ("WHAT", "what"),
    ("MESSAGE", "message"),
    ("CREATED", "created_at"),
]


def describe(job: JobRead) -> str:
    """One line saying what the job is about, from its payload."""
    p = job.payload
    if job.kind == "train":
        regularizer = p.get("regularize")
        method = str(p.get("method", "?")) + (f"+{regularizer}" if regularizer else "")
        return f"{p.get('domain')} on {p.get('base')} with {method}" + (
            f" (retrain of {p['parent_id']})" if p.get("parent_id") else ""
        )
    if job.kind == "port":
        return f"patch {p.get('patch_id')} -> {p.get('base')}"
    if job.kind == "port_all":
        return f"every patch -> {p.get('base')}"
    if job.kind == "evaluate":
        return f"patch {p.get('patch_id')}"
    if job.kind == "importance":
        return f"{p.get('base')} on {p.get('domain')}/{p.get('dataset')}"
    return json.dumps(p)[:60]


def _row(job: JobRead) -> dict[str, object]:
    return {
        **job.model_dump(),
        "attempts_shown": f"{job.attempts}/{job.max_attempts}",
        "what": describe(job),
        "message": (job.error or job.message or "").splitlines()[0][:60]
        if (job.error or job.message)
        else "",
    }


@click.group()
def jobs() -> None:
    """The work queue: training, porting and evaluation run as jobs that workers claim."""


@jobs.command("list")
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this state.")
@click.option("--kind", type=click.Choice(JOB_KINDS), help="Only jobs of this kind.")
@page_options(50, "newest first")
@json_flag
@pass_app
def list_cmd(app: AppContext, status: str | None, kind: str | None, limit: int, show_all: bool) -> None:
    """Newest jobs first."""
    rows, note = rows_of(app, "jobs", limit, show_all, status=status, kind=kind)
    emit(app.json_output, rows, lambda: print_table([_row(j) for j in rows], COLUMNS, empty="no jobs"))
    note()


@jobs.command("show")
@click.argument("job_id", metavar="JOB")
@click.option(
    "--debug", is_flag=True, help="Show a failure's whole error, with its traceback (error_detail)."
)
@json_flag
@pass_app
def show(app: AppContext, job_id: str, debug: bool) -> None:
    """Everything about one job: payload, progress, result or error.

    The error is its one-line message; `--debug` adds the traceback of an unexpected failure. (Over
    the HTTP API only an admin token gets the traceback, so against a server `--debug` shows it to
    admin tokens only; locally this command reads the database, which only the registry's owner can.)
    """
    job = app.backend.show_job(job_id, debug)

    def human() -> None:
        print_fields(
            [
                ("id", job.id),
                ("kind", job.kind),
                ("what", describe(job)),
                ("status", job.status),
                ("attempts", f"{job.attempts}/{job.max_attempts}"),
                ("worker", job.worker),
                ("lease until", job.lease_until),
                ("progress", _progress(job)),
                ("message", job.message or None),
                ("created", job.created_at),
                ("started", job.started_at),
                ("finished", job.finished_at),
            ]
        )
        if job.result is not None:
            click.echo("result:\n" + json.dumps(job.result, indent=2))
        if job.error_detail:
            click.echo("error:\n" + job.error_detail)
        elif job.error:
            click.echo(f"error: {job.error}")

    emit(app.json_output, job, human)


def _progress(job: JobRead) -> str | None:
    done, total = job.progress.get("done"), job.progress.get("total")
    if done is None:
        return None
    return f"{done}/{total}" if total else str(done)


@jobs.command("cancel")
@click.argument("job_id", metavar="JOB")
@json_flag
@pass_app
def cancel(app: AppContext, job_id: str) -> None:
    """Cancel a queued or running job (a running one stops at its next progress report)."""
    job = app.backend.cancel_job(job_id)
    emit(app.json_output, job, lambda: click.echo(f"cancelled job {job.id} ({job.kind})"))


@jobs.command("retry")
@click.argument("job_id", metavar="JOB")
@json_flag
@pass_app
def retry(app: AppContext, job_id: str) -> None:
    """Queue a failed or cancelled job again, with its attempts reset."""
    job = app.backend.retry_job(job_id)
    emit(app.json_output, job, lambda: click.echo(f"queued job {job.id} ({job.kind}) again"))
