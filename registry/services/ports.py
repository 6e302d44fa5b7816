"""Porting, registry side: a ported patch is a new record on the target base sharing its parent's bytes.

Idempotent: porting the same patch to the same base again returns the patch made the first time.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from registry.models import Patch
from registry.schemas import PatchRead, VerdictRead
from registry.services import audit, compat
from registry.services.lookup import base_ref, get_base_version, get_patch
from registry.services.patches import to_read
from registry.store import ArtifactStore


@dataclass(frozen=True)
class PortOutcome:
    verdict: VerdictRead
    patch: PatchRead | None  # None when the verdict is incompatible: nothing is created
    created: bool


def find_port(session: Session, source_id: str, target_version_id: int) -> Patch | None:
    return session.scalar(
        select(Patch).where(
            Patch.parent_id == source_id, Patch.base_version_id == target_version_id, Patch.origin == "ported"
        )
    )


def port_patch(
    session: Session, store: ArtifactStore, patch_id: str, base: str, job_id: str | None = None
) -> PortOutcome:
    source = get_patch(session, patch_id)
    target = get_base_version(session, base)
    if source.base_version_id == target.id:
        raise InvalidInput(f"patch {source.id} already belongs to {base}")
    verdict = compat.check_compat(session, store, source.id, base)
    existing = find_port(session, source.id, target.id)
    if existing is not None:
        return PortOutcome(verdict, to_read(existing), created=False)
    if verdict.verdict != "compatible":
        return PortOutcome(verdict, None, created=False)
    ported = Patch(
        domain_id=source.domain_id,
        base_version=target,
        method=source.method,
        method_config=source.method_config,
        artifact_digest=source.artifact_digest,  # PortLLM: the same delta, no new bytes
        trainable_params=source.trainable_params,
        origin="ported",
        parent=source,
        train_dataset_id=source.train_dataset_id,
        job_id=job_id,
        status="candidate",
        metrics={},
    )
    session.add(ported)
    session.flush()
    audit.record(
        session,
        "patch.ported",
        ported.id,
        source=source.id,
        source_base=base_ref(source.base_version),
        base=base,
    )
    return PortOutcome(verdict, to_read(ported), created=True)
