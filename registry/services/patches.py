"""Patches: register a patch file against a base version, list, show."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session, joinedload

from core.errors import InvalidInput
from core.fit import module_misfit
from core.patchfile import PatchHeader, read_patch_header
from core.plans import Decision
from core.vocab import PATCH_ORIGINS, PATCH_STATUSES
from registry import pagination
from registry.conflicts import insert_or_ignore
from registry.db import utcnow
from registry.models import BaseVersion, Dataset, Patch, short_id
from registry.pagination import Page
from registry.schemas import PatchRead
from registry.services import artifacts, audit
from registry.services.architecture import runtime_shapes
from registry.services.lookup import base_ref, get_base_version, get_domain, get_patch
from registry.store import ArtifactStore

MEDIA_TYPE = "application/vnd.patchreg.patch+safetensors"


def to_read(p: Patch) -> PatchRead:
    ds: Dataset | None = p.train_dataset
    return PatchRead(
        id=p.id,
        domain=p.domain.name,
        base=base_ref(p.base_version),
        method=p.method,
        method_config=p.method_config,
        digest=p.artifact_digest,
        size=p.artifact.size,
        trainable_params=p.trainable_params,
        origin=p.origin,
        parent_id=p.parent_id,
        train_dataset=f"{ds.domain.name}/{ds.name}" if ds else None,
        train_dataset_digest=ds.artifact_digest if ds else None,
        job_id=p.job_id,
        status=p.status,
        metrics=p.metrics,
        created_at=p.created_at,
    )


def misfits(header: PatchHeader, base: BaseVersion, max_index: Mapping[str, int] | None = None) -> list[str]:
    """Why a patch's tensors cannot belong to `base` (empty when they can). Patches name runtime
    weights, [out, in]; the base's are read through its architecture (`runtime_shapes`).
    `max_index` (from the data, `core.patch_values`) also checks columns/rows indices are in range."""
    shapes = runtime_shapes(base)
    found = (
        module_misfit(
            name,
            m.kind,
            m.shapes(),
            shapes.get(name),
            target=base_ref(base),
            max_index=(max_index or {}).get(name),
        )
        for name, m in sorted(header.modules.items())
    )
    return [misfit.message for misfit in found if misfit is not None]


def register_patch(
    session: Session,
    store: ArtifactStore,
    domain: str,
    base: str,
    file: Path,
    origin: str,
    *,
    parent_id: str | None = None,
    train_dataset_id: int | None = None,
    job_id: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> PatchRead:
    """Check the file is a patch that fits `base` (header, then every value: finite floats, indices in
    range), store it, and record it as a candidate. An import of content already imported into this
    (domain, base) returns that patch (see `import_patch`)."""
    return _register(
        session, store, domain, base, file, origin,
        parent_id=parent_id, train_dataset_id=train_dataset_id, job_id=job_id, metrics=metrics,
    )[0]  # fmt: skip


def import_patch(
    session: Session, store: ArtifactStore, domain: str, base: str, file: Path
) -> tuple[PatchRead, bool]:
    """Register an existing patch as `imported`: (the patch, True) when recorded now, (the patch
    imported earlier with the same bytes into this domain and base, False) otherwise — so uploads
    are idempotent, even when two of them race."""
    return _register(session, store, domain, base, file, "imported")


def _register(
    session: Session,
    store: ArtifactStore,
    domain: str,
    base: str,
    file: Path,
    origin: str,
    *,
    parent_id: str | None = None,
    train_dataset_id: int | None = None,
    job_id: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> tuple[PatchRead, bool]:
    if origin not in PATCH_ORIGINS:
        raise InvalidInput(f"invalid origin {origin!r}: expected one of {', '.join(PATCH_ORIGINS)}")
    domain_row = get_domain(session, domain)
    version = get_base_version(session, base)
    parent = get_patch(session, parent_id) if parent_id else None
    header = read_patch_header(Path(file))
    from core.patch_values import check_values  # numpy: only when a patch comes in, not per read

    values = check_values(Path(file), header)
    problems = misfits(header, version, values.max_index)
    if problems:
        raise InvalidInput(
            f"patch does not fit {base}: {problems[0]}"
            + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    blob = artifacts.store_file(session, store, Path(file), MEDIA_TYPE)
    import_key = f"{domain_row.id}:{version.id}:{blob.digest}" if origin == "imported" else None
    patch_id = short_id()
    values_row = {
        "id": patch_id,
        "domain_id": domain_row.id,
        "base_version_id": version.id,
        "method": header.method,
        "method_config": header.method_config,
        "artifact_digest": blob.digest,
        "trainable_params": header.num_params,
        "origin": origin,
        "parent_id": parent.id if parent is not None else None,
        "source_id": source_for_copy_of(parent) if origin == "ported" and parent is not None else patch_id,
        "train_dataset_id": train_dataset_id,
        "job_id": job_id,
        "status": "candidate",
        "metrics": metrics or {},
        "import_key": import_key,
        "created_at": utcnow(),
    }
    if import_key is not None and not insert_or_ignore(session, Patch, values_row, ["import_key"]):
        existing = session.scalar(select(Patch).where(Patch.import_key == import_key))
        assert existing is not None  # committed by the writer that won, hence visible
        return to_read(existing), False
    if import_key is None:
        session.execute(insert(Patch).values(**values_row))
    row = session.get(Patch, values_row["id"])
    assert row is not None
    audit.record(
        session, f"patch.{origin}", row.id, domain=domain, base=base, method=header.method, digest=blob.digest
    )
    return to_read(row), True


# What `to_read` shows, loaded with the patches themselves: one statement for any number of rows.
READ_OPTIONS = (
    joinedload(Patch.domain),
    joinedload(Patch.base_version).joinedload(BaseVersion.family),
    joinedload(Patch.artifact),
    joinedload(Patch.train_dataset).joinedload(Dataset.domain),
)


def _listed(session: Session, domain: str | None, base: str | None, status: str | None) -> Select[Patch]:
    """Patches matching the filters, with everything `to_read` shows loaded in the same statement
    (no query per row); LISTED_ORDER is their order."""
    stmt = select(Patch).options(*READ_OPTIONS)
    if domain is not None:
        stmt = stmt.where(Patch.domain_id == get_domain(session, domain).id)
    if base is not None:
        stmt = stmt.where(Patch.base_version_id == get_base_version(session, base).id)
    if status is not None:
        if status not in PATCH_STATUSES:
            raise InvalidInput(f"invalid status {status!r}: expected one of {', '.join(PATCH_STATUSES)}")
        stmt = stmt.where(Patch.status == status)
    return stmt


def source_for_copy_of(parent: Patch) -> str:
    """The `source_id` a ported copy of `parent` carries: the parent's own source."""
    return (parent.source_id or parent.id) if parent.origin == "ported" else parent.id


