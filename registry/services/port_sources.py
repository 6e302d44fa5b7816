"""What a new base release sets in motion: which patches to port onto it (the `port_all` job).

For every domain and every method (a regularised method counts as its own, e.g. `s2ft+alewr`), the
source is the best patch on the nearest ancestor version that has one: validated before candidate
before degraded, then by accuracy, loss and age (the ranking `fetch` uses). Every patch an alias
pins on the parent is ported too (what production serves must follow the release, best or not).
Withdrawn patches (rejected, deprecated) are never ported. One `port` job per source, idempotent
by dedupe key, so a rerun plans nothing twice. What happens when a port fails:
`registry.services.retraining`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.method_config import method_label
from registry.models import Alias, BaseVersion, Domain, Patch
from registry.schemas import JobRead
from registry.services import jobs
from registry.services.lookup import base_ref, get_base_version
from registry.services.resolve import rank

PORTABLE = ("validated", "candidate", "inconclusive", "degraded")  # in order of preference


@dataclass(frozen=True)
class PortSource:
    patch_id: str
    domain: str
    method: str  # e.g. "lora" or "s2ft+alewr"
    source_base: str
    status: str


def patch_label(p: Patch) -> str:
    """`core.method_config.method_label` of a patch row, e.g. `s2ft+alewr`."""
    return method_label(p.method, p.method_config)


def ancestors(version: BaseVersion) -> list[BaseVersion]:
    """The evolved-from chain of `version`, nearest first."""
    chain: list[BaseVersion] = []
    seen = {version.id}
    current = version.parent
    while current is not None and current.id not in seen:
        chain.append(current)
        seen.add(current.id)
        current = current.parent
    return chain


def port_sources(session: Session, base: str) -> list[PortSource]:
    target = get_base_version(session, base)
    chain = ancestors(target)
    if not chain:
        return []
    depth = {v.id: i for i, v in enumerate(chain)}
    rows = session.scalars(
        select(Patch).where(Patch.base_version_id.in_(depth), Patch.status.in_(PORTABLE))
    ).all()
    best: dict[tuple[int, str], Patch] = {}
    for p in rows:
        key = (p.domain_id, patch_label(p))
        held = best.get(key)
        if held is None or _preference(p, depth) < _preference(held, depth):
            best[key] = p
    chosen = {p.id: p for p in best.values()}
    pinned = (
        select(Patch)
        .join(Alias, Alias.patch_id == Patch.id)
        .where(Alias.base_version_id == chain[0].id, Patch.status.in_(PORTABLE))
    )
    chosen.update({p.id: p for p in session.scalars(pinned)})
    return sorted(
        (
            PortSource(p.id, p.domain.name, patch_label(p), base_ref(p.base_version), p.status)
            for p in chosen.values()
        ),
        key=lambda s: (s.domain, s.method, s.patch_id),
    )


def _preference(p: Patch, depth: dict[int, int]) -> tuple[Any, ...]:
    return (depth[p.base_version_id], PORTABLE.index(p.status), *rank(p))


def enqueue_ports(session: Session, base: str) -> list[tuple[PortSource, JobRead]]:
    """One `port` job per source (an existing job is reused: a rerun queues nothing new)."""
    ref = base_ref(get_base_version(session, base))
    out = []
    for source in port_sources(session, ref):
        job, _ = jobs.enqueue(
            session,
            "port",
            {"patch_id": source.patch_id, "base": ref},
            dedupe_key=port_key(source.patch_id, ref),
        )
        out.append((source, job))
    return out


def enqueue_port(session: Session, patch_id: str, base: str) -> tuple[JobRead, bool]:
    """Queue a `port` job of one patch onto `base` for a worker: (job, created). The dedupe key is
    the one `port_all` uses, so a port a release already queued (or ran) is that same job."""
    from core.errors import InvalidInput
    from registry.services.lookup import get_patch

    patch = get_patch(session, patch_id)
    target = base_ref(get_base_version(session, base))
    if base_ref(patch.base_version) == target:
        raise InvalidInput(f"patch {patch.id} already belongs to {target}")
    return jobs.enqueue(
        session, "port", {"patch_id": patch.id, "base": target}, dedupe_key=port_key(patch.id, target)
    )


def port_key(patch_id: str, base: str) -> str:
    return f"port:{patch_id}:{base}"


def domains_without_sources(session: Session, base: str) -> list[str]:
    """Domains that have no portable patch on any ancestor of `base` (reported, not an error)."""
    covered = {s.domain for s in port_sources(session, base)}
    return [d for d in session.scalars(select(Domain.name).order_by(Domain.name)) if d not in covered]
