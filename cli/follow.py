"""Following a queued job from the command line: a progress bar until it ends."""

from __future__ import annotations

import time

import click
from tqdm import tqdm

from cli.context import AppContext
from registry.schemas import JobRead

FINISHED = ("succeeded", "failed", "cancelled")


def follow_job(app: AppContext, job_id: str, *, show: bool = True, poll_seconds: float = 0.5) -> JobRead:
    """Poll the job until it is finished, drawing its progress; returns the finished job."""
    bar: tqdm | None = None
    waiting_said = False
    try:
        while True:
            job = app.backend.show_job(job_id, debug=False)
            if job.status in FINISHED:
                return job
            if show and job.status == "queued" and job.attempts == 0 and not waiting_said:
                click.echo(
                    f"job {job.id} is queued; waiting for a worker (start one with `patchreg worker`)",
                    err=True,
                )
                waiting_said = True
            total, done = job.progress.get("total"), job.progress.get("done")
            if show and job.status == "running" and total:
                if bar is None or bar.total != total:
                    if bar is not None:
                        bar.close()
                    bar = tqdm(total=total, desc=f"job {job.id} {job.kind}", leave=False, disable=None)
                bar.n = min(done or 0, total)
                bar.set_postfix_str(job.message[-60:], refresh=False)
                bar.refresh()
            time.sleep(poll_seconds)
    finally:
        if bar is not None:
            bar.close()
