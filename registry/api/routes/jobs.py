"""Jobs: list, show, cancel, retry, and queue a training job."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from core.vocab import TRAIN_METHODS
from registry.api.auth import Reader, Writer
from registry.api.paging import DEFAULT_LIMIT, Cursor, Limit, paged
from registry.schemas import JobRead
from registry.services import jobs, training

router = APIRouter(tags=["jobs"])


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str
    base: str = Field(description="FAMILY:VERSION to train on")
    method: str = Field(description=f"One of {', '.join(TRAIN_METHODS)}")
    overrides: list[str] = Field(default_factory=list, description="Method settings as key=value")
    regularize: str | None = Field(default=None, description="alewr, or none")
    dataset: str | None = Field(default=None, description="Train dataset (default: the newest readable)")
    general_dataset: str | None = Field(default=None, description="General data for ALEWR importance")
    args: dict[str, Any] | None = Field(default=None, description="steps, lr, batch_size, …")


@router.get("/jobs")
def list_jobs(
    ctx: Reader,
    request: Request,
    response: Response,
    status: str | None = None,
    kind: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[JobRead]:
    """Newest first; one page (`Link`/`X-Next-Cursor` when more follow). `error_detail` (a
    failure's traceback) only for an admin token."""
    debug = ctx.caller.grants("admin")
    with ctx.transaction() as s:
        page = jobs.page_jobs(s, status=status, kind=kind, limit=limit, cursor=cursor, debug=debug)
    return paged(request, response, page, limit)


@router.post("/jobs/train", status_code=201)
def enqueue_train(body: TrainRequest, response: Response, ctx: Writer) -> JobRead:
    """Check everything the job needs (domain, base, a readable train dataset, the method and its
    settings, as `patchreg train` does) and queue it."""
    _check_settings(body.method, body.overrides, body.regularize)
    with ctx.transaction() as s:
        job, created = training.enqueue_train(s, **body.model_dump())
    response.status_code = 201 if created else 200
    return job


def _check_settings(method: str, overrides: list[str], regularize: str | None) -> None:
    """A typo in a method setting fails the request, not the job an hour later; a server without
    torch leaves that check to the worker, which makes it before it trains."""
    if method not in TRAIN_METHODS:
        return  # the service says which methods exist
    try:
        from trainer.settings import parse_settings
    except ImportError:
        return
    if regularize:
        training.check_regularizable(method, regularize)
    parse_settings(method, overrides, regularize)


@router.get("/jobs/{job_id}")
def show_job(job_id: str, ctx: Reader) -> JobRead:
    """`error` is one line for everyone; `error_detail` (the traceback) only for an admin token."""
    with ctx.transaction() as s:
        return jobs.show_job(s, job_id, debug=ctx.caller.grants("admin"))


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, ctx: Writer) -> JobRead:
    with ctx.transaction() as s:
        return jobs.cancel(s, job_id)


@router.post("/jobs/{job_id}/retry")
def retry_job(job_id: str, ctx: Writer) -> JobRead:
    with ctx.transaction() as s:
        return jobs.retry(s, job_id)
