"""`GET /v1/fetch`: the patch `patchreg fetch` serves, in any format, as one tar of its directory.

The same two steps as the CLI: the registry plans (`plan_fetch`), the trainer's `materialize`
writes native, peft or merged plus `patchreg.json` into a private temp directory, and that
directory is streamed back and removed once sent. The materialiser is imported here, in the
handler, and its native path needs no torch; peft and merged load torch and answer 501 without it.
"""

from __future__ import annotations

import shutil
from contextlib import suppress
from dataclasses import replace
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from core.errors import InvalidInput, SourceUnavailable
from core.fetch import FORMATS, Format
from core.serving import MAX_RANK, TARGETS, Target
from registry.api.auth import Reader
from registry.api.downloads import TAR_MEDIA_TYPE, serve_directory
from registry.services.datasets import eval_texts
from registry.services.fetch import plan_fetch
from registry.sources import resolve_source

router = APIRouter(tags=["fetch"])

FETCH_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {TAR_MEDIA_TYPE: {}},
        "description": "An uncompressed tar of the fetch directory: the patch in the asked format and "
        "patchreg.json. `X-Patchreg-Patch` names the patch.",
    },
    404: {"description": "Unknown domain or base, or no patch fits (the message says why each was passed)"},
    422: {"description": "Invalid query (e.g. an unknown format), or a patch with no such form"},
    424: {"description": "merged, or a serving target that reads the base: its files are not here"},
    501: {"description": "peft / merged: this server has no torch"},
}


@router.get("/fetch", response_class=Response, responses=FETCH_DOC)
def fetch_patch(
    ctx: Reader,
    domain: str,
    base: str,
    method: Annotated[str | None, Query(description="Only patches made with this method")] = None,
    fmt: Annotated[Format | None, Query(alias="format", description=f"One of {', '.join(FORMATS)}")] = None,
    target: Annotated[
        Target | None, Query(description=f"With format=peft (its default): one of {', '.join(TARGETS)}")
    ] = None,
    approximate: Annotated[
        int | None, Query(ge=1, le=MAX_RANK, description="SVD rank for scale/dense deltas (serving targets)")
    ] = None,
) -> Response:
    """What `patchreg fetch` writes, as a tar: the production alias, else the best validated patch,
    else the newest candidate, as the native patch file, a PEFT adapter or a merged model, with its
    `patchreg.json`. Extract with `mkdir out && tar -x -C out`."""
    # Torch-free to import: native never loads it; peft and merged load it in `writer`.
    from trainer.patch.materialize import Export, materialize, writer

    fmt = fmt or ("peft" if target else "native")
    export = Export(target or "peft", approximate)
    if export.target != "peft" and fmt != "peft":
        raise InvalidInput(f"target={export.target} shapes a PEFT adapter; it does not apply to format={fmt}")
    if approximate is not None and export.target == "peft":
        raise InvalidInput("approximate applies to a serving target (vllm, sglang, lorax, tgi, llama.cpp)")
    with ctx.transaction() as s:
        plan = plan_fetch(s, domain, base, method)
        texts = eval_texts(s, ctx.store, domain) if approximate is not None else ()
    writer(fmt)  # no torch: Unsupported (501) before the base is looked for
    patch_file = ctx.store.local_path(plan.digest)  # verified against its sha256
    # Only what this machine already has: a request never downloads a base model.
    base_dir = None
    cached = partial(resolve_source, plan.source_uri, local_only=True, weights_digest=plan.weights_digest)
    if fmt == "merged":
        base_dir = cached().path
    elif export.target != "peft":  # only scale/dense deltas read the base; LoRA forms never do
        with suppress(SourceUnavailable):
            base_dir = cached().path
    scratch = ctx.store.scratch.mkdtemp("fetch-")
    try:
        out = scratch / "out"
        materialize(plan, fmt, patch_file, out, base_dir, replace(export, texts=texts))
        return serve_directory(
            out, f"{plan.patch_id}-{fmt}.tar", {"X-Patchreg-Patch": plan.patch_id}, scratch=scratch
        )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
