"""Port a patch onto a base version, measure it and gate it: plan, measure, record.

1. plan (one transaction): the verdict from fingerprints, the ported record (no new bytes), and
   what to measure (`registry.services.ports.plan_port`);
2. measure (no database): portability statistics, the no-op check and the eval arms
   (`trainer.measure.measure`), then the gate (`trainer.gate.decide`);
3. record (one transaction): statistics, new evaluations, status and metrics
   (`registry.services.ports.record_port`), plus whatever the caller finishes in the same
   transaction (`finish`: a job's retrain planning and completion), so a crash between recording and
   completing cannot record twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from registry.db import transaction
from registry.schemas import PortReport
from registry.services import ports
from registry.store import ArtifactStore
from trainer.gate import GateConfig

if TYPE_CHECKING:
    from trainer.resident import ResidentModels
    from worker.context import JobContext

Finish = Callable[[Session, PortReport], None]


def port_and_check(
    factory: sessionmaker[Session],
    store: ArtifactStore,
    patch_id: str,
    base: str,
    *,
    evaluate: bool = True,
    gate: GateConfig | None = None,
    job_id: str | None = None,
    actor: str | None = None,
    device: str = "cpu",
    finish: Finish | None = None,
    models: ResidentModels | None = None,
) -> PortReport:
    from trainer.gate import decide
    from trainer.measure import measure

    gate = gate or GateConfig()
    with transaction(factory, actor) as s:
        plan = ports.plan_port(s, store, patch_id, base, evaluate=evaluate, job_id=job_id)
        if plan.measure is None:  # incompatible: the verdict is all there is to record
            report = ports.record_port(s, plan, None, None, job_id)
            if finish is not None:
                finish(s, report)
            return report

    measured = measure(plan.measure, device, models=models)
    decision = decide(measured, gate, patched="ported", source="source") if measured.rows else None

    with transaction(factory, actor) as s:
        report = ports.record_port(s, plan, measured, decision, job_id)
        if finish is not None:
            finish(s, report)
    return report


def port_in_job(ctx: JobContext, patch_id: str, base: str, finish: Finish) -> PortReport:
    """`port_and_check` as a job runs it: the job's worker, device and audit actor, with `finish`
    recording the job's own outcome in the same transaction as the port's results."""
    return port_and_check(
        ctx.factory,
        ctx.store,
        patch_id,
        base,
        job_id=ctx.job.id,
        actor=ctx.actor,
        device=ctx.device,
        finish=finish,
        models=ctx.models,
    )
