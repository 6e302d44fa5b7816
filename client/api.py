"""`Client`: the registry over HTTP, one method per thing the API does, typed like the services.

Results are the pydantic models of `registry.schemas` (what the local services return), so code
written against a local registry reads a remote one unchanged; errors are the `core.errors`
classes with the same codes. Nothing here imports torch, SQLAlchemy or the server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from client.download import download_blob, fetch_directory
from client.models import NewToken, ResolvedPatch
from client.transport import Transport
from core.errors import InvalidInput
from core.vocab import JOB_STATUSES
from registry.schemas import (
    AliasRead,
    AuditEventRead,
    BaseVersionDetail,
    BaseVersionRead,
    CompatMatrix,
    DatasetRead,
    DomainRead,
    EvaluationRead,
    Identity,
    JobRead,
    Lineage,
    PatchRead,
    ServingRead,
    TokenRead,
    VerdictRead,
)

M = TypeVar("M", bound=BaseModel)
FINISHED = tuple(s for s in JOB_STATUSES if s not in ("queued", "running"))
MAX_PAGE = 1000  # the server's largest page (`registry.pagination.MAX_LIMIT`)
LISTS: dict[str, tuple[str, type[BaseModel]]] = {  # the paged lists: path and row model
    "bases": ("/v1/bases", BaseVersionRead),
    "domains": ("/v1/domains", DomainRead),
    "datasets": ("/v1/datasets", DatasetRead),
    "patches": ("/v1/patches", PatchRead),
    "aliases": ("/v1/aliases", AliasRead),
    "jobs": ("/v1/jobs", JobRead),
    "audit": ("/v1/audit", AuditEventRead),
    "tokens": ("/v1/tokens", TokenRead),
}
PEFT_FILES = {"adapter_model": "adapter_model.safetensors", "adapter_config": "adapter_config.json"}


def _seg(value: str) -> str:
    """One path segment, escaped (`llama3:3.1` stays readable)."""
    return quote(value, safe=":@")


def _query(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class Client:
    """A patchreg server at `url`, called with an API token (`patchreg token create`).

    `retries`/`backoff` bound how hard a request tries (see `client.transport`); other keyword
    arguments go to `httpx.Client` (e.g. `verify=` for a private CA, `transport=` in tests).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        **httpx_options: Any,
    ) -> None:
        self.url = url.rstrip("/")
        self._t = Transport(url, token, timeout=timeout, retries=retries, backoff=backoff, **httpx_options)

    @classmethod
    def from_env(cls, **options: Any) -> Client:
        """From PATCHREG_URL and PATCHREG_TOKEN, as the CLI reads them."""
        url = os.environ.get("PATCHREG_URL")
        if not url:
            raise InvalidInput("PATCHREG_URL is not set: export PATCHREG_URL=https://patchreg.example.org")
        return cls(url, os.environ.get("PATCHREG_TOKEN") or None, **options)

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _one(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self._t.json(method, path, **kwargs))

    def _many(self, model: type[M], path: str, **params: Any) -> list[M]:
        return [model.model_validate(x) for x in self._t.json("GET", path, params=_query(**params))]

    def page(
        self, listing: str, *, limit: int = 100, cursor: str | None = None, **filters: Any
    ) -> tuple[list[Any], str | None]:
        """One page of a list (`bases`, `domains`, `datasets`, `patches`, `aliases`, `jobs`,
        `audit`, `tokens`) and the cursor of the next page (None: the last)."""
        if listing not in LISTS:
            raise ValueError(f"no list {listing!r}: one of {', '.join(LISTS)}")
        path, model = LISTS[listing]
        response = self._t.send("GET", path, params=_query(**filters, limit=limit, cursor=cursor))
        return [model.model_validate(x) for x in response.json()], response.headers.get("X-Next-Cursor")

    def _every(self, listing: str, limit: int | None, **filters: Any) -> list[Any]:
        """Every row of a list (page after page), or the first `limit`."""
        found: list[Any] = []
        cursor = None
        while True:
            size = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(found))
            rows, cursor = self.page(listing, limit=size, cursor=cursor, **filters)
            found += rows
            if cursor is None or (limit is not None and len(found) >= limit):
                return found

    def health(self) -> dict[str, str]:
        """`{"status": "ok", "schema": <revision>}`; DatabaseUnavailable/SchemaOutOfDate otherwise."""
        body: dict[str, str] = self._t.json("GET", "/healthz")
        return body

    # bases
    def list_bases(self, family: str | None = None, *, limit: int | None = None) -> list[BaseVersionRead]:
        """By family, oldest version first: every one, or the first `limit`."""
        return self._every("bases", limit, family=family)

    def show_base(self, ref: str) -> BaseVersionDetail:
        return self._one(BaseVersionDetail, "GET", f"/v1/bases/{_seg(ref)}")

    def register_base(self, ref: str, source: str, parent: str | None = None) -> BaseVersionRead:
        """`source` is read by the server: a directory there, or hf://ORG/NAME[@REVISION]."""
        body = {"ref": ref, "source": source, "parent": parent}
        return self._one(BaseVersionRead, "POST", "/v1/bases", json=body)

    # domains and datasets
    def list_domains(self, *, limit: int | None = None) -> list[DomainRead]:
        """By name: every one, or the first `limit`."""
        return self._every("domains", limit)

    def create_domain(self, name: str, description: str = "") -> DomainRead:
        return self._one(DomainRead, "POST", "/v1/domains", json={"name": name, "description": description})

    def list_datasets(self, domain: str | None = None, *, limit: int | None = None) -> list[DatasetRead]:
        """By domain and name: every one, or the first `limit`."""
        return self._every("datasets", limit, domain=domain)

    def upload_dataset(
        self, domain: str, name: str, file: Path | str, role: str, available_until: date | None = None
    ) -> DatasetRead:
        """Upload a JSONL file; the server checks every row before storing it."""
        until = None if available_until is None else available_until.isoformat()
        data = _query(domain=domain, name=name, role=role, available_until=until)
        with open(file, "rb") as f:
            return self._one(DatasetRead, "POST", "/v1/datasets", data=data, files={"file": f})

    # patches
    def page_patches(
        self,
        domain: str | None = None,
        base: str | None = None,
        status: str | None = None,
        *,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[PatchRead], str | None]:
        """One page of patches, oldest first, and the cursor of the next page (None: the last)."""
        return self.page("patches", limit=limit, cursor=cursor, domain=domain, base=base, status=status)

    def list_patches(
        self,
        domain: str | None = None,
        base: str | None = None,
        status: str | None = None,
        *,
        limit: int | None = None,
    ) -> list[PatchRead]:
        """Patches oldest first: every one (page after page), or the first `limit`."""
        return self._every("patches", limit, domain=domain, base=base, status=status)

    def show_patch(self, patch_id: str) -> PatchRead:
        """A patch by id or unique id prefix."""
        return self._one(PatchRead, "GET", f"/v1/patches/{_seg(patch_id)}")

    def upload_patch(self, path: Path | str, domain: str, base: str) -> PatchRead:
        """Register a patch as `imported`: a patchreg patch file, or a PEFT adapter directory
        (adapter_model.safetensors + adapter_config.json; the server converts it)."""
        path = Path(path)
        with ExitStack() as stack:
            files: dict[str, BinaryIO]
            if path.is_dir():
                files = {name: stack.enter_context(open(path / f, "rb")) for name, f in PEFT_FILES.items()}
            else:
                files = {"patch": stack.enter_context(open(path, "rb"))}
            form = {"domain": domain, "base": base}
            patch = self._one(PatchRead, "POST", "/v1/patches", data=form, files=files)
        return patch

    def set_status(self, patch_id: str, status: str, reason: str) -> PatchRead:
        body = {"status": status, "reason": reason}
        return self._one(PatchRead, "PUT", f"/v1/patches/{_seg(patch_id)}/status", json=body)

    def download_patch(self, patch_id: str, dest: Path | str) -> Path:
        """The native patch file into `dest` (a file path, or a directory for `<id>.safetensors`),
        verified against its sha256; an interrupted download resumes where it stopped."""
        patch = self.show_patch(patch_id)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"{patch.id}.safetensors"
        url = f"/v1/patches/{_seg(patch.id)}/download"
        return download_blob(self._t, url, dest, patch.digest, patch.size)

    def lineage(self, patch_id: str) -> Lineage:
        return self._one(Lineage, "GET", f"/v1/patches/{_seg(patch_id)}/lineage")

    def evaluations(self, patch_id: str) -> list[EvaluationRead]:
        return self._many(EvaluationRead, f"/v1/patches/{_seg(patch_id)}/evaluations")

    # resolve and fetch
    def resolve(self, domain: str, base: str, method: str | None = None) -> ResolvedPatch:
        """Which patch `fetch` serves for DOMAIN on BASE, and why (NotFound lists the ones passed over)."""
        params = _query(domain=domain, base=base, method=method)
        return self._one(ResolvedPatch, "GET", "/v1/resolve", params=params)

    def fetch(
        self,
        domain: str,
        base: str,
        dest: Path | str,
        *,
        format: str | None = None,
        target: str | None = None,
        method: str | None = None,
        approximate: int | None = None,
    ) -> Path:
        """What `patchreg fetch` writes, into the new directory `dest`: the patch as `native` (the
        default), `peft` (what `PeftModel.from_pretrained` loads) or `merged`, plus patchreg.json."""
        params = _query(
            domain=domain, base=base, method=method, format=format, target=target, approximate=approximate
        )
        return fetch_directory(self._t, params, Path(dest))

    # compatibility and porting
    def compat(self, patch_id: str, base: str) -> VerdictRead:
        """The verdict, computed and not stored (a read)."""
        return self._one(VerdictRead, "GET", f"/v1/patches/{_seg(patch_id)}/compat", params={"base": base})

    def record_compat(self, patch_id: str, base: str) -> VerdictRead:
        """The verdict, recorded for the matrix and `resolve` (write scope), as `patchreg compat` does."""
        path = f"/v1/patches/{_seg(patch_id)}/compat"
        return self._one(VerdictRead, "POST", path, params={"base": base})

    def matrix_page(
        self, family: str, domain: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> CompatMatrix:
        """One page of the family's matrix (`next_cursor`: where the next starts, None: the last)."""
        params = _query(domain=domain, limit=limit, cursor=cursor)
        return self._one(CompatMatrix, "GET", f"/v1/families/{_seg(family)}/matrix", params=params)

    def matrix(self, family: str, domain: str | None = None, *, limit: int | None = None) -> CompatMatrix:
        """The family's matrix: every row (page after page), or the first `limit`."""
        table = self.matrix_page(family, domain, limit=MAX_PAGE if limit is None else min(MAX_PAGE, limit))
        rows = list(table.rows)
        while table.next_cursor is not None and (limit is None or len(rows) < limit):
            size = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(rows))
            table = self.matrix_page(family, domain, limit=size, cursor=table.next_cursor)
            rows += table.rows
        return table.model_copy(update={"rows": rows})

    def serving(self, patch_id: str, base: str, approximate: int | None = None) -> list[ServingRead]:
        """How PEFT and each serving engine load the patch on `base` (`compat --serving`)."""
        path = f"/v1/patches/{_seg(patch_id)}/serving"
        return self._many(ServingRead, path, base=base, approximate=approximate)

    def port(self, patch_id: str, base: str) -> JobRead:
        """Queue a `port` job (the one already queued, if any) for a worker."""
        return self._one(JobRead, "POST", f"/v1/patches/{_seg(patch_id)}/port", json={"base": base})

    # aliases
    def list_aliases(self, domain: str | None = None, *, limit: int | None = None) -> list[AliasRead]:
        """By domain and name: every one, or the first `limit`."""
        return self._every("aliases", limit, domain=domain)

    def set_alias(self, domain: str, base: str, name: str, patch_id: str) -> AliasRead:
        path = f"/v1/aliases/{_seg(domain)}/{_seg(base)}/{_seg(name)}"
        return self._one(AliasRead, "PUT", path, json={"patch_id": patch_id})

    def delete_alias(self, domain: str, base: str, name: str) -> None:
        self._t.send("DELETE", f"/v1/aliases/{_seg(domain)}/{_seg(base)}/{_seg(name)}")

    # jobs
    def list_jobs(
        self, status: str | None = None, kind: str | None = None, limit: int | None = 100
    ) -> list[JobRead]:
        """Newest first: the first `limit` (None: every one)."""
        return self._every("jobs", limit, status=status, kind=kind)

    def show_job(self, job_id: str) -> JobRead:
        return self._one(JobRead, "GET", f"/v1/jobs/{_seg(job_id)}")

    def train(
        self,
        domain: str,
        base: str,
        method: str,
        *,
        overrides: Sequence[str] = (),
        regularize: str | None = None,
        dataset: str | None = None,
        general_dataset: str | None = None,
        args: dict[str, Any] | None = None,
    ) -> JobRead:
        """Queue a training job (the server checks the domain, base, data and method first)."""
        body = {
            "domain": domain,
            "base": base,
            "method": method,
            "overrides": list(overrides),
            "regularize": regularize,
            "dataset": dataset,
            "general_dataset": general_dataset,
            "args": args,
        }
        return self._one(JobRead, "POST", "/v1/jobs/train", json=body)

    def cancel_job(self, job_id: str) -> JobRead:
        return self._one(JobRead, "POST", f"/v1/jobs/{_seg(job_id)}/cancel")

    def retry_job(self, job_id: str) -> JobRead:
        return self._one(JobRead, "POST", f"/v1/jobs/{_seg(job_id)}/retry")

    def follow_job(
        self,
        job_id: str,
        *,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
        on_change: Callable[[JobRead], None] | None = None,
    ) -> JobRead:
        """Poll until the job is finished (succeeded, failed or cancelled) and return it; raises
        TimeoutError after `timeout` seconds. `on_change` sees every new state (progress bars)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: JobRead | None = None
        while True:
            job = self.show_job(job_id)
            if on_change is not None and job != last:
                on_change(job)
            last = job
            if job.status in FINISHED:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job.id} is still {job.status} after {timeout} s")
            time.sleep(poll_seconds)

    # audit and tokens
    def audit(self, limit: int | None = 50, subject: str | None = None) -> list[AuditEventRead]:
        """Newest first: the first `limit` events (None: every one), of one `subject` if given."""
        return self._every("audit", limit, subject=subject)

    def whoami(self) -> Identity:
        """The token this client sends, and its scopes (Unauthorized if the server rejects it)."""
        return self._one(Identity, "GET", "/v1/whoami")

    def list_tokens(self, *, limit: int | None = None) -> list[TokenRead]:
        """By name, revoked ones too: every one, or the first `limit` (admin scope)."""
        return self._every("tokens", limit)

    def create_token(self, name: str, scopes: Sequence[str]) -> NewToken:
        """A new token; its secret is in this answer only (the server keeps a sha256)."""
        return self._one(NewToken, "POST", "/v1/tokens", json={"name": name, "scopes": list(scopes)})

    def revoke_token(self, name: str) -> TokenRead:
        return self._one(TokenRead, "DELETE", f"/v1/tokens/{_seg(name)}")
