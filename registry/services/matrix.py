"""A family's compatibility matrix: every source patch against every version of the family.

Rows are source patches (origin trained, imported or retrained) on the family's versions; ported
copies are not rows of their own but fill their source's row at the version they were ported to.
A cell says, in order of precedence: the source itself ("source" with its status), its ported
copy (that copy's status), a stored compatibility verdict ("incompatible" or "compatible, not
ported"), else "not checked". Verdicts are read, never computed here: this stays cheap.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.models import BaseVersion, CompatVerdict, Domain, Patch
from registry.schemas import CompatMatrix, MatrixCell, MatrixRow
from registry.services.lookup import base_ref, get_domain, get_family
from registry.services.port_sources import patch_label


def compat_matrix(session: Session, family: str, domain: str | None = None) -> CompatMatrix:
    family_row = get_family(session, family)
    domain_id = get_domain(session, domain).id if domain is not None else None
    versions = list(
        session.scalars(
            select(BaseVersion)
            .where(BaseVersion.family_id == family_row.id)
            .order_by(BaseVersion.created_at, BaseVersion.id)
        )
    )
    order = {v.id: i for i, v in enumerate(versions)}
    stmt = select(Patch).join(Domain).where(Patch.base_version_id.in_(order))
    if domain_id is not None:
        stmt = stmt.where(Patch.domain_id == domain_id)
    patches = list(session.scalars(stmt))
    children: dict[str, list[Patch]] = {}
    for p in patches:
        if p.origin == "ported" and p.parent_id is not None:
            children.setdefault(p.parent_id, []).append(p)
    # The verdicts of those patches, selected by the same filters (a join, not a list of ids:
    # PostgreSQL refuses more than 65,535 parameters, which 100k patches would need).
    listed = select(Patch.id).where(Patch.base_version_id.in_(order))
    if domain_id is not None:
        listed = listed.where(Patch.domain_id == domain_id)
    verdicts = {
        (v.patch_id, v.base_version_id): v
        for v in session.scalars(select(CompatVerdict).where(CompatVerdict.patch_id.in_(listed)))
    }

    sources = sorted(
        (p for p in patches if p.origin != "ported"),
        key=lambda p: (p.domain.name, order[p.base_version_id], p.created_at, p.id),
    )
    rows = [_row(p, versions, children, verdicts) for p in sources]
    return CompatMatrix(
        family=family_row.name, domain=domain, versions=[base_ref(v) for v in versions], rows=rows
    )


def _chain(source: Patch, children: dict[str, list[Patch]]) -> list[Patch]:
    """The source and every ported copy made from it, directly or from another copy."""
    chain, level = [source], [source]
    while level:
        level = [c for p in level for c in children.get(p.id, [])]
        chain.extend(level)
    return chain


def _row(
    source: Patch,
    versions: list[BaseVersion],
    children: dict[str, list[Patch]],
    verdicts: dict[tuple[str, int], CompatVerdict],
) -> MatrixRow:
    chain = _chain(source, children)
    copies = {p.base_version_id: p for p in chain[1:]}
    cells = []
    for v in versions:
        ref = base_ref(v)
        if v.id == source.base_version_id:
            cells.append(
                MatrixCell(
                    version=ref,
                    state="source",
                    label=f"source ({source.status})",
                    patch_id=source.id,
                    status=source.status,
                )
            )
        elif v.id in copies:
            copy = copies[v.id]
            cells.append(
                MatrixCell(
                    version=ref, state="ported", label=copy.status, patch_id=copy.id, status=copy.status
                )
            )
        else:
            cells.append(
                _verdict_cell(ref, [verdicts[(p.id, v.id)] for p in chain if (p.id, v.id) in verdicts])
            )
    return MatrixRow(
        patch_id=source.id,
        domain=source.domain.name,
        method=patch_label(source),  # s2ft+alewr apart from s2ft, as port_all tells them apart
        origin=source.origin,
        base=base_ref(source.base_version),
        cells=cells,
    )


def _verdict_cell(ref: str, found: list[CompatVerdict]) -> MatrixCell:
    if not found:
        return MatrixCell(version=ref, state="not checked", label="not checked")
    latest = max(found, key=lambda v: v.checked_at)
    if latest.verdict == "incompatible":
        reasons = [r["message"] for r in latest.reasons if r.get("severity") == "error"]
        return MatrixCell(version=ref, state="incompatible", label="incompatible", reasons=reasons)
    return MatrixCell(version=ref, state="compatible", label="compatible, not ported")
