"""The demo's in-process worker: a progress bar per job on stderr, one line per finished job."""

from __future__ import annotations

import os
import time
from typing import Any

import click
from tqdm import tqdm

from cli.context import AppContext
from core.errors import NotFound
from core.method_config import method_label
from registry.schemas import JobRead
from registry.services import jobs, patches


def _change(before: dict[str, Any], after: dict[str, Any]) -> str:
    parts = []
    if before.get("accuracy") is not None and after.get("accuracy") is not None:
        parts.append(f"acc {before['accuracy']:.3f} -> {after['accuracy']:.3f}")
    parts.append(f"loss {before['loss']:.3f} -> {after['loss']:.3f}")
    return ", ".join(parts)


class Reporter:
    """The worker's `on_event`: bars while jobs report steps, a summary line when each ends."""

    def __init__(self, app: AppContext) -> None:
        self.app = app
        self.bar: tqdm | None = None
        self.bar_key: tuple[str, Any] | None = None  # (description, total) the bar was made for
        self.started: dict[str, float] = {}
        self.labels: dict[str, str] = {}  # patch id -> method label

    def patch_label(self, patch_id: str | None) -> str:
        if patch_id is None:
            return "?"
        if patch_id not in self.labels:
            try:
                with self.app.transaction() as s:
                    p = patches.show_patch(s, patch_id)
                self.labels[patch_id] = method_label(p.method, p.method_config)
            except NotFound:
                return "?"
        return self.labels[patch_id]

    def what(self, job: JobRead) -> str:
        p = job.payload
        if job.kind == "train":
            verb = "retrain" if p.get("origin") == "retrained" else "train"
            return f"{verb} {method_label(p['method'], p)} on {p['base']}"
        if job.kind in ("port", "evaluate"):
            where = f" -> {p['base']}" if job.kind == "port" else ""
            return f"{job.kind} {self.patch_label(p.get('patch_id'))}{where}"
        return f"{job.kind} {p.get('base', '')}".strip()

    def __call__(self, event: str, job: JobRead, info: dict[str, Any]) -> None:
        # Progress runs inside the job: a display problem must never fail the job it shows.
        if event == "start":
            self.started[job.id] = time.perf_counter()
        elif event == "progress":
            try:
                self._progress(job, info["progress"], info["message"])
            except Exception:
                self.close()
        else:
            self.close()
            seconds = time.perf_counter() - self.started.pop(job.id, time.perf_counter())
            try:
                line = self.ended(job)
            except Exception:
                line = f"{job.kind} job {job.id}: {job.status}"
            click.echo(f"    {line} ({seconds:.1f}s)")

    def _progress(self, job: JobRead, progress: dict[str, Any], message: str) -> None:
        total = progress.get("total")
        desc = f"    {self.what(job)}"
        if self.bar is None or self.bar_key != (desc, total):
            self.close()
            shape = {} if total else {"bar_format": "{desc} {elapsed} {postfix}"}
            self.bar = tqdm(total=total, desc=desc, leave=False, disable=None, dynamic_ncols=True, **shape)
            self.bar_key = (desc, total)
        self.bar.n = min(progress.get("done") or 0, total) if total else 0
        loss = progress.get("loss")
        self.bar.set_postfix_str(f"loss {loss:.3f}" if loss is not None else message[-50:], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def ended(self, job: JobRead) -> str:
        """One line on how a job ended, from its recorded result."""
        what = self.what(job)
        if job.status != "succeeded":
            error = job.error.splitlines()[0] if job.error else "cancelled"
            again = " (will run again)" if job.status == "queued" else ""
            return f"{what}: job {job.id} {job.status}{again}: {error}"
        r = job.result or {}
        if job.kind == "train":
            self.labels[r["patch_id"]] = method_label(job.payload["method"], job.payload)
            return (
                f"{what}: patch {r['patch_id']}, loss {r['train_first_loss']:.3f} -> "
                f"{r['train_final_loss']:.3f} over {r['train_steps']} steps"
            )
        if job.kind == "evaluate":
            rows = r.get("rows") or []
            measured = f", {_change(rows[0]['base'], rows[0]['patch'])}" if rows else ""
            return f"{what} {r['patch_id']}{measured}: {r.get('status')}: {r.get('why')}"
        if job.kind == "port_all":
            ported = r.get("ports") or []
            methods = ", ".join(sorted(p["method"] for p in ported)) or "nothing"
            return f"{what}: {len(ported)} port job{'s' if len(ported) != 1 else ''} ({methods})"
        if job.kind == "port":
            if r.get("patch_id") is None:
                line = f"{what}: {r['verdict']}, nothing ported: {r.get('why')}"
            else:
                self.labels[r["patch_id"]] = self.patch_label(r["source_id"])
                line = f"{what}: patch {r['patch_id']}, {r['verdict']}, {r.get('status')}: {r.get('why')}"
                if r.get("forecast"):  # what the statistics predicted before the evaluation ruled
                    f = r["forecast"]
                    line += f" (forecast: {f['probability']:.0%} to keep {f['keep_fraction']:.0%})"
            if r.get("retrain_job"):
                line += f"; retrain queued as job {r['retrain_job']}"
            return line
        return f"{what}: done"


def run_worker(app: AppContext, reporter: Reporter) -> int:
    """Run an in-process worker until no job is left; Ctrl-C queues its current job again."""
    from worker.runner import Worker, WorkerConfig

    config = WorkerConfig(
        work_root=app.settings.home.resolve() / "work",
        name=f"demo:{os.getpid()}",
        lease_seconds=30.0,
        poll_seconds=0.2,
        backoff_seconds=1.0,
    )
    runner = Worker(app.factory, app.store, config, on_event=reporter)
    try:
        return runner.run(until_idle=True)
    except KeyboardInterrupt:
        reporter.close()
        with app.transaction() as s:
            for job in jobs.list_jobs(s, status="running"):
                if job.worker == config.name:
                    jobs.fail(s, job.id, config.name, "interrupted: the demo was stopped", backoff_seconds=0)
        click.echo("interrupted: run the same command again to resume where the demo stopped", err=True)
        raise


def failed_jobs(app: AppContext) -> list[JobRead]:
    with app.transaction() as s:
        return jobs.list_jobs(s, status="failed")
