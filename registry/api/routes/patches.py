"""Patches: list, show, upload (a patchreg patch file, or a PEFT adapter converted on the server),
set status, download (ETag + Range), lineage and evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from core.errors import InvalidInput, Unsupported
from core.vocab import PATCH_STATUSES
from registry.api.auth import Reader, Writer
from registry.api.deps import RequestContext
from registry.api.downloads import serve_blob
from registry.api.paging import DEFAULT_LIMIT, Cursor, Limit, paged
from registry.api.uploads import Form, multipart_doc, receive_form
from registry.schemas import EvaluationRead, Lineage, PatchRead
from registry.services import evaluations, lineage, patches

router = APIRouter(tags=["patches"])

PEFT_FILES = {"adapter_model": "adapter_model.safetensors", "adapter_config": "adapter_config.json"}
UPLOAD_DOC = multipart_doc(
    {"domain": "The domain the patch is for", "base": "FAMILY:VERSION the patch was made on"},
    {
        "patch": "A patchreg patch file (safetensors); or, instead, the two PEFT files below",
        "adapter_model": "PEFT adapter_model.safetensors (LoRA or IA3); needs torch on the server",
        "adapter_config": "PEFT adapter_config.json, sent with adapter_model",
    },
    required=("domain", "base"),
)
DOWNLOAD_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {patches.MEDIA_TYPE: {}}, "description": "The whole patch file"},
    206: {"description": "One byte range (Range: bytes=first-last)"},
    304: {"description": "If-None-Match matched the ETag (the sha256)"},
    416: {"description": "The range lies outside the file"},
}


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Annotated[str, Field(description=f"One of {', '.join(PATCH_STATUSES)}")]
    reason: Annotated[str, Field(min_length=1, description="Why, for the audit log")]


@router.get("/patches")
def list_patches(
    ctx: Reader,
    request: Request,
    response: Response,
    domain: str | None = None,
    base: str | None = None,
    status: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> list[PatchRead]:
    """One page, oldest first. When more follow, `Link: <…&cursor=…>; rel="next"` and
    `X-Next-Cursor` say where the next page starts; the last page has neither."""
    with ctx.transaction() as s:
        page = patches.page_patches(s, domain, base, status, limit=limit, cursor=cursor)
    return paged(request, response, page, limit)


@router.get("/patches/{patch_id}")
def show_patch(patch_id: str, ctx: Reader) -> PatchRead:
    with ctx.transaction() as s:
        return patches.show_patch(s, patch_id)


def convert_peft(adapter_dir: Path, out: Path) -> Path:
    """A PEFT adapter as a patchreg patch file. The trainer (and torch) load only here, so a server
    without torch still starts and takes native patches."""
    try:
        from trainer.patch.io import save_patch
        from trainer.patch.peft_import import import_peft
    except ImportError as exc:
        raise Unsupported(
            f"this server cannot convert PEFT adapters ({exc}); upload a patchreg patch file as `patch`, "
            "or install torch on the server"
        ) from None
    return save_patch(import_peft(adapter_dir), out)


def _patch_file(form: Form) -> Path:
    native = form.files.get("patch")
    sent = [name for name in PEFT_FILES if name in form.files]
    if native is not None and sent:
        raise InvalidInput("send either a patch file (`patch`) or a PEFT adapter, not both")
    if native is not None:
        return native
    if len(sent) != len(PEFT_FILES):
        missing = ", ".join(n for n in PEFT_FILES if n not in sent)
        raise InvalidInput(
            f"send a patchreg patch file as `patch`, or a PEFT adapter as `adapter_model` and "
            f"`adapter_config` (missing: {missing})"
        )
    adapter = form.directory / "adapter"
    adapter.mkdir()
    for name, filename in PEFT_FILES.items():
        form.files[name].replace(adapter / filename)
    return convert_peft(adapter, form.directory / "patch.safetensors")


def _register(ctx: RequestContext, domain: str, base: str, file: Path) -> tuple[PatchRead, bool]:
    with ctx.transaction() as s:
        return patches.import_patch(s, ctx.store, domain, base, file)


@router.post(
    "/patches",
    status_code=201,
    openapi_extra=UPLOAD_DOC,
    responses={200: {"description": "The same bytes were already imported into this domain and base"}},
)
async def upload_patch(request: Request, response: Response, ctx: Writer) -> PatchRead:
    """Register an existing patch as `imported`, after checking it fits the base: 201 when recorded
    now, 200 with the patch already imported from the same bytes into this domain and base."""
    limit = ctx.state.settings.api_max_upload_bytes
    files = ("patch", *PEFT_FILES)
    async with receive_form(request, limit=limit, texts=("domain", "base"), files=files) as form:
        domain, base = form.text("domain"), form.text("base")
        file = await run_in_threadpool(_patch_file, form)
        patch, created = await run_in_threadpool(_register, ctx, domain, base, file)
    response.status_code = 201 if created else 200
    return patch


@router.put("/patches/{patch_id}/status")
def set_status(patch_id: str, body: StatusChange, ctx: Writer) -> PatchRead:
    with ctx.transaction() as s:
        return patches.set_status(s, patch_id, body.status, body.reason)


@router.head("/patches/{patch_id}/download", response_class=Response, include_in_schema=False)
@router.get("/patches/{patch_id}/download", response_class=Response, responses=DOWNLOAD_DOC)
def download_patch(patch_id: str, request: Request, ctx: Reader) -> Response:
    """The patch file, verified against its sha256 before the first byte is sent."""
    with ctx.transaction() as s:
        p = patches.show_patch(s, patch_id)
    return serve_blob(request, ctx.store, p.digest, p.size, patches.MEDIA_TYPE, f"{p.id}.safetensors")


@router.get("/patches/{patch_id}/lineage")
def patch_lineage(patch_id: str, ctx: Reader) -> Lineage:
    with ctx.transaction() as s:
        return lineage.lineage(s, patch_id)


@router.get("/patches/{patch_id}/evaluations")
def patch_evaluations(patch_id: str, ctx: Reader) -> list[EvaluationRead]:
    with ctx.transaction() as s:
        return evaluations.list_for(s, patch_id=patches.show_patch(s, patch_id).id)
