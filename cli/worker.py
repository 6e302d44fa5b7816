"""`patchreg worker`: claim jobs from the registry's queue and run them on this machine."""

from __future__ import annotations

import signal
import time
from typing import Any

import click
from tqdm import tqdm

from cli.context import AppContext, json_flag, pass_app
from cli.output import print_json
from core.vocab import JOB_KINDS
from registry.schemas import JobRead


class _Reporter:
    """One line when a job starts and ends; a bar while it reports progress (stderr)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.bar: tqdm | None = None
        self.started: dict[str, float] = {}

    def __call__(self, event: str, job: JobRead, info: dict[str, Any]) -> None:
        from cli.jobs import describe

        if event == "start":
            self.started[job.id] = time.perf_counter()
            if not self.as_json:
                click.echo(
                    f"job {job.id} {job.kind}: {describe(job)} (attempt {job.attempts}/{job.max_attempts})"
                )
        elif event == "progress":
            total = info["progress"].get("total")
            if total:
                if self.bar is None or self.bar.total != total:
                    self._close_bar()
                    self.bar = tqdm(total=total, desc=f"  {job.kind}", leave=False, disable=None)
                self.bar.n = min(info["progress"].get("done") or 0, total)
                self.bar.set_postfix_str(info["message"][-60:], refresh=False)
                self.bar.refresh()
        else:
            self._close_bar()
            seconds = time.perf_counter() - self.started.pop(job.id, time.perf_counter())
            if self.as_json:
                print_json({"job": job, "seconds": round(seconds, 3)})
                return
            line = f"job {job.id} {job.kind}: {job.status} in {seconds:.1f}s"
            if job.status == "queued" and job.error:
                line += f"; will retry after {job.run_after:%H:%M:%S} ({job.error.splitlines()[0]})"
            elif job.error:
                line += f": {job.error.splitlines()[0]}"
            elif info.get("cancelled"):
                line += f": {info['cancelled']}"
            click.echo(line)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@click.command()
@click.option("--once", is_flag=True, help="Run at most one job, then exit.")
@click.option(
    "--until-idle", is_flag=True, help="Exit when no job of its kinds is queued or running anywhere."
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cuda", "cpu"]),
    default="auto",
    show_default=True,
    help="Where training runs (auto: CUDA with bf16 autocast when present, else CPU).",
)
@click.option("--kinds", metavar="K1,K2", help=f"Only these job kinds (of {', '.join(JOB_KINDS)}).")
@click.option("--name", help="Worker name in the queue (default HOST:PID).")
@click.option("--lease", "lease_seconds", default=60.0, show_default=True, help="Lease length, seconds.")
@click.option(
    "--poll", "poll_seconds", default=2.0, show_default=True, help="Idle polling interval, seconds."
)
@click.option(
    "--backoff", "backoff_seconds", default=30.0, show_default=True, help="First retry delay, seconds."
)
@click.option(
    "--model-cache-gb",
    type=click.FloatRange(min=0),
    help="Memory for base models kept loaded between port/evaluate jobs (default: 60% of the GPU, "
    "a third of RAM on CPU; 0 loads per job).",
)
@json_flag
@pass_app
def worker(
    app: AppContext,
    once: bool,
    until_idle: bool,
    device: str,
    kinds: str | None,
    name: str | None,
    lease_seconds: float,
    poll_seconds: float,
    backoff_seconds: float,
    model_cache_gb: float | None,
) -> None:
    """Claim jobs from the queue and run them: train, importance, port_all, port, evaluate.

    Run one worker per GPU; workers on other machines need the same database and artifact store.
    Ctrl-C (or SIGTERM) once finishes the current job and exits; twice exits at once, and the job
    is picked up again by another worker when its lease expires.
    """
    from worker.runner import Worker, WorkerConfig

    if once and until_idle:
        raise click.UsageError("--once and --until-idle exclude each other")
    if lease_seconds <= 0 or poll_seconds <= 0 or backoff_seconds < 0:
        raise click.UsageError("--lease and --poll must be positive and --backoff not negative")
    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else None
    for kind in chosen or ():
        if kind not in JOB_KINDS:
            raise click.UsageError(f"unknown job kind {kind!r}; choose from {', '.join(JOB_KINDS)}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError("--device cuda, but this machine has no CUDA device (use --device cpu)")
    app.ensure_schema()
    config = WorkerConfig(
        work_root=app.settings.home / "work",
        device=device,
        lease_seconds=lease_seconds,
        poll_seconds=poll_seconds,
        backoff_seconds=backoff_seconds,
        kinds=chosen,
        model_cache_bytes=None if model_cache_gb is None else int(model_cache_gb * 2**30),
        **({"name": name} if name else {}),
    )
    # Temp files a killed worker left in the store (age-guarded: other live processes' stay).
    app.store.scratch.sweep(app.settings.temp_age_guard_seconds)
    runner = Worker(app.factory, app.store, config, on_event=_Reporter(app.json_output))

    def stop(signum: int, _frame: Any) -> None:
        if runner.stop_requested.is_set():
            raise KeyboardInterrupt
        runner.stop_requested.set()
        click.echo("stopping after the current job (press Ctrl-C again to exit now)", err=True)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not app.json_output:
            where = app.settings.resolved_database_url.split("@")[-1]  # never print a password
            click.echo(f"worker {config.name} on {device}, polling {where}")
        ran = runner.run(once=once, until_idle=until_idle)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not app.json_output:
        click.echo(f"worker {config.name}: ran {ran} job{'s' if ran != 1 else ''}")
