"""The CLI against a server: `RemoteBackend`, the client's calls shaped as the local services
return them (which server: `cli.credentials`)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from cli.backend import Fetched, PageRows, collect
from cli.credentials import Remote
from client import Client
from core.fetch import MANIFEST
from registry.schemas import (
    AliasRead,
    BaseVersionDetail,
    BaseVersionRead,
    CompatMatrix,
    DatasetRead,
    DomainRead,
    JobRead,
    Lineage,
    PatchRead,
    Resolution,
    ServingRead,
    TokenRead,
    VerdictRead,
)


class RemoteBackend:
    """`cli.backend.Backend` over HTTP: the client's calls, shaped as the local services return."""

    def __init__(self, remote: Remote) -> None:
        self.client = Client(remote.url, remote.token)

    def close(self) -> None:
        self.client.close()

    def page(self, listing: str, size: int, cursor: str | None, **filters: Any) -> PageRows:
        rows, following = self.client.page(listing, limit=size, cursor=cursor, **filters)
        # an admin token gets every job's traceback; lists never show it (`jobs show --debug` does)
        return ([_without_debug(j) for j in rows] if listing == "jobs" else rows), following

    def show_base(self, ref: str) -> BaseVersionDetail:
        return self.client.show_base(ref)

    def register_base(self, ref: str, source: str, parent: str | None, progress: Any) -> BaseVersionRead:
        """SOURCE is read by the server (hf://, or a path on the server's machine)."""
        return self.client.register_base(ref, source, parent)

    def create_domain(self, name: str, description: str) -> DomainRead:
        return self.client.create_domain(name, description)

    def upload_dataset(
        self, domain: str, name: str, file: Path, role: str, available_until: date | None
    ) -> DatasetRead:
        return self.client.upload_dataset(domain, name, file, role, available_until)

    def show_patch(self, patch_id: str) -> PatchRead:
        return self.client.show_patch(patch_id)

    def upload_patch(self, path: Path, domain: str, base: str) -> PatchRead:
        return self.client.upload_patch(path, domain, base)

    def lineage(self, patch_id: str) -> Lineage:
        return self.client.lineage(patch_id)

    def resolve(self, domain: str, base: str, method: str | None) -> Resolution:
        got = self.client.resolve(domain, base, method)
        return Resolution(patch=got.patch, why=got.why)

    def fetch(
        self,
        domain: str,
        base: str,
        out: Path,
        fmt: str,
        target: str | None,
        method: str | None,
        approximate: int | None,
    ) -> Fetched:
        """The server writes the directory (`GET /v1/fetch`): one materialiser for both modes, so
        the bytes are the same, and this machine needs neither torch nor the base's files."""
        self.client.fetch(
            domain, base, out, format=fmt, target=target, method=method, approximate=approximate
        )
        manifest = json.loads((out / MANIFEST).read_text())
        patch = self.client.show_patch(manifest["patch_id"])
        files = sorted(p.name for p in out.iterdir())
        return Fetched(patch, manifest["why"], files, manifest.get("export", {}))

    def compat(self, patch_id: str, base: str) -> VerdictRead:
        return self.client.record_compat(patch_id, base)  # `patchreg compat` records its verdict

    def serving(self, patch_id: str, base: str, approximate: int | None) -> list[ServingRead]:
        return self.client.serving(patch_id, base, approximate)

    def queue_port(self, patch_id: str, base: str) -> JobRead:
        return _without_debug(self.client.port(patch_id, base))

    def matrix(self, family: str, domain: str | None, limit: int | None) -> tuple[CompatMatrix, bool]:
        first: list[CompatMatrix] = []

        def pager(size: int, cursor: str | None) -> PageRows:
            table = self.client.matrix_page(family, domain, limit=size, cursor=cursor)
            first[:] = first or [table]
            return table.rows, table.next_cursor

        rows, more = collect(pager, limit)
        return first[0].model_copy(update={"rows": rows, "next_cursor": None}), more

    def set_alias(self, domain: str, base: str, name: str, patch_id: str) -> AliasRead:
        return self.client.set_alias(domain, base, name, patch_id)

    def show_job(self, job_id: str, debug: bool) -> JobRead:
        """An admin token gets the traceback whether asked or not; show it only with --debug."""
        job = self.client.show_job(job_id)
        return job if debug else _without_debug(job)

    def train(self, **request: Any) -> JobRead:
        return self.client.train(**request)

    def cancel_job(self, job_id: str) -> JobRead:
        return _without_debug(self.client.cancel_job(job_id))

    def retry_job(self, job_id: str) -> JobRead:
        return _without_debug(self.client.retry_job(job_id))

    def create_token(self, name: str, scopes: list[str]) -> tuple[TokenRead, str]:
        made = self.client.create_token(name, scopes)
        return made.token, made.secret

    def revoke_token(self, name: str) -> TokenRead:
        return self.client.revoke_token(name)


def _without_debug(job: JobRead) -> JobRead:
    return job.model_copy(update={"error_detail": None})
