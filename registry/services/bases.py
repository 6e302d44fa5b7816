"""Base families and versions: register from a directory or the hub, list, show."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, contains_eager, joinedload

from core.errors import AlreadyExists, InvalidInput
from registry import pagination
from registry.conflicts import insert_or_ignore
from registry.fingerprint import fingerprint_model_dir
from registry.models import BaseFamily, BaseVersion
from registry.pagination import Page
from registry.schemas import BaseVersionDetail, BaseVersionRead
from registry.services import architecture, audit, jobs
from registry.services.lookup import base_ref, get_base_version, get_family, parse_base_ref
from registry.sources import resolve_source


def to_read(v: BaseVersion) -> BaseVersionRead:
    return BaseVersionRead(
        ref=base_ref(v),
        family=v.family.name,
        version=v.version,
        source_uri=v.source_uri,
        revision=v.revision,
        parent=base_ref(v.parent) if v.parent else None,
        model_type=v.model_type,
        arch_fingerprint=v.arch_fingerprint,
        tokenizer_fingerprint=v.tokenizer_fingerprint,
        config_digest=v.config_digest,
        weights_digest=v.weights_digest,
        num_parameters=v.num_parameters,
        num_tensors=len(v.tensor_table),
        status=v.status,
        created_at=v.created_at,
    )


def register_base(
    session: Session,
    ref: str,
    source: str,
    parent: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BaseVersionRead:
    """Fingerprint the model at `source` and record it as `family:version`.

    Every check runs before the first write, so a refused registration leaves nothing behind. A
    version with a parent also gets its `port_all` job, which ports the family's patches onto it.
    """
    family_name, version = parse_base_ref(ref)
    family = session.scalar(select(BaseFamily).where(BaseFamily.name == family_name))
    if family is not None:
        existing = session.scalar(
            select(BaseVersion).where(BaseVersion.family_id == family.id, BaseVersion.version == version)
        )
        if existing is not None:
            raise AlreadyExists(f"{ref} is already registered (from {existing.source_uri})")
    parent_row = get_base_version(session, parent) if parent else None
    if parent_row is not None and parent_row.family.name != family_name:
        raise InvalidInput(f"parent {parent} is in another family than {ref}; parents evolve within a family")

    resolved = resolve_source(source)
    fp = fingerprint_model_dir(resolved.path, on_progress)
    if family is None:
        family = _create_family(session, family_name, fp.architecture)
    if family.architecture != fp.architecture:
        raise InvalidInput(
            f"family {family_name} holds {family.architecture} models; {source} is {fp.architecture}"
        )

    row = BaseVersion(
        family=family,
        version=version,
        source_uri=resolved.uri,
        revision=resolved.revision,
        parent=parent_row,
        model_type=fp.model_type,
        arch_fingerprint=fp.arch_fingerprint,
        tokenizer_fingerprint=fp.tokenizer_fingerprint,
        config_digest=fp.config_digest,
        weights_digest=fp.weights_digest,
        num_parameters=fp.num_parameters,
        tensor_table=fp.tensor_table(),
        config=fp.config,
        status="ready",
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "base.register",
        ref,
        source=resolved.uri,
        revision=resolved.revision,
        parent=parent,
        arch_fingerprint=fp.arch_fingerprint,
        weights_digest=fp.weights_digest,
    )
    read = to_read(row)
    if parent_row is not None:
        # Same transaction as the version row: a registered release never misses its porting.
        job, _ = jobs.enqueue(session, "port_all", {"base": ref}, dedupe_key=f"port_all:{row.id}")
        read = read.model_copy(update={"port_all_job": job.id})
    return read


def _create_family(session: Session, name: str, architecture: str) -> BaseFamily:
    """The family `name`, created now or by a concurrent registration of another of its versions
    (which then decided its architecture)."""
    if insert_or_ignore(session, BaseFamily, {"name": name, "architecture": architecture}, ["name"]):
        audit.record(session, "family.create", name, architecture=architecture)
    family = session.scalar(select(BaseFamily).where(BaseFamily.name == name))
    assert family is not None  # inserted above, or committed and hence visible
    return family


BASES_ORDER = (BaseFamily.name, BaseVersion.created_at, BaseVersion.id)  # by family, oldest first


def _bases(session: Session, family: str | None) -> Select[BaseVersion]:
    parent = joinedload(BaseVersion.parent)
    stmt = (
        select(BaseVersion)
        .join(BaseFamily)
        .options(contains_eager(BaseVersion.family), parent, parent.joinedload(BaseVersion.family))
    )
    if family is not None:
        stmt = stmt.where(BaseVersion.family_id == get_family(session, family).id)
    return stmt


def list_bases(session: Session, family: str | None = None) -> list[BaseVersionRead]:
    return [to_read(v) for v in session.scalars(_bases(session, family).order_by(*BASES_ORDER))]


def page_bases(
    session: Session, family: str | None = None, *, limit: int | None = None, cursor: str | None = None
) -> Page[BaseVersionRead]:
    page = pagination.keyset(
        session,
        _bases(session, family),
        BASES_ORDER,
        lambda v: (v.family.name, v.created_at, v.id),
        limit=limit,
        cursor=cursor,
    )
    return Page([to_read(v) for v in page.items], page.next_cursor)


def show_base(session: Session, ref: str) -> BaseVersionDetail:
    v = get_base_version(session, ref)
    return BaseVersionDetail(
        **to_read(v).model_dump(),
        tensor_table=v.tensor_table,
        config=v.config,
        architecture=architecture.describe(v),
    )


def model_dir(session: Session, ref: str) -> Path:
    """The local directory holding the files of base `ref` (SourceUnavailable when this machine
    cannot reach them: another worker may)."""
    return files_of(get_base_version(session, ref))


def files_of(version: BaseVersion) -> Path:
    """The local directory holding a registered version's files; an object-store download is
    checked against the weights digest recorded at registration before it is used."""
    return resolve_source(version.source_uri, weights_digest=version.weights_digest).path
