"""Which patch `fetch` serves for a domain on a base version, and why.

The rule, in order:
1. the `production` alias for (domain, base), when it matches `method` and its patch is not
   rejected or deprecated (an operator's explicit pin wins, even over a degraded status);
2. the best `validated` patch: highest metrics["accuracy"], ties broken by lowest
   metrics["loss"], then the newest; validated patches without those metrics rank last;
3. the newest `candidate` (not yet evaluated, e.g. just trained or imported).
`degraded`, `rejected` and `deprecated` patches are never chosen silently: a degraded patch is
served only when an alias pins it. When nothing fits, NotFound lists every patch of the domain
and why it was passed over, so the user sees what to port, evaluate or pin.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from core.errors import NotFound
from registry.models import Alias, BaseVersion, CompatVerdict, Patch
from registry.schemas import Resolution
from registry.services.lookup import base_ref, get_base_version, get_domain
from registry.services.patches import to_read

ALIAS = "production"
WITHDRAWN = ("rejected", "deprecated")
MAX_LISTED = 12  # patches named in a NotFound message; the rest are counted


def _number(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def rank(p: Patch) -> tuple[Any, ...]:
    """Sort key, best first: accuracy (high), loss (low), newest; missing metrics sort last."""
    acc, loss = _number(p.metrics, "accuracy"), _number(p.metrics, "loss")
    return (acc is None, -(acc or 0.0), loss is None, loss or 0.0, -p.created_at.timestamp(), p.id)


def _best_validated_why(best: Patch, others: list[Patch]) -> str:
    acc, loss = _number(best.metrics, "accuracy"), _number(best.metrics, "loss")
    if acc is not None:
        tied = any(_number(o.metrics, "accuracy") == acc for o in others if o is not best)
        if tied and loss is not None:
            return f"best validated by accuracy {acc:.4g} (tie broken by loss {loss:.4g})"
        return f"best validated by accuracy {acc:.4g}"
    if loss is not None:
        return f"best validated by loss {loss:.4g} (no validated patch reports accuracy)"
    return "newest validated (no validated patch reports accuracy or loss)"


def resolve_patch(session: Session, domain: str, base: str, method: str | None = None) -> Resolution:
    domain_row = get_domain(session, domain)
    version = get_base_version(session, base)
    alias_target = session.scalar(
        select(Patch)
        .join(Alias, Alias.patch_id == Patch.id)
        .where(Alias.domain_id == domain_row.id, Alias.base_version_id == version.id, Alias.name == ALIAS)
    )
    if (
        alias_target is not None
        and (method is None or alias_target.method == method)
        and alias_target.status not in WITHDRAWN
    ):
        return Resolution(patch=to_read(alias_target), why=f"alias {ALIAS}")

    stmt = select(Patch).where(Patch.domain_id == domain_row.id, Patch.base_version_id == version.id)
    if method is not None:
        stmt = stmt.where(Patch.method == method)
    here = list(session.scalars(stmt))
    validated = sorted((p for p in here if p.status == "validated"), key=rank)
    if validated:
        return Resolution(patch=to_read(validated[0]), why=_best_validated_why(validated[0], validated))
    candidates = sorted(
        (p for p in here if p.status == "candidate"), key=lambda p: (p.created_at, p.id), reverse=True
    )
    if candidates:
        return Resolution(patch=to_read(candidates[0]), why="newest candidate (no validated patch)")
    raise _nothing_fits(session, domain_row.id, domain, version, method, alias_target)


def _nothing_fits(
    session: Session,
    domain_id: int,
    domain: str,
    version: BaseVersion,
    method: str | None,
    alias_target: Patch | None,
) -> NotFound:
    """Why nothing was served, bounded by the answer: the first `MAX_LISTED` patches of the domain
    (oldest base first) with their reasons, from three statements whatever the domain's size,
    and a count of the rest."""
    target = base_ref(version)
    wanted = f"{domain} on {target}" + (f" with method {method}" if method else "")
    total = session.scalar(select(func.count()).select_from(Patch).where(Patch.domain_id == domain_id)) or 0
    if not total:
        return NotFound(f"no patch for {wanted}: domain {domain} has no patches yet")
    rows = session.scalars(
        select(Patch)
        .join(BaseVersion, Patch.base_version_id == BaseVersion.id)
        .options(joinedload(Patch.base_version).joinedload(BaseVersion.family))
        .where(Patch.domain_id == domain_id)
        .order_by(BaseVersion.created_at, Patch.created_at, Patch.id)
        .limit(MAX_LISTED)
    ).all()
    ids = [p.id for p in rows]
    found = session.execute(
        select(Patch.parent_id, Patch.id).where(Patch.parent_id.in_(ids), Patch.base_version_id == version.id)
    )
    copies = {parent: copy for parent, copy in found}  # each source's copy on `version`
    incompatible = set(
        session.scalars(
            select(CompatVerdict.patch_id).where(
                CompatVerdict.patch_id.in_(ids),
                CompatVerdict.base_version_id == version.id,
                CompatVerdict.verdict == "incompatible",
            )
        )
    )
    passed = [(p.id, _passed_over(p, version, method, alias_target, copies, incompatible)) for p in rows]
    shown = "; ".join(f"{pid} ({why})" for pid, why in passed)
    more = total - len(passed)
    if more:
        shown += f"; +{more} more (patchreg patch list --domain {domain})"
    return NotFound(
        f"no patch for {wanted}: {shown}",
        patches=[{"id": pid, "why": why} for pid, why in passed],
        **({"more": more} if more else {}),
    )


def _passed_over(
    p: Patch,
    version: BaseVersion,
    method: str | None,
    alias_target: Patch | None,
    copies: dict[str | None, str],
    incompatible: set[str],
) -> str:
    """Why `p` was not served for `version`, in a few words (`copies`: source id -> its copy on
    `version`; `incompatible`: sources whose verdict on `version` is incompatible)."""
    own = base_ref(p.base_version)
    target = base_ref(version)
    if p.base_version_id != version.id:
        if p.base_version.family_id != version.family_id:
            return f"{own}, another family"
        if p.id in copies:
            return f"{own}, ported as {copies[p.id]}"
        if p.id in incompatible:
            return f"{own}, incompatible with {target}"
        return f"{own}, not ported to {target}"
    if method is not None and p.method != method:
        return f"{own}, method {p.method}"
    if p.status == "degraded":
        return f"{own}, degraded, served only when an alias pins it"
    if p.status == "inconclusive":
        return f"{own}, inconclusive (its eval rows could not decide), served only when an alias pins it"
    pinned = alias_target is not None and alias_target.id == p.id
    return f"{own}, {p.status}" + (f", though alias {ALIAS} points to it" if pinned else "")
