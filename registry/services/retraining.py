"""When a port fails (degraded or incompatible): retrain on the new base, if the data may be read.

The retrain uses the same method and settings (its regulariser too) and the same training
arguments, from the same train dataset, if that dataset may still be read; otherwise the audit log
records why not. Idempotent by dedupe key, so a rerun queues nothing twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.errors import PatchregError
from core.method_config import regularizer_name
from registry.models import Job, Patch
from registry.schemas import JobRead
from registry.services import audit, training
from registry.services.datasets import is_available
from registry.services.lookup import base_ref, get_base_version, get_patch


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