LISTED_ORDER = (Patch.created_at, Patch.id)  # oldest first; ix_patches_created walks it


def list_patches(
    session: Session, domain: str | None = None, base: str | None = None, status: str | None = None
) -> list[PatchRead]:
    """Every patch matching the filters, oldest first (internal callers; users get `page_patches`)."""
    return [
        to_read(p) for p in session.scalars(_listed(session, domain, base, status).order_by(*LISTED_ORDER))
    ]


def page_patches(
    session: Session,
    domain: str | None = None,
    base: str | None = None,
    status: str | None = None,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[PatchRead]:
    """One page of `list_patches`: at most `limit` patches after `cursor`, by (created_at, id)."""
    stmt = _listed(session, domain, base, status)
    page = pagination.keyset(
        session, stmt, LISTED_ORDER, lambda p: (p.created_at, p.id), limit=limit, cursor=cursor
    )
    return Page([to_read(p) for p in page.items], page.next_cursor)


def show_patch(session: Session, patch_id: str) -> PatchRead:
    return to_read(get_patch(session, patch_id))


def set_status(session: Session, patch_id: str, status: str, reason: str) -> PatchRead:
    if status not in PATCH_STATUSES:
        raise InvalidInput(f"invalid status {status!r}: expected one of {', '.join(PATCH_STATUSES)}")
    patch = get_patch(session, patch_id)
    previous, patch.status = patch.status, status
    session.flush()
    audit.record(session, "patch.status", patch.id, status=status, previous=previous, reason=reason)
    return to_read(patch)


def record_decision(
    session: Session, patch_id: str, decision: Decision, *, only_if_candidate: bool = False
) -> PatchRead:
    """Keep the gate's numbers on the patch and set its status (with `only_if_candidate`, a status
    someone already changed by hand is left alone; the numbers are still kept)."""
    patch = get_patch(session, patch_id)
    patch.metrics = {**patch.metrics, **decision.metrics}
    session.flush()
    if only_if_candidate and patch.status != "candidate":
        return to_read(patch)
    return set_status(session, patch.id, decision.status, decision.why)
