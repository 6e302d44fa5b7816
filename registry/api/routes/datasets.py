"""Datasets: list, and upload a JSONL file (multipart), validated row by row before it is stored."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from core.errors import InvalidInput
from core.rows import ROLES
from registry.api.auth import Reader, Writer
from registry.api.deps import RequestContext
from registry.api.paging import DEFAULT_LIMIT, Cursor, Limit, paged
from registry.api.uploads import multipart_doc, receive_form
from registry.schemas import DatasetRead
from registry.services import datasets

router = APIRouter(tags=["datasets"])

UPLOAD_DOC = multipart_doc(
    {
        "domain": "The domain the data belongs to",
        "name": "Dataset name, unique within the domain",
        "role": f"One of {', '.join(ROLES)}",
        "available_until": "YYYY-MM-DD from which the data may no longer be read (optional)",
    },
    {"file": "JSONL: {text} or {prompt, completion} rows; eval rows may add choices and answer"},
    required=("domain", "name", "role", "file"),
)


@router.get("/datasets")
def list_datasets(
    ctx: Reader,
    request: Request,
    response: Response,
    domain: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[DatasetRead]:
    """By domain and name; one page (`Link`/`X-Next-Cursor` when more follow)."""
    with ctx.transaction() as s:
        page = datasets.page_datasets(s, domain, limit=limit, cursor=cursor)
    return paged(request, response, page, limit)


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"available_until {value!r} is not a date; use YYYY-MM-DD") from None


def _add(
    ctx: RequestContext, domain: str, name: str, file: Path, role: str, until: date | None
) -> DatasetRead:
    with ctx.transaction() as s:
        return datasets.add_dataset(s, ctx.store, domain, name, file, role, until)


@router.post("/datasets", status_code=201, openapi_extra=UPLOAD_DOC)
async def upload_dataset(request: Request, ctx: Writer) -> DatasetRead:
    limit = ctx.state.settings.api_max_upload_bytes
    texts = ("domain", "name", "role", "available_until")
    async with receive_form(request, limit=limit, texts=texts, files=("file",)) as form:
        file = form.files.get("file")
        if file is None:
            raise InvalidInput("form file 'file' (the JSONL data) is required")
        until = _date(form.optional("available_until"))
        args = (form.text("domain"), form.text("name"), file, form.text("role"), until)
        return await run_in_threadpool(_add, ctx, *args)
