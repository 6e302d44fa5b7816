"""`evaluate`: measure a patch on its domain's eval datasets next to its base alone, and gate it.

A trained, retrained or imported candidate becomes `validated` when it changes the model's outputs
and beats the base alone (`trainer.gate`); otherwise `degraded`. A ported patch is re-checked
through its port, which also compares it with its source. Evaluations, the decision and the job's
success commit in one transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.evidence import brief_rows
from registry.schemas import PortReport
from registry.services import evaluations
from trainer.gate import GateConfig
from worker.context import JobContext
from worker.porting import port_in_job


def run(ctx: JobContext) -> dict[str, Any]:
    from trainer.gate import decide
    from trainer.measure import measure

    patch_id = ctx.payload["patch_id"]
    with ctx.transaction() as s:
        plan = evaluations.plan_evaluation(s, ctx.store, patch_id)
    if plan.port_of is not None:
        source_id, base = plan.port_of
        ctx.progress(0, 1, f"re-checking ported patch {plan.patch_id} on {base}")
        result: dict[str, Any] = {}

        def finish(s: Session, report: PortReport) -> None:
            result.update(patch_id=plan.patch_id, status=report.status, why=report.why)
            ctx.complete_in(s, result)

        port_in_job(ctx, source_id, base, finish)
        return result
    if plan.measure is None:
        return {"patch_id": plan.patch_id, "status": None, "why": "the domain has no readable eval dataset"}

    measured = measure(
        plan.measure,
        ctx.device,
        on_progress=lambda done, total, msg: ctx.progress(done, total, msg),
        models=ctx.models,
    )
    decision = decide(measured, GateConfig(), patched="patch")
    with ctx.transaction() as s:
        evaluations.record_evaluation(s, plan, measured, decision, ctx.job.id)
        result = {
            "patch_id": plan.patch_id,
            "status": decision.status,
            "why": decision.why,
            "rows": brief_rows(measured.rows),
        }
        ctx.complete_in(s, result)
    return result
