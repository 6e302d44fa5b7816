"""A family's compatibility matrix: every source patch against every version of the family.

Rows are source patches (origin trained, imported or retrained) on the family's versions; ported
copies are not rows of their own but fill their source's row at the version they were ported to.
A cell says, in order of precedence: the source itself ("source" with its status), its ported
copy (that copy's status), a stored compatibility verdict ("incompatible" or "compatible, not
ported"), else "not checked". Verdicts are read, never computed here: this stays cheap.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, select
from sqlalchemy.orm import Session, joinedload

from core.vocab import SOURCE_ORIGINS
from registry import pagination
from registry.models import BaseVersion, CompatVerdict, Domain, Patch
from registry.schemas import CompatMatrix, MatrixCell, MatrixRow
from registry.services.lookup import base_ref, get_domain, get_family
from registry.services.port_sources import patch_label

ID_BATCH = 10_000  # ids per statement (SQLite takes 32,766 parameters, PostgreSQL 65,535)


def compat_matrix(
    session: Session,
    family: str,
    domain: str | None = None,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> CompatMatrix:
    """One page of the matrix's rows (`limit` sources after `cursor`, by domain, then age), or
    with no `limit` every row, read page after page of MAX_LIMIT.

    Five statements per page whatever the family's size: the family, its versions, the page's
    sources, their ported copies (by `source_id`), and the verdicts of both. A page's ids travel
    as values (at most MAX_LIMIT + 1), never as a subquery that would sort the sources again."""
    family_row = get_family(session, family)
    domain_id = get_domain(session, domain).id if domain is not None else None
    versions = list(
        session.scalars(
            select(BaseVersion)
            .where(BaseVersion.family_id == family_row.id)
            .order_by(BaseVersion.created_at, BaseVersion.id)
        )
    )
    refs = [(v.id, base_ref(v)) for v in versions]
    if limit is not None:
        rows, next_cursor = _page(session, refs, domain_id, pagination.check_limit(limit), cursor)
    else:
        rows, next_cursor = [], cursor
        while True:
            more, next_cursor = _page(session, refs, domain_id, pagination.MAX_LIMIT, next_cursor)
            rows += more
            if next_cursor is None:
                break
    return CompatMatrix(
        family=family_row.name,
        domain=domain,
        versions=[ref for _, ref in refs],
        rows=rows,
        next_cursor=next_cursor,
    )


def _page(
    session: Session, refs: list[tuple[int, str]], domain_id: int | None, size: int, cursor: str | None
) -> tuple[list[MatrixRow], str | None]:
    page = (
        select(Patch)
        .join(Domain)
        # equalities on both columns of ix_patches_sources: only sources are read, not their copies
        .where(Patch.base_version_id.in_([version_id for version_id, _ in refs]))
        .where(Patch.origin.in_(SOURCE_ORIGINS))
        .options(joinedload(Patch.domain), joinedload(Patch.base_version).joinedload(BaseVersion.family))
    )
    if domain_id is not None:
        page = page.where(Patch.domain_id == domain_id)
    found = pagination.keyset(
        session,
        page,
        (Domain.name, Patch.created_at, Patch.id),
        lambda p: (p.domain.name, p.created_at, p.id),
        limit=size,
        cursor=cursor,
    )
    sources, next_cursor = found.items, found.next_cursor
    if not sources:
        return [], None
    page_ids = [p.id for p in sources]

    # Every copy carries its source's id (ix_patches_source_id), so the page's chains are one
    # indexed read. Copies and verdicts come as the few columns a cell shows, not as ORM objects:
    # a page of 100 sources holds thousands of each, and a verdict's portability statistics are large.
    copies = session.execute(
        select(Patch.id, Patch.parent_id, Patch.base_version_id, Patch.status).where(
            Patch.source_id.in_(page_ids), Patch.origin == "ported"
        )
    ).all()
    children: dict[str, list[Any]] = {}
    for p in copies:
        children.setdefault(p.parent_id, []).append(p)
    # The verdicts by the ids just read, in batches: as values the primary key is walked (PostgreSQL
    # hashes the whole verdicts table for a join or subquery), and no batch nears a database's
    # limit on parameters however long the page's chains are.
    chain_ids = page_ids + [p.id for p in copies]
    verdicts: dict[tuple[str, int], Any] = {}
    for start in range(0, len(chain_ids), ID_BATCH):
        batch = chain_ids[start : start + ID_BATCH]
        for v in session.execute(
            select(
                CompatVerdict.patch_id,
                CompatVerdict.base_version_id,
                CompatVerdict.verdict,
                # only an incompatible cell shows its reasons: decode no other verdict's
                case((CompatVerdict.verdict == "incompatible", CompatVerdict.reasons)).label("reasons"),
                CompatVerdict.checked_at,
            ).where(CompatVerdict.patch_id.in_(batch))
        ):
            verdicts[v.patch_id, v.base_version_id] = v
    return [_row(p, refs, children, verdicts) for p in sources], next_cursor


def _chain(source: Patch, children: dict[str, list[Any]]) -> list[Any]:
    """The source and every ported copy made from it, directly or from another copy."""
    chain, level = [source], [source]
    while level:
        level = [c for p in level for c in children.get(p.id, [])]
        chain.extend(level)
    return chain


def _row(
    source: Patch,
    refs: list[tuple[int, str]],
    children: dict[str, list[Any]],
    verdicts: dict[tuple[str, int], Any],
) -> MatrixRow:
    """`refs`: each version's id and FAMILY:VERSION; copies and verdicts are rows of a few columns."""
    chain = _chain(source, children)
    copies = {p.base_version_id: p for p in chain[1:]}
    cells = []
    for version_id, ref in refs:
        if version_id == source.base_version_id:
            cells.append(
                MatrixCell(
                    version=ref,
                    state="source",
                    label=f"source ({source.status})",
                    patch_id=source.id,
                    status=source.status,
                )
            )
        elif version_id in copies:
            copy = copies[version_id]
            cells.append(
                MatrixCell(
                    version=ref, state="ported", label=copy.status, patch_id=copy.id, status=copy.status
                )
            )
        else:
            cells.append(
                _verdict_cell(
                    ref, [verdicts[(p.id, version_id)] for p in chain if (p.id, version_id) in verdicts]
                )
            )
    return MatrixRow(
        patch_id=source.id,
        domain=source.domain.name,
        method=patch_label(source),  # s2ft+alewr apart from s2ft, as port_all tells them apart
        origin=source.origin,
        base=base_ref(source.base_version),
        cells=cells,
    )


def _verdict_cell(ref: str, found: list[Any]) -> MatrixCell:
    if not found:
        return MatrixCell(version=ref, state="not checked", label="not checked")
    latest = max(found, key=lambda v: v.checked_at)
    if latest.verdict == "incompatible":
        reasons = [r["message"] for r in latest.reasons if r.get("severity") == "error"]
        return MatrixCell(version=ref, state="incompatible", label="incompatible", reasons=reasons)
    return MatrixCell(version=ref, state="compatible", label="compatible, not ported")
