"""Compatibility verdicts: does a patch fit a base version, and if not, exactly why.

Decided from fingerprints alone (tensor tables read through each base's architecture, model type,
tokenizer), never from weights, so the API can answer it without torch. Portability statistics,
which need weights, are attached by the trainer side through `record_portability`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.fit import module_misfit
from core.forecast import forecast
from core.patchfile import PatchHeader, read_patch_header
from registry.conflicts import insert_or_ignore
from registry.db import utcnow
from registry.models import BaseVersion, CompatVerdict, Patch
from registry.schemas import Reason, VerdictRead
from registry.services import audit
from registry.services.architecture import runtime_shapes
from registry.services.lookup import base_ref, get_base_version, get_patch
from registry.store import ArtifactStore


def patch_header(store: ArtifactStore, patch: Patch) -> PatchHeader:
    return read_patch_header(store.local_path(patch.artifact_digest))


def find_reasons(header: PatchHeader, source: BaseVersion, target: BaseVersion) -> list[Reason]:
    reasons: list[Reason] = []
    if source.model_type != target.model_type:
        reasons.append(
            Reason(
                code="model_type_mismatch",
                severity="error",
                message=f"the patch is for {source.model_type}, {base_ref(target)} is {target.model_type}",
                expected=source.model_type,
                found=target.model_type,
            )
        )
    source_shapes, target_shapes = runtime_shapes(source), runtime_shapes(target)
    for module, spec in sorted(header.modules.items()):
        misfit = module_misfit(
            module,
            spec.kind,
            spec.shapes(),
            target_shapes.get(module),
            target=base_ref(target),
            expected_weight=source_shapes.get(module),
        )
        if misfit is not None:
            reasons.append(
                Reason(
                    code=misfit.code,
                    severity="error",
                    message=misfit.message,
                    module=module,
                    expected=misfit.expected,
                    found=misfit.found,
                )
            )
    touched = sorted(m for m, info in header.modules.items() if info.touches_embeddings)
    if touched and source.tokenizer_fingerprint != target.tokenizer_fingerprint:
        reasons.append(
            Reason(
                code="tokenizer_changed",
                severity="error",
                message=(
                    f"the patch changes {', '.join(touched)} and {base_ref(target)} has another tokenizer "
                    "than the patch's base: token ids no longer mean the same"
                ),
                module=touched[0],
                expected=source.tokenizer_fingerprint,
                found=target.tokenizer_fingerprint,
            )
        )
    return reasons


def assess(session: Session, store: ArtifactStore, patch_id: str, base: str) -> VerdictRead:
    """The verdict of `patch_id` on `base`, computed now and written nowhere: what a read answers
    (`GET /v1/patches/{id}/compat`), so that reading never grows the database or the audit log.
    Portability statistics already measured for the pair are included."""
    patch = get_patch(session, patch_id)
    target = get_base_version(session, base)
    row = _verdict_row(session, store, patch, target)
    stored = session.get(CompatVerdict, (patch.id, target.id))
    row.portability = stored.portability if stored is not None else None
    return to_read(row, patch, target)


def check_compat(session: Session, store: ArtifactStore, patch_id: str, base: str) -> VerdictRead:
    """Compute the verdict of `patch_id` on `base` and record it, for the matrix, resolve and
    portability statistics (`patchreg compat`, `POST …/compat`, every port).

    Concurrent checks of one pair never conflict: the row is inserted if absent, else locked and
    updated, so the audit log gets exactly one entry per new or changed verdict (it records
    changes; rechecking an unchanged pair only refreshes `checked_at`).
    """
    patch = get_patch(session, patch_id)
    target = get_base_version(session, base)
    fresh = _verdict_row(session, store, patch, target)
    values = {c.key: getattr(fresh, c.key) for c in CompatVerdict.__table__.columns if c.key != "portability"}
    changed = insert_or_ignore(session, CompatVerdict, values, ["patch_id", "base_version_id"])
    row = session.scalar(
        select(CompatVerdict)
        .where(CompatVerdict.patch_id == patch.id, CompatVerdict.base_version_id == target.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None  # inserted above, or committed and hence visible
    if not changed:
        changed = (row.verdict, row.reasons) != (fresh.verdict, fresh.reasons)
        row.verdict, row.reasons = fresh.verdict, fresh.reasons
        row.export_rank, row.checked_at = fresh.export_rank, fresh.checked_at
        session.flush()
    if changed:
        detail = {"verdict": fresh.verdict, "reasons": len(fresh.reasons)}
        audit.record(session, "compat.check", patch.id, base=base, **detail)
    return to_read(row, patch, target)


def _verdict_row(session: Session, store: ArtifactStore, patch: Patch, target: BaseVersion) -> CompatVerdict:
    """A verdict computed from fingerprints, as an unsaved row (never added to the session)."""
    header = patch_header(store, patch)
    reasons = find_reasons(header, patch.base_version, target)
    return CompatVerdict(
        patch_id=patch.id,
        base_version_id=target.id,
        verdict="incompatible" if any(r.severity == "error" for r in reasons) else "compatible",
        reasons=[r.model_dump(mode="json") for r in reasons],
        export_rank=header.export_rank,
        checked_at=utcnow(),
    )


def record_portability(session: Session, patch_id: str, base: str, stats: dict[str, Any]) -> None:
    patch, target = get_patch(session, patch_id), get_base_version(session, base)
    row = session.get(CompatVerdict, (patch.id, target.id))
    if row is None:
        raise ValueError("check compatibility before recording portability statistics")
    row.portability = stats
    session.flush()


def get_verdict(session: Session, patch_id: str, base: str) -> VerdictRead | None:
    patch, target = get_patch(session, patch_id), get_base_version(session, base)
    row = session.get(CompatVerdict, (patch.id, target.id))
    return to_read(row, patch, target) if row else None


def to_read(row: CompatVerdict, patch: Patch, target: BaseVersion) -> VerdictRead:
    return VerdictRead(
        patch_id=patch.id,
        base=base_ref(target),
        source_base=base_ref(patch.base_version),
        verdict=row.verdict,
        reasons=[Reason(**r) for r in row.reasons],
        export_rank=row.export_rank,
        portability=row.portability,
        forecast=forecast(row.portability),
        checked_at=row.checked_at,
    )
