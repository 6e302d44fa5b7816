"""Where a data command gets its data: the registry itself (`LocalBackend`) or a server (`cli.remote`).

Commands call `app.backend.<verb>(…)` and print what comes back; both backends return the same
`registry.schemas` models and raise the same `core.errors`, so a command's output, `--json` and
exit code cannot depend on where it ran. The verbs are named as `client.Client` names them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

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

if TYPE_CHECKING:
    from cli.context import AppContext

Progress = Callable[[int, int], None] | None


@dataclass(frozen=True)
class Fetched:
    """What `patchreg fetch` reports about the directory it wrote."""

    patch: PatchRead
    why: str
    files: list[str]
    export: dict[str, Any]


PageRows = tuple[list[Any], str | None]  # a page's rows and the cursor of the next (None: the last)
Pager = Callable[[int, str | None], PageRows]
PAGE = 1000  # the largest page the registry serves (`registry.pagination.MAX_LIMIT`)


def listing(backend: Backend, name: str, limit: int | None, **filters: Any) -> tuple[list[Any], bool]:
    """The first `limit` rows of the list `name` (every row when None), and whether more exist."""
    return collect(lambda size, cursor: backend.page(name, size, cursor, **filters), limit)


def collect(pager: Pager, limit: int | None) -> tuple[list[Any], bool]:
    """The first `limit` rows (every row when None) from a paged list, and whether more exist."""
    found: list[Any] = []
    cursor = None
    while True:
        # one row past the limit says whether more exist without a second page
        size = PAGE if limit is None else min(PAGE, limit - len(found) + 1)
        rows, cursor = pager(size, cursor)
        found += rows
        if limit is not None and len(found) > limit:
            return found[:limit], True
        if cursor is None:
            return found, False


class Backend(Protocol):
    def page(self, listing: str, size: int, cursor: str | None, **filters: Any) -> PageRows: ...
    def show_base(self, ref: str) -> BaseVersionDetail: ...
    def register_base(self, ref: str, source: str, parent: str | None, progress: Any) -> BaseVersionRead: ...
    def create_domain(self, name: str, description: str) -> DomainRead: ...
    def upload_dataset(
        self, domain: str, name: str, file: Path, role: str, available_until: date | None
    ) -> DatasetRead: ...
    def show_patch(self, patch_id: str) -> PatchRead: ...
    def upload_patch(self, path: Path, domain: str, base: str) -> PatchRead: ...
    def lineage(self, patch_id: str) -> Lineage: ...
    def resolve(self, domain: str, base: str, method: str | None) -> Resolution: ...
    def fetch(
        self,
        domain: str,
        base: str,
        out: Path,
        fmt: str,
        target: str | None,
        method: str | None,
        approximate: int | None,
    ) -> Fetched: ...
    def compat(self, patch_id: str, base: str) -> VerdictRead: ...
    def serving(self, patch_id: str, base: str, approximate: int | None) -> list[ServingRead]: ...
    def queue_port(self, patch_id: str, base: str) -> JobRead: ...
    def matrix(self, family: str, domain: str | None, limit: int | None) -> tuple[CompatMatrix, bool]: ...
    def set_alias(self, domain: str, base: str, name: str, patch_id: str) -> AliasRead: ...
    def show_job(self, job_id: str, debug: bool) -> JobRead: ...
    def train(
        self,
        *,
        domain: str,
        base: str,
        method: str,
        overrides: list[str],
        regularize: str | None,
        dataset: str | None,
        general_dataset: str | None,
        args: dict[str, Any],
    ) -> JobRead: ...
    def cancel_job(self, job_id: str) -> JobRead: ...
    def retry_job(self, job_id: str) -> JobRead: ...
    def create_token(self, name: str, scopes: list[str]) -> tuple[TokenRead, str]: ...
    def revoke_token(self, name: str) -> TokenRead: ...


class LocalBackend:
    """The registry's services on this machine's database and store, one transaction per call."""

    def __init__(self, app: AppContext) -> None:
        self.app = app

    def page(self, listing: str, size: int, cursor: str | None, **filters: Any) -> PageRows:
        from registry.services import aliases, audit, bases, datasets, domains, jobs, patches, tokens

        pagers: dict[str, Callable[..., Any]] = {
            "bases": bases.page_bases,
            "domains": domains.page_domains,
            "datasets": datasets.page_datasets,
            "patches": patches.page_patches,
            "aliases": aliases.page_aliases,
            "jobs": jobs.page_jobs,
            "audit": audit.page_events,
            "tokens": tokens.page_tokens,
        }
        with self.app.transaction() as s:
            page = pagers[listing](s, **filters, limit=size, cursor=cursor)
        return page.items, page.next_cursor

    def show_base(self, ref: str) -> BaseVersionDetail:
        from registry.services import bases

        with self.app.transaction() as s:
            return bases.show_base(s, ref)

    def register_base(self, ref: str, source: str, parent: str | None, progress: Any) -> BaseVersionRead:
        from registry.services import bases

        with self.app.transaction() as s:
            return bases.register_base(s, ref, source, parent=parent, on_progress=progress)

    def create_domain(self, name: str, description: str) -> DomainRead:
        from registry.services import domains

        with self.app.transaction() as s:
            return domains.create_domain(s, name, description)

    def upload_dataset(
        self, domain: str, name: str, file: Path, role: str, available_until: date | None
    ) -> DatasetRead:
        from registry.services import datasets

        with self.app.transaction() as s:
            return datasets.add_dataset(s, self.app.store, domain, name, file, role, available_until)

    def show_patch(self, patch_id: str) -> PatchRead:
        from registry.services import patches

        with self.app.transaction() as s:
            return patches.show_patch(s, patch_id)

    def upload_patch(self, path: Path, domain: str, base: str) -> PatchRead:
        """A PEFT directory is converted here, as the server converts an uploaded one."""
        from registry.services import patches

        tmp = self.app.store.scratch.mkdtemp("import-")  # in the store's temp space: swept if killed
        try:
            file = path
            if path.is_dir():
                from trainer.patch.io import save_patch
                from trainer.patch.peft_import import import_peft

                file = save_patch(import_peft(path), tmp / "patch.safetensors")
            with self.app.transaction() as s:
                return patches.register_patch(s, self.app.store, domain, base, file, "imported")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def lineage(self, patch_id: str) -> Lineage:
        from registry.services import lineage

        with self.app.transaction() as s:
            return lineage.lineage(s, patch_id)

    def resolve(self, domain: str, base: str, method: str | None) -> Resolution:
        from registry.services.resolve import resolve_patch

        with self.app.transaction() as s:
            return resolve_patch(s, domain, base, method)

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
        """Plan, then materialise here: the same two steps `GET /v1/fetch` runs on the server."""
        from core.serving import reads_base_weights
        from registry.services import patches
        from registry.services.datasets import eval_texts
        from registry.services.fetch import plan_fetch
        from trainer.patch.materialize import Export, materialize  # torch only for peft and merged

        with self.app.transaction() as s:
            plan = plan_fetch(s, domain, base, method)
            p = patches.show_patch(s, plan.patch_id)
            texts = eval_texts(s, self.app.store, domain) if approximate is not None else ()
        patch_file = self.app.store.local_path(plan.digest)  # verified against its sha256
        base_dir = None
        if fmt == "merged" or (target not in (None, "peft") and reads_base_weights(patch_file)):
            from registry.sources import resolve_source

            base_dir = resolve_source(plan.source_uri, weights_digest=plan.weights_digest).path
        export = Export(target or "peft", approximate, texts)
        files, decided = materialize(plan, fmt, patch_file, out, base_dir, export)
        return Fetched(p, plan.why, files, decided)

    def compat(self, patch_id: str, base: str) -> VerdictRead:
        from registry.services import compat

        with self.app.transaction() as s:
            return compat.check_compat(s, self.app.store, patch_id, base)

    def serving(self, patch_id: str, base: str, approximate: int | None) -> list[ServingRead]:
        from registry.services.serving import serving_report

        with self.app.transaction() as s:
            return serving_report(s, self.app.store, patch_id, base, approximate)

    def queue_port(self, patch_id: str, base: str) -> JobRead:
        from registry.services import port_sources

        with self.app.transaction() as s:
            return port_sources.enqueue_port(s, patch_id, base)[0]

    def matrix(self, family: str, domain: str | None, limit: int | None) -> tuple[CompatMatrix, bool]:
        from registry.services import matrix

        with self.app.transaction() as s:
            first: list[CompatMatrix] = []

            def pager(size: int, cursor: str | None) -> PageRows:
                table = matrix.compat_matrix(s, family, domain, limit=size, cursor=cursor)
                first[:] = first or [table]
                return table.rows, table.next_cursor

            rows, more = collect(pager, limit)
        return first[0].model_copy(update={"rows": rows, "next_cursor": None}), more

    def set_alias(self, domain: str, base: str, name: str, patch_id: str) -> AliasRead:
        from registry.services import aliases

        with self.app.transaction() as s:
            return aliases.set_alias(s, domain, base, name, patch_id)

    def show_job(self, job_id: str, debug: bool) -> JobRead:
        from registry.services import jobs

        with self.app.transaction() as s:
            return jobs.show_job(s, job_id, debug=debug)

    def train(self, **request: Any) -> JobRead:
        from registry.services import training

        with self.app.transaction() as s:
            return training.enqueue_train(s, **request)[0]

    def cancel_job(self, job_id: str) -> JobRead:
        from registry.services import jobs

        with self.app.transaction() as s:
            return jobs.cancel(s, job_id)

    def retry_job(self, job_id: str) -> JobRead:
        from registry.services import jobs

        with self.app.transaction() as s:
            return jobs.retry(s, job_id)

    def create_token(self, name: str, scopes: list[str]) -> tuple[TokenRead, str]:
        from registry.services import tokens

        with self.app.transaction() as s:
            return tokens.create(s, name, scopes)

    def revoke_token(self, name: str) -> TokenRead:
        from registry.services import tokens

        with self.app.transaction() as s:
            return tokens.revoke(s, name)
