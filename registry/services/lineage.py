"""Lineage: the root trained patch and every ported or retrained descendant."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.models import CompatVerdict, Patch
from registry.schemas import Lineage, LineageNode
from registry.services.lookup import get_patch
from registry.services.patches import to_read

MAX_DEPTH = 1000  # a guard; parents always predate children, so chains cannot loop


def lineage(session: Session, patch_id: str) -> Lineage:
    focus = get_patch(session, patch_id)
    root = focus
    for _ in range(MAX_DEPTH):
        if root.parent is None:
            break
        root = root.parent

    children: dict[str | None, list[Patch]] = {}
    level = [root.id]
    while level:
        rows = session.scalars(
            select(Patch).where(Patch.parent_id.in_(level)).order_by(Patch.created_at, Patch.id)
        ).all()
        for row in rows:
            children.setdefault(row.parent_id, []).append(row)
        level = [r.id for r in rows]

    def verdict(p: Patch) -> str | None:
        if p.parent is None:
            return None
        row = session.get(CompatVerdict, (p.parent_id, p.base_version_id))
        return row.verdict if row else None

    def build(p: Patch) -> LineageNode:
        return LineageNode(
            patch=to_read(p), verdict=verdict(p), children=[build(c) for c in children.get(p.id, [])]
        )

    return Lineage(focus=focus.id, root=build(root))
