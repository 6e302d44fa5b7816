"""Lineage: the root trained patch and every ported or retrained descendant.

A constant number of statements whatever the tree's depth or width: one recursive CTE climbs from
the patch to its root, one walks down from the root to every descendant, one loads those patches
with everything `PatchRead` shows (domain, base, artifact, train dataset), one loads the verdicts
of the ported ones. Both CTEs stop at `MAX_DEPTH` (parents always predate children, so chains
cannot loop; the limit guards against a corrupted row).
"""

from __future__ import annotations

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from registry.models import CompatVerdict, Patch
from registry.schemas import Lineage, LineageNode
from registry.services.lookup import get_patch
from registry.services.patches import READ_OPTIONS, to_read

MAX_DEPTH = 1000


def root_of(session: Session, patch_id: str) -> str:
    """The id of the patch's lineage root (itself when it has no parent), in one statement."""
    up = (
        select(Patch.id, Patch.parent_id, literal(0).label("depth"))
        .where(Patch.id == patch_id)
        .cte("up", recursive=True)
    )
    up = up.union_all(
        select(Patch.id, Patch.parent_id, (up.c.depth + 1).label("depth"))
        .join(up, Patch.id == up.c.parent_id)
        .where(up.c.depth < MAX_DEPTH)
    )
    return str(session.scalar(select(up.c.id).order_by(up.c.depth.desc()).limit(1)))


def subtree_ids(session: Session, root_id: str) -> list[str]:
    """The root and every descendant, in one statement."""
    down = select(Patch.id, literal(0).label("depth")).where(Patch.id == root_id).cte("down", recursive=True)
    down = down.union_all(
        select(Patch.id, (down.c.depth + 1).label("depth"))
        .join(down, Patch.parent_id == down.c.id)
        .where(down.c.depth < MAX_DEPTH)
    )
    return list(session.scalars(select(down.c.id)))


def lineage(session: Session, patch_id: str) -> Lineage:
    focus = get_patch(session, patch_id)
    root_id = root_of(session, focus.id)
    ids = subtree_ids(session, root_id)
    rows = session.scalars(
        select(Patch).where(Patch.id.in_(ids)).options(*READ_OPTIONS).order_by(Patch.created_at, Patch.id)
    ).all()
    by_id = {p.id: p for p in rows}
    parents = {p.parent_id for p in rows if p.parent_id is not None}
    # by the primary key's first column (SQLite walks no index for a row-value IN list); a
    # parent's verdicts on other bases come along and are simply not looked up
    verdicts = (
        {
            (v.patch_id, v.base_version_id): v.verdict
            for v in session.execute(
                select(CompatVerdict.patch_id, CompatVerdict.base_version_id, CompatVerdict.verdict).where(
                    CompatVerdict.patch_id.in_(parents)
                )
            )
        }
        if parents
        else {}
    )
    children: dict[str, list[Patch]] = {}
    for p in rows:  # created_at order, so siblings come oldest first
        if p.parent_id is not None and p.id != root_id:
            children.setdefault(p.parent_id, []).append(p)

    def build(p: Patch) -> LineageNode:
        verdict = verdicts.get((p.parent_id, p.base_version_id)) if p.parent_id and p.id != root_id else None
        return LineageNode(
            patch=to_read(p), verdict=verdict, children=[build(c) for c in children.get(p.id, [])]
        )

    return Lineage(focus=focus.id, root=build(by_id[root_id]))
