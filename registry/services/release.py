"""What a new base release sets in motion: which patches to port onto it, and when to retrain.

For every domain and every method (ALEWR-regularised training counts as its own method), the
source is the best patch on the nearest ancestor version that has one: validated before candidate
before degraded, then by accuracy, loss and age (the ranking `fetch` uses). Withdrawn patches
(rejected, deprecated) are never ported.

A port that ends degraded or incompatible is retrained on the new base with the same method and
settings, from the same train dataset, if that dataset may still be read; otherwise the audit log
records why not. Both decisions are idempotent by dedupe key, so a rerun plans nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import PatchregError
from core.method_config import method_label, regularizer_name
from registry.models import BaseVersion, Domain, Job, Patch
from registry.schemas import JobRead
from registry.services import audit, jobs, training
from registry.services.datasets import is_available
from registry.services.lookup import base_ref, get_base_version, get_patch
from registry.services.resolve import rank

PORTABLE = ("validated", "candidate", "degraded")  # in order of preference


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
    return sorted(
        (
            PortSource(p.id, p.domain.name, label, base_ref(p.base_version), p.status)
            for (_, label), p in best.items()
        ),
        key=lambda s: (s.domain, s.method),
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


def port_key(patch_id: str, base: str) -> str:
    return f"port:{patch_id}:{base}"


def _train_args(session: Session, patch: Patch) -> dict[str, Any]:
    """The training arguments that made `patch` (through its port ancestry), for a faithful retrain."""
    current: Patch | None = patch
    while current is not None:
        if current.origin in ("trained", "retrained") and current.job_id:
            job = session.get(Job, current.job_id)
            if job is not None and job.kind == "train":
                return dict(job.payload.get("args") or {})
        current = current.parent
    return {}


def plan_retrain(session: Session, source_id: str, base: str, why: str) -> JobRead | None:
    """Queue a retrain of `source` on `base` when its train data may still be read; else say why
    not in the audit log. Returns the training job, or None."""
    source = get_patch(session, source_id)
    target = get_base_version(session, base)
    ref = base_ref(target)
    ds = source.train_dataset
    if ds is None or not is_available(ds):
        reason = (
            f"train dataset {ds.domain.name}/{ds.name} was available until {ds.available_until}"
            if ds is not None
            else f"patch {source.id} records no train dataset ({source.origin})"
        )
        audit.record(session, "retrain.skipped", source.id, base=ref, why=why, reason=reason)
        return None
    config = dict(source.method_config or {})  # its regulariser, if any, travels inside (never a path)
    config.pop("importance", None)  # old flat form: the source base's own map, not the new base's
    try:  # enqueue_train checks everything before it writes, so a refusal leaves nothing to undo
        job, created = training.enqueue_train(
            session,
            domain=source.domain.name,
            base=ref,
            method=source.method,
            method_config=config,
            regularize=regularizer_name(config),
            dataset=ds.name,
            args=_train_args(session, source),
            origin="retrained",
            parent_id=source.id,
            dedupe_key=f"retrain:{source.id}:{ref}",
        )
    except PatchregError as exc:
        audit.record(session, "retrain.skipped", source.id, base=ref, why=why, reason=exc.message)
        return None
    if created:
        audit.record(session, "retrain.queued", source.id, base=ref, why=why, job=job.id)
    return job


def domains_without_sources(session: Session, base: str) -> list[str]:
    """Domains that have no portable patch on any ancestor of `base` (reported, not an error)."""
    covered = {s.domain for s in port_sources(session, base)}
    return [d for d in session.scalars(select(Domain.name).order_by(Domain.name)) if d not in covered]
